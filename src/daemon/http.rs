//! The daemon's HTTP side (`http.listen`): the read-only dashboard at `/` and its JSON API,
//! recordings, `/metrics`, and the probes `/livez`, `/readyz` and `/healthz`.
//!
//! With `http.token` set, everything but the probes and the page's static files needs
//! `Authorization: Bearer <token>`; recordings may instead carry a signed link (handed out by
//! the authorized API, valid an hour) because an `<audio>` element cannot send headers. Files
//! are served only from inside a bot's recordings folder.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ring::hmac;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tracing::{info, warn};

use super::bot::{BotHandle, BotStatus, Noted};
use super::{CampaignProgress, DaemonError, Metrics};
use crate::call::LiveCalls;
use crate::config::Secret;
use crate::protocol::ConnectionState;
use crate::script::ScriptErrors;

/// How long a signed recording link works.
const LINK_LIFETIME: Duration = Duration::from_secs(3600);
/// Recent calls the dashboard lists at most.
const RECENT_CALLS_MAX: usize = 200;
/// Columns of a waveform at most.
const WAVEFORM_BUCKETS_MAX: usize = 4000;

const PAGE: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/dashboard.js");
const STYLE: &str = include_str!("web/dashboard.css");
/// The page loads only its own files; recordings play from this origin.
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' data:; media-src 'self'; \
    object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// One bot as the HTTP side sees it.
struct BotView {
    name: String,
    extension: String,
    script: PathBuf,
    recordings: PathBuf,
    status: watch::Receiver<BotStatus>,
    live: LiveCalls,
    script_errors: ScriptErrors,
}

/// Everything the HTTP side reads; shared by the handlers.
pub(super) struct View {
    metrics: Arc<Metrics>,
    bots: Vec<BotView>,
    cdr: PathBuf,
    campaign: watch::Receiver<Option<CampaignProgress>>,
    started: SystemTime,
    /// `http.token`, kept only as its MAC so the comparison takes the same time for any guess.
    token: Option<hmac::Tag>,
    /// Signs recording links and tokens; made fresh for each process.
    key: hmac::Key,
}

