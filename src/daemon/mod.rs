//! The daemon (`callbot run`): one task per bot, the media runtime they share, the HTTP side
//! (dashboard, `/metrics`, probes), script hot reload (file change or SIGHUP) and graceful
//! shutdown.

mod bot;
mod http;
mod metrics;
mod recent;
mod records;
pub mod systemd;
mod waveform;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

pub use bot::{BotControl, BotStatus, Noted};
pub use metrics::{BotMetrics, Metrics};
pub use records::{CdrLog, call_record, recording_path};

use crate::config::{Config, TlsSetting};
use crate::connection::{Credentials, LinkSettings, tls};
use crate::media::MediaRuntime;
use crate::protocol::ConnectionState;
use crate::script::Limits;
use crate::voice::StreamSettings;

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
    #[error("cannot serve http.listen {address}: {source}")]
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
    campaign: watch::Sender<Option<CampaignProgress>>,
}

/// How a campaign run by this process is doing, for the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CampaignProgress {
    pub bot: String,
    /// Contacts in the campaign, and those with a final outcome.
    pub total: usize,
    pub done: usize,
    pub active: usize,
    pub failed: u32,
    /// Final outcomes by state (`COMPLETED`, `BUSY` …).
    pub by_state: std::collections::BTreeMap<String, u32>,
    /// Seconds until the last contact is done, as the campaign estimates it.
    pub eta_secs: Option<u64>,
    pub finished: bool,
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
        // One speech cache for every bot: the same sentence is rendered once.
        let speech = crate::speech::Speech::default();
        let mut bots = Vec::new();
        for (index, (bot, link)) in config.bots.into_iter().zip(links).enumerate() {
            let metrics = metrics.bot(&bot.name);
            let stream = StreamSettings::from_config(
                &bot.name,
                &bot.stream,
                link.tls.clone(),
                metrics.stream.clone(),
            )?;
            let handle = bot::BotTask::spawn(
                Arc::new(bot),
                format!("bots[{index}]"),
                bot::BotPeers {
                    link,
                    stream: Arc::new(stream),
                },
                (media.clone(), speech.clone()),
                metrics,
                cdr.clone(),
                limits,
            )?;
            bots.push(handle);
        }
        let (campaign, campaign_rx) = watch::channel(None);
        let http = match config.http {
            Some(settings) => {
                let view = http::View::new(metrics, &bots, cdr.path(), campaign_rx, settings.token);
                Some(http::serve(settings.listen, view).await?)
            }
            None => None,
        };
        let watcher = watch_scripts(&bots);
        Ok(Self {
            bots,
            http,
            _watcher: watcher,
            cdr,
            campaign,
        })
    }

    /// Shows a campaign's progress on the dashboard.
    pub fn show_campaign(&self, progress: CampaignProgress) {
        self.campaign.send_replace(Some(progress));
    }

    /// Each bot's name and a view of its status.
    pub fn statuses(&self) -> Vec<(String, watch::Receiver<BotStatus>)> {
        self.bots
            .iter()
            .map(|b| (b.name.clone(), b.status.clone()))
            .collect()
    }

    /// Where the dashboard, `/metrics` and the probes are served, if anywhere.
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
    /// The call rings for up to `ring_timeout` (default: a minute).
    pub async fn dial(
        &self,
        bot: &str,
        to: &str,
        vars: std::collections::BTreeMap<String, String>,
        ring_timeout: Option<Duration>,
    ) -> Option<tokio::sync::oneshot::Receiver<Box<crate::call::CallInfo>>> {
        let handle = self.bots.iter().find(|b| b.name == bot)?;
        let (done, finished) = tokio::sync::oneshot::channel();
        let control = BotControl::Dial {
            to: to.to_owned(),
            vars,
            ring_timeout,
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
