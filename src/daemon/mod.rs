//! The daemon (`callbot run`): one task per bot, the media runtime they share, `/metrics` and
//! `/healthz`, script hot reload (file change or SIGHUP) and graceful shutdown.

mod bot;
mod metrics;
mod records;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde_json::json;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use bot::{BotControl, BotStatus};
pub use metrics::{BotMetrics, Metrics};
pub use records::{CdrLog, call_record, recording_path};

use crate::config::{Config, TlsSetting};
use crate::connection::{Credentials, LinkSettings, tls};
use crate::media::MediaRuntime;
use crate::protocol::ConnectionState;
use crate::script::Limits;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("media runtime: {0}")]
    Media(std::io::Error),
    #[error("{0}")]
    Script(#[from] crate::script::ScriptError),
    #[error("bot {0} has no way to log in: set pbx.admin or its password")]
    NoCredentials(String),
    #[error("cannot serve /metrics on {address}: {source}")]
    Http {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A running daemon.
pub struct Daemon {
    bots: Vec<bot::BotHandle>,
    http: Option<(SocketAddr, JoinHandle<()>)>,
    _watcher: Option<RecommendedWatcher>,
    cdr: Arc<CdrLog>,
}

/// The bots' link settings from the config.
fn link_settings(config: &Config) -> Result<Vec<LinkSettings>, DaemonError> {
    if config.pbx.tls == TlsSetting::Insecure {
        warn!("pbx.tls.insecure: the PBX's certificate is not checked (lab use only)");
    }
    let tls = Arc::new(tls::client_config(&config.pbx.tls)?);
    config
        .bots
        .iter()
        .map(|bot| {
            let credentials = Credentials::from_config(&config.pbx, bot.password.as_ref())
                .ok_or_else(|| DaemonError::NoCredentials(bot.name.clone()))?;
            Ok(LinkSettings {
                bot: bot.name.clone(),
                base: config.pbx.url.clone(),
                domain: config.pbx.domain.clone(),
                extension: bot.extension.clone(),
                credentials,
                tls: tls.clone(),
                dialect: config.pbx.dialect,
                useragent: format!("callbot/{}", env!("CARGO_PKG_VERSION")),
            })
        })
        .collect()
}

impl Daemon {
    /// Compiles every script, starts the bots and the HTTP endpoint, watches the scripts.
    pub async fn start(config: Config, limits: Limits) -> Result<Self, DaemonError> {
        let links = link_settings(&config)?;
        let media =
            MediaRuntime::start(config.media.network_settings()).map_err(DaemonError::Media)?;
        let metrics = Arc::new(Metrics::default());
        let cdr = Arc::new(CdrLog::new(config.recordings.join("cdr.jsonl")));
        let mut bots = Vec::new();
        for (bot, link) in config.bots.into_iter().zip(links) {
            let metrics = metrics.bot(&bot.name);
            let handle = bot::BotTask::spawn(
                Arc::new(bot),
                link,
                media.clone(),
                metrics,
                cdr.clone(),
                limits,
            )?;
            bots.push(handle);
        }
        let http = match &config.http {
            Some(http) => Some(serve_http(http.listen, metrics.clone(), &bots).await?),
            None => None,
        };
        let watcher = watch_scripts(&bots);
        Ok(Self {
            bots,
            http,
            _watcher: watcher,
            cdr,
        })
    }

    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(address, _)| *address)
    }

    pub fn cdr_path(&self) -> PathBuf {
        self.cdr.path().to_owned()
    }

    /// Waits until `bot`'s link is registered (at once when it is); `false` if the bot is
    /// unknown or stopped.
    pub async fn connected(&self, bot: &str) -> bool {
        let Some(handle) = self.bots.iter().find(|b| b.name == bot) else {
            return false;
        };
        let mut status = handle.status.clone();
        status
            .wait_for(|s| s.connection == Some(ConnectionState::AccessGranted))
            .await
            .is_ok()
    }

    /// Has `bot` place a call as its script would; the receiver gets the finished call (an
    /// error when the bot is unknown or shutting down, and nothing was dialled).
    pub async fn dial(
        &self,
        bot: &str,
        to: &str,
        vars: std::collections::BTreeMap<String, String>,
    ) -> Option<tokio::sync::oneshot::Receiver<Box<crate::call::CallInfo>>> {
        let handle = self.bots.iter().find(|b| b.name == bot)?;
        let (done, finished) = tokio::sync::oneshot::channel();
        let control = BotControl::Dial {
            to: to.to_owned(),
            vars,
            done,
        };
        handle.control.send(control).await.ok()?;
        Some(finished)
    }

    /// Compiles every script again (SIGHUP).
    pub async fn reload(&self) {
        for bot in &self.bots {
            let _ = bot.control.send(BotControl::Reload).await;
        }
    }

    /// Stops taking calls, lets live calls run up to `grace`, hangs up the rest, closes
    /// recordings and links.
    pub async fn shutdown(self, grace: Duration) {
        for bot in &self.bots {
            let _ = bot.control.send(BotControl::Shutdown { grace }).await;
        }
        for bot in self.bots {
            let _ = bot.task.await;
        }
        if let Some((_, task)) = self.http {
            task.abort();
        }
    }
}