impl View {
    pub(super) fn new(
        metrics: Arc<Metrics>,
        bots: &[BotHandle],
        cdr: &Path,
        campaign: watch::Receiver<Option<CampaignProgress>>,
        token: Option<Secret>,
    ) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()));
        Self {
            metrics,
            bots: bots
                .iter()
                .map(|b| BotView {
                    name: b.name.clone(),
                    extension: b.extension.clone(),
                    script: b.script.clone(),
                    recordings: b.recordings.clone(),
                    status: b.status.clone(),
                    live: b.live.clone(),
                    script_errors: b.script_errors.clone(),
                })
                .collect(),
            cdr: cdr.to_owned(),
            campaign,
            started: SystemTime::now(),
            token: token.map(|t| hmac::sign(&key, t.expose().as_bytes())),
            key,
        }
    }

    /// Whether `headers` carry the bearer token (always, when there is none to carry).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        hmac::verify(&self.key, given.as_bytes(), expected.as_ref()).is_ok()
    }

    fn signature(&self, path: &str, expires: u64) -> String {
        hex::encode(hmac::sign(
            &self.key,
            format!("{path}\n{expires}").as_bytes(),
        ))
    }

    /// A link to a recording (`<bot>/<path inside its folder>`), signed when a token guards
    /// the API.
    fn recording_link(&self, path: &str) -> String {
        let encoded = path
            .split('/')
            .map(|part| url::form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>())
            .collect::<Vec<_>>()
            .join("/");
        if self.token.is_none() {
            return format!("recordings/{encoded}");
        }
        let expires = unix_secs(SystemTime::now() + LINK_LIFETIME);
        let signature = self.signature(path, expires);
        format!("recordings/{encoded}?expires={expires}&signature={signature}")
    }

    fn link_valid(&self, path: &str, link: &LinkQuery) -> bool {
        let (Some(expires), Some(signature)) = (link.expires, &link.signature) else {
            return false;
        };
        let Ok(signature) = hex::decode(signature) else {
            return false;
        };
        expires >= unix_secs(SystemTime::now())
            && hmac::verify(
                &self.key,
                format!("{path}\n{expires}").as_bytes(),
                &signature,
            )
            .is_ok()
    }

    /// `bot`'s recordings folder with every link resolved, if the bot exists and the folder does.
    fn recordings_root(&self, bot: &str) -> Option<PathBuf> {
        self.bots
            .iter()
            .find(|b| b.name == bot)?
            .recordings
            .canonicalize()
            .ok()
    }

    /// The file behind `<bot>/<path>`: only a WAV inside the bot's recordings folder, after
    /// every link is resolved (no `..`, no absolute path, no symlink out).
    fn recording_file(&self, bot: &str, path: &str) -> Option<PathBuf> {
        let root = self.recordings_root(bot)?;
        let relative = Path::new(path);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let file = root.join(relative).canonicalize().ok()?;
        let wav = file.extension().is_some_and(|e| e == "wav");
        (file.starts_with(&root) && wav && file.is_file()).then_some(file)
    }

    /// `<bot>/<path inside its folder>` of a recording the CDR names, if it lies there.
    fn recording_name(&self, bot: &str, file: &Path) -> Option<String> {
        let root = self.recordings_root(bot)?;
        let file = file.canonicalize().ok()?;
        let inside = file.strip_prefix(&root).ok()?;
        let parts: Option<Vec<&str>> = inside
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        Some(format!("{bot}/{}", parts?.join("/")))
    }

    fn ready(&self) -> bool {
        self.bots.iter().all(|b| {
            let status = b.status.borrow();
            status.connection == Some(ConnectionState::AccessGranted) && !status.draining
        })
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn noted(noted: Option<&Noted>) -> Value {
    noted.map_or(
        Value::Null,
        |n| json!({ "at_ms": unix_ms(n.at), "text": n.text }),
    )
}

/// Binds `address` and serves `view` until the task is aborted.
pub(super) async fn serve(
    address: SocketAddr,
    view: View,
) -> Result<(SocketAddr, JoinHandle<()>), DaemonError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| DaemonError::Http { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DaemonError::Http { address, source })?;
    let guarded = view.token.is_some();
    let app = router(Arc::new(view));
    info!(
        "dashboard on http://{bound}/ ({}); /metrics, /livez, /readyz, /healthz",
        if guarded {
            "bearer token required"
        } else {
            "loopback only, no token"
        }
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("the HTTP endpoint stopped: {e}");
        }
    });
    Ok((bound, task))
}

fn router(view: Arc<View>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(health))
        .route("/api/status", get(status))
        .route("/api/calls", get(recent_calls))
        .route("/api/waveform/{bot}/{*path}", get(waveform))
        .layer(middleware::from_fn_with_state(view.clone(), bearer));
    Router::new()
        .route(
            "/",
            get(|| async { page(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/recordings/{bot}/{*path}", get(recording))
        .merge(guarded)
        .with_state(view)
}

/// A static file of the page: no data in it, so it needs no token.
fn page(body: &'static str, kind: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, kind)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token (http.token)\n",
    )
        .into_response()
}

async fn bearer(State(view): State<Arc<View>>, request: Request, next: Next) -> Response {
    if view.authorized(request.headers()) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

async fn metrics_page(State(view): State<Arc<View>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        view.metrics.render(),
    )
        .into_response()
}

/// Liveness: the process answers. It says nothing about the PBX, so a probe never restarts a
/// daemon because the PBX is down.
async fn live(State(view): State<Arc<View>>) -> Response {
    let uptime = SystemTime::now()
        .duration_since(view.started)
        .unwrap_or_default();
    axum::Json(json!({ "alive": true, "uptime_secs": uptime.as_secs() })).into_response()
}

fn connections(view: &View) -> serde_json::Map<String, Value> {
    view.bots
        .iter()
        .map(|b| {
            let status = b.status.borrow();
            let connection = status
                .connection
                .map_or("CONNECTING", ConnectionState::as_str);
            (
                b.name.clone(),
                json!({ "connection": connection, "active_calls": status.active_calls }),
            )
        })
        .collect()
}

/// Readiness: every bot is registered and the daemon is not draining.
async fn ready(State(view): State<Arc<View>>) -> Response {
    let ready = view.ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "ready": ready, "bots": connections(&view) });
    (code, axum::Json(body)).into_response()
}

/// The original health check, kept for existing monitors: 200 when every bot's link is
/// registered, 503 otherwise.
async fn health(State(view): State<Arc<View>>) -> Response {
    let bots = connections(&view);
    let healthy = view
        .bots
        .iter()
        .all(|b| b.status.borrow().connection == Some(ConnectionState::AccessGranted));
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

/// Bots, their live calls, reloads and errors, and the campaign: what the dashboard shows.
async fn status(State(view): State<Arc<View>>) -> Response {
    let bots: Vec<Value> = view
        .bots
        .iter()
        .map(|b| {
            let status = b.status.borrow().clone();
            let script_error = b
                .script_errors
                .latest()
                .map(|(at, text)| Noted { at, text });
            json!({
                "name": b.name,
                "extension": b.extension,
                "connection": status.connection.map_or("CONNECTING", ConnectionState::as_str),
                "registered": status.connection == Some(ConnectionState::AccessGranted),
                "clients_online": status.clients_online,
                "clients_known": status.clients_known,
                "active_calls": status.active_calls,
                "total_calls": status.total_calls,
                "draining": status.draining,
                "last_error": noted(status.last_error.as_ref()),
                "script": b.script.display().to_string(),
                "script_errors": b.script_errors.count(),
                "last_script_error": noted(script_error.as_ref()),
                "reloads": status.reloads,
                "last_reload": noted(status.last_reload.as_ref()),
                "last_reload_failed": status.last_reload_failed,
                "calls": b.live.snapshot(),
            })
        })
        .collect();
    let campaign = view.campaign.borrow().clone();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_ms": unix_ms(view.started),
        "now_ms": unix_ms(SystemTime::now()),
        "ready": view.ready(),
        "bots": bots,
        "campaign": campaign,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct RecentQuery {
    limit: Option<usize>,
}

/// The latest finished calls from `cdr.jsonl`, newest first, with links to their recordings.
async fn recent_calls(State(view): State<Arc<View>>, Query(query): Query<RecentQuery>) -> Response {
    let limit = query.limit.unwrap_or(50).clamp(1, RECENT_CALLS_MAX);
    let cdr = view.cdr.clone();
    let records = tokio::task::spawn_blocking(move || super::recent::read(&cdr, limit))
        .await
        .unwrap_or_default();
    let calls: Vec<Value> = records
        .into_iter()
        .map(|mut record| {
            let bot = record["bot"].as_str().unwrap_or_default().to_owned();
            let recordings: Vec<Value> = record["recordings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|file| view.recording_name(&bot, Path::new(file)))
                .map(|name| {
                    json!({
                        "name": name,
                        "url": view.recording_link(&name),
                        "waveform": format!("api/waveform/{name}"),
                    })
                })
                .collect();
            record["recordings"] = Value::Array(recordings);
            record
        })
        .collect();
    axum::Json(json!({ "calls": calls })).into_response()
}

#[derive(Deserialize)]
struct LinkQuery {
    expires: Option<u64>,
    signature: Option<String>,
}

/// A recording, with range requests (the page's player seeks). Needs the bearer token or a
/// signed link.
async fn recording(
    State(view): State<Arc<View>>,
    UrlPath((bot, path)): UrlPath<(String, String)>,
    Query(link): Query<LinkQuery>,
    request: Request,
) -> Response {
    let name = format!("{bot}/{path}");
    if !view.authorized(request.headers()) && !view.link_valid(&name, &link) {
        return unauthorized();
    }
    let Some(file) = view.recording_file(&bot, &path) else {
        return (StatusCode::NOT_FOUND, "no such recording\n").into_response();
    };
    match tower_http::services::ServeFile::new(file)
        .oneshot(request)
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct WaveformQuery {
    buckets: Option<usize>,
}

/// A recording's waveform: the lowest and highest sample of each column, per channel.
async fn waveform(
    State(view): State<Arc<View>>,
    UrlPath((bot, path)): UrlPath<(String, String)>,
    Query(query): Query<WaveformQuery>,
) -> Response {
    let Some(file) = view.recording_file(&bot, &path) else {
        return (StatusCode::NOT_FOUND, "no such recording\n").into_response();
    };
    let buckets = query.buckets.unwrap_or(600).clamp(1, WAVEFORM_BUCKETS_MAX);
    match tokio::task::spawn_blocking(move || super::waveform::peaks(&file, buckets)).await {
        Ok(Ok(waveform)) => axum::Json(waveform).into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