/// Watches the scripts' folders; a changed script is reloaded in its bot.
fn watch_scripts(bots: &[bot::BotHandle]) -> Option<RecommendedWatcher> {
    let mut by_file: HashMap<PathBuf, Vec<tokio::sync::mpsc::Sender<BotControl>>> = HashMap::new();
    for bot in bots {
        let file = bot
            .script
            .canonicalize()
            .unwrap_or_else(|_| bot.script.clone());
        by_file.entry(file).or_default().push(bot.control.clone());
    }
    let folders: std::collections::HashSet<PathBuf> = by_file
        .keys()
        .filter_map(|f| f.parent().map(PathBuf::from))
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !(event.kind.is_modify() || event.kind.is_create()) {
            return;
        }
        for path in &event.paths {
            let path = path.canonicalize().unwrap_or_else(|_| path.clone());
            for control in by_file.get(&path).into_iter().flatten() {
                let _ = control.try_send(BotControl::Reload);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            warn!("scripts are not watched for changes (SIGHUP still reloads): {e}");
            return None;
        }
    };
    for folder in folders {
        if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
            warn!("cannot watch {}: {e}", folder.display());
        }
    }
    Some(watcher)
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    bots: Vec<(String, watch::Receiver<BotStatus>)>,
}

async fn serve_http(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    bots: &[bot::BotHandle],
) -> Result<(SocketAddr, JoinHandle<()>), DaemonError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| DaemonError::Http { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DaemonError::Http { address, source })?;
    let state = HttpState {
        metrics,
        bots: bots
            .iter()
            .map(|b| (b.name.clone(), b.status.clone()))
            .collect(),
    };
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(health))
        .with_state(state);
    info!("metrics and health on http://{bound}/metrics, /healthz");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("metrics endpoint stopped: {e}");
        }
    });
    Ok((bound, task))
}

async fn metrics_page(State(state): State<HttpState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// 200 when every bot's link is registered, 503 otherwise; the body says which is which.
async fn health(State(state): State<HttpState>) -> Response {
    let mut healthy = true;
    let mut bots = serde_json::Map::new();
    for (name, status) in &state.bots {
        let status = status.borrow().clone();
        let connection = status
            .connection
            .map_or("CONNECTING", ConnectionState::as_str);
        healthy &= status.connection == Some(ConnectionState::AccessGranted);
        bots.insert(
            name.clone(),
            json!({ "connection": connection, "active_calls": status.active_calls }),
        );
    }
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(json!({ "healthy": healthy, "bots": bots })),
    )
        .into_response()
}
