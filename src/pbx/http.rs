//! The emulator's HTTPS side: REST login and logout (docs/protocol.md §1), the websocket (§2),
//! CORS for browser pages of allowed origins, and the `/emulator/*` views. One TLS port serves
//! them all, within the limits of [`super::limits`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::Context;
use super::chaos::{Chaos, ChaosSettings, Fate, Way};
use super::field_caps;
use super::journal::MAX_CALLS;
use super::limits::{Admitted, Connections, FrameBudget, Limits, LogBudget, warn_within};
use super::origin::OriginPolicy;
use super::sessions::{CloseReason, Sessions};
use super::switch::SwitchInput;
use crate::lock::lock;
use crate::protocol::{ClientFrame, password_digest};
use crate::untrusted::escaped;

/// Frames larger than this close the socket with 1009 (message too big).
const MAX_FRAME_BYTES: usize = 1 << 20;
/// How often ended sessions are looked for (and their sockets closed).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The most events one `/emulator/events` response carries.
const MAX_EVENTS_SHOWN: usize = 10_000;
/// The part of a refused user name the journal keeps.
const MAX_USER_SHOWN: usize = 64;

/// What the emulator refused, for `/emulator/stats` (and tests that show the limits hold).
#[derive(Debug, Default, Serialize)]
pub(super) struct Refusals {
    /// Connections over the socket caps, closed at once.
    pub connections: AtomicU64,
    /// Requests and websockets from an origin that is not allowed.
    pub origins: AtomicU64,
    /// Frames with a field over its cap.
    pub oversized_fields: AtomicU64,
    /// Frames that did not decode.
    pub malformed_frames: AtomicU64,
    /// Sockets closed for sending too many frames a second.
    pub frame_floods: AtomicU64,
    /// Sockets closed for sending nothing.
    pub idle_sockets: AtomicU64,
    /// Logins refused while their address and account wait after failures.
    pub throttled_logins: AtomicU64,
}

pub(super) struct Shared {
    pub ctx: Arc<Context>,
    pub sessions: std::sync::Mutex<Sessions>,
    pub switch: mpsc::UnboundedSender<SwitchInput>,
    pub server_header: HeaderValue,
    pub next_socket: AtomicU64,
    /// `--chaos`: what to do to frames.
    pub chaos: Option<ChaosSettings>,
    pub origins: OriginPolicy,
    /// `--open-test-api`: the `/emulator/*` views without the admin's credentials.
    pub open_test_api: bool,
    pub limits: Limits,
    pub connections: Connections,
    pub refusals: Refusals,
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/rest/system/session",
            post(session_post).put(session_put).delete(session_delete),
        )
        .route("/websocket", get(websocket))
        .route("/", get(|| async { super::page::file("index.html") }))
        .route("/app.js", get(|| async { super::page::file("app.js") }))
        .route(
            "/style.css",
            get(|| async { super::page::file("style.css") }),
        )
        .route("/md5.js", get(|| async { super::page::file("md5.js") }))
        .route(
            "/sample.html",
            get(|| async { super::page::file("sample.html") }),
        )
        .route(
            "/sample.js",
            get(|| async { super::page::file("sample.js") }),
        )
        .route("/emulator/info", get(info))
        .route("/emulator/calls", get(calls))
        .route("/emulator/events", get(events))
        .route("/emulator/stats", get(stats))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            common_headers,
        ))
        .with_state(shared)
}

/// Accepts TLS connections until the task is aborted; aborting it also ends every connection.
/// Connections beyond the socket caps are closed at once; a TLS handshake or a request header
/// that does not arrive within the header timeout closes the connection. Ended sessions are
/// swept here too.
pub(super) async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut refusal_log = LogBudget::new(Instant::now());
    let header_timeout = shared.limits.header_timeout;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
            _ = sweep.tick() => {
                lock(&shared.sessions).expire(Instant::now());
                continue;
            }
        };
        let admitted = match shared.connections.admit(peer.ip()) {
            Ok(admitted) => Arc::new(admitted),
            Err(why) => {
                shared.refusals.connections.fetch_add(1, Ordering::Relaxed);
                warn_within!(refusal_log, Instant::now(), %peer, "connection closed: {why}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        connections.spawn(async move {
            let stream = match tokio::time::timeout(header_timeout, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return debug!(%peer, "TLS handshake: {e}"),
                Err(_) => return debug!(%peer, "TLS handshake timed out"),
            };
            // A websocket keeps the connection's place (`admitted`) after the upgrade.
            let held = admitted.clone();
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(held.clone());
                    app.clone().oneshot(request)
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(io, service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                debug!(%peer, "connection: {e}");
            }
            drop(admitted);
        });
    }
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

/// `Server: PBX/<version>` on every reply (the dialect a client detects, §1). Requests from a
/// page of a foreign origin are refused (403), websockets included; pages of allowed origins
/// get CORS with credentials. Preflights are answered here.
async fn common_headers(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if let Some(origin) = &origin {
        let text = origin.to_str().unwrap_or_default();
        if !shared.origins.allows(text, host) {
            shared.refusals.origins.fetch_add(1, Ordering::Relaxed);
            debug!("request from origin {} refused", escaped(text));
            let mut response = refused(StatusCode::FORBIDDEN, "origin not allowed");
            response
                .headers_mut()
                .insert(header::SERVER, shared.server_header.clone());
            return response;
        }
    }
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        preflight
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::SERVER, shared.server_header.clone());
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The session cookie: `SameSite=Strict`, unless the login came from a page of another
/// (allowed) site, whose later requests must carry it (`None`).
fn session_cookie(id: &str, headers: &HeaderMap) -> HeaderValue {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let cross_site = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| OriginPolicy::cross_site(origin, host));
    let same_site = if cross_site { "None" } else { "Strict" };
    HeaderValue::from_str(&format!(
        "session={id}; Path=/; Secure; HttpOnly; SameSite={same_site}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("session=; Path=/"))
}

/// 429 with `Retry-After` for a login whose address and account wait after failures.
fn throttled(shared: &Shared, wait: Duration) -> Response {
    shared
        .refusals
        .throttled_logins
        .fetch_add(1, Ordering::Relaxed);
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.to_string())],
        Json(json!({ "error": "too many failed logins; try again later" })),
    )
        .into_response()
}

fn shortened(text: &str) -> String {
    text.chars().take(MAX_USER_SHOWN).collect()
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}

/// `POST /rest/system/session`: mint a third-party token (admin Basic auth) or activate one.
async fn session_post(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body must be a JSON object");
    };
    let now = Instant::now();
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match text("name").as_str() {
        "3rd" => {
            let (user, password) = basic_auth(&headers).unwrap_or_default();
            let mut sessions = lock(&shared.sessions);
            if let Err(wait) = sessions.may_try(peer.ip(), &user, now) {
                drop(sessions);
                return throttled(&shared, wait);
            }
            if !shared.ctx.accounts.is_admin(&user, &password) {
                sessions.failed(peer.ip(), &user, now);
                drop(sessions);
                lock(&shared.ctx.journal).event(
                    "login-denied",
                    None,
                    None,
                    json!({ "user": shortened(&user) }),
                );
                return Json(json!(false)).into_response();
            }
            sessions.succeeded(peer.ip(), &user);
            let extension = text("username");
            let domain = text("domain");
            if domain != shared.ctx.domain || shared.ctx.accounts.extension(&extension).is_none() {
                return (StatusCode::NOT_FOUND, Json(json!(false))).into_response();
            }
            Json(json!(sessions.mint_token(&extension, now))).into_response()
        }
        "session" => {
            let activated = lock(&shared.sessions).activate(&text("value"), now);
            match activated {
                Some((id, extension)) => {
                    lock(&shared.ctx.journal).event(
                        "login",
                        Some(&extension),
                        None,
                        json!({ "method": "3rd" }),
                    );
                    (
                        [(header::SET_COOKIE, session_cookie(&id, &headers))],
                        Json(json!({ "session": id })),
                    )
                        .into_response()
                }
                None => (StatusCode::FORBIDDEN, Json(json!(false))).into_response(),
            }
        }
        _ => bad_request("name must be 3rd or session"),
    }
}

/// `PUT /rest/system/session` with `{"name":"auth","value":"<ext> <md5 of password>"}`.
async fn session_put(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body must be a JSON object");
    };
    if body.get("name").and_then(Value::as_str) != Some("auth") {
        return bad_request("name must be auth");
    }
    let value = body
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (extension, digest) = value.split_once(' ').unwrap_or((value, ""));
    let now = Instant::now();
    let mut sessions = lock(&shared.sessions);
    if let Err(wait) = sessions.may_try(peer.ip(), extension, now) {
        drop(sessions);
        return throttled(&shared, wait);
    }
    let valid = shared
        .ctx
        .accounts
        .extension(extension)
        .is_some_and(|e| password_digest(e.password.expose()).eq_ignore_ascii_case(digest));
    if !valid {
        sessions.failed(peer.ip(), extension, now);
        drop(sessions);
        lock(&shared.ctx.journal).event(
            "login-denied",
            Some(extension),
            None,
            json!({ "method": "password" }),
        );
        return Json(json!(false)).into_response();
    }
    sessions.succeeded(peer.ip(), extension);
    let id = sessions.open(extension, now);
    drop(sessions);
    lock(&shared.ctx.journal).event(
        "login",
        Some(extension),
        None,
        json!({ "method": "password" }),
    );
    (
        [(header::SET_COOKIE, session_cookie(&id, &headers))],
        Json(json!(id)),
    )
        .into_response()
}

/// `DELETE /rest/system/session` (the session in the cookie or `?session=`): logout. The
/// session ends and its sockets close.
async fn session_delete(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = query
        .get("session")
        .cloned()
        .or_else(|| cookie_session(&headers))
    else {
        return refused(StatusCode::BAD_REQUEST, "no session named");
    };
    if !lock(&shared.sessions).end(&id) {
        return refused(StatusCode::NOT_FOUND, "no such session");
    }
    lock(&shared.ctx.journal).event("logout", None, None, Value::Null);
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "session=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict",
            ),
        )],
    )
        .into_response()
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("session=").map(str::to_owned))
}

/// `GET /websocket?domain=&user=`: needs a valid session (cookie, or `session` query
/// parameter for browsers) that belongs to `user`. (Its `Origin` was checked on the way in.)
async fn websocket(
    State(shared): State<Arc<Shared>>,
    Extension(admitted): Extension<Arc<Admitted>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers pass the session as a query parameter: tabs logged in as different extensions
    // share one cookie jar, so the cookie may belong to another tab. Take the first valid
    // session that belongs to `user`.
    let candidates = [query.get("session").cloned(), cookie_session(&headers)];
    let now = Instant::now();
    let owners: Vec<_> = {
        let sessions = lock(&shared.sessions);
        candidates
            .iter()
            .flatten()
            .filter_map(|id| Some((id.clone(), sessions.owner(id, now)?.clone())))
            .collect()
    };
    if owners.is_empty() {
        return (StatusCode::UNAUTHORIZED, "no valid session").into_response();
    }
    let wanted = query.get("user");
    let Some((session, owner)) = owners
        .into_iter()
        .find(|(_, owner)| wanted.is_none_or(|user| *user == owner.extension))
    else {
        return (StatusCode::FORBIDDEN, "the session belongs to another user").into_response();
    };
    if query
        .get("domain")
        .is_some_and(|domain| *domain != shared.ctx.domain)
    {
        return (StatusCode::FORBIDDEN, "unknown domain").into_response();
    }
    upgrade
        .max_message_size(MAX_FRAME_BYTES * 16)
        .on_upgrade(move |socket| async move {
            serve_socket(&shared, socket, owner.extension, &session).await;
            drop(admitted);
        })
}

/// What one socket reads against: its frame rate, its idle time, and the log lines its
/// complaints may take.
struct Guarded {
    id: u64,
    extension: String,
    frames: FrameBudget,
    complaints: LogBudget,
}

impl Guarded {
    /// A close frame and a log line: the socket breaks a limit.
    fn close(&self, code: u16, reason: &'static str) -> Message {
        info!(ext = %self.extension, socket = self.id, "closing the socket: {reason}");
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    }
}

/// Reads frames for the switch and writes the frames it sends, until either side closes, the
/// socket breaks a limit (frame rate, idle time) or its session ends (logout, expiry).
/// Under `--chaos` every frame, either way, meets its fate first.
async fn serve_socket(shared: &Arc<Shared>, socket: WebSocket, extension: String, session: &str) {
    let id = shared.next_socket.fetch_add(1, Ordering::Relaxed);
    let (session_close, mut session_ended) = oneshot::channel::<CloseReason>();
    lock(&shared.sessions).attach(session, id, session_close, Instant::now());
    let now = Instant::now();
    let mut guarded = Guarded {
        id,
        extension: extension.clone(),
        frames: FrameBudget::new(shared.limits.frames_per_second, now),
        complaints: LogBudget::new(now),
    };
    let idle_timeout = shared.limits.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let (tx, mut outgoing) = mpsc::unbounded_channel();
    let _ = shared.switch.send(SwitchInput::Open {
        socket: id,
        extension: extension.clone(),
        tx,
    });
    info!(ext = %extension, socket = id, "socket open");
    let mut chaos = shared.chaos.map(|settings| Chaos::new(settings, id));
    let (later_tx, mut later) = mpsc::unbounded_channel::<Way>();
    let (mut sink, mut stream) = socket.split();
    loop {
        let way = tokio::select! {
            message = stream.next() => {
                let now = Instant::now();
                idle.as_mut().reset((now + idle_timeout).into());
                if matches!(message, Some(Ok(Message::Text(_) | Message::Binary(_))))
                    && !guarded.frames.take(now)
                {
                    shared.refusals.frame_floods.fetch_add(1, Ordering::Relaxed);
                    let _ = sink.send(guarded.close(1008, "too many frames a second")).await;
                    break;
                }
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > MAX_FRAME_BYTES {
                            warn!(ext = %extension, "frame of {} bytes: closing with 1009", text.len());
                            let close = CloseFrame { code: 1009, reason: "frame too big".into() };
                            let _ = sink.send(Message::Close(Some(close))).await;
                            break;
                        }
                        Way::In(text.to_string())
                    }
                    Some(Ok(Message::Binary(_))) => {
                        warn_within!(guarded.complaints, now, ext = %extension, "binary frame ignored");
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                }
            },
            () = &mut idle => {
                shared.refusals.idle_sockets.fetch_add(1, Ordering::Relaxed);
                let _ = sink.send(guarded.close(1001, "no frame within the idle timeout")).await;
                break;
            }
            reason = &mut session_ended => {
                let reason = reason.unwrap_or("session ended");
                let _ = sink.send(guarded.close(1000, reason)).await;
                break;
            }
            frame = outgoing.recv() => match frame {
                Some(Some(frame)) => Way::Out(frame.encode()),
                Some(None) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            Some(held) = later.recv() => {
                // Its fate was decided when it first came by.
                if !pass(shared, &mut guarded, &mut sink, held).await {
                    break;
                }
                continue;
            }
        };
        let fate = match chaos.as_mut() {
            None => Fate::Deliver(way),
            Some(chaos) => chaos.fate(way),
        };
        if let Some(mischief) = fate.mischief() {
            info!(ext = %extension, socket = id, "{mischief}");
        }
        let copies = match fate {
            Fate::Deliver(way) | Fate::Corrupt(way) => [Some(way), None],
            Fate::Duplicate(way) => [Some(way.clone()), Some(way)],
            Fate::Delay(way, delay) => {
                let later_tx = later_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = later_tx.send(way);
                });
                [None, None]
            }
            Fate::Drop(_) => [None, None],
            Fate::Close(_) => break,
        };
        let mut open = true;
        for way in copies.into_iter().flatten() {
            open &= pass(shared, &mut guarded, &mut sink, way).await;
        }
        if !open {
            break;
        }
    }
    info!(ext = %extension, socket = id, "socket closed");
    lock(&shared.sessions).detach(session, id, Instant::now());
    let _ = shared.switch.send(SwitchInput::Closed { socket: id });
}

/// Hands a frame on: to the switch (decoded, its fields within their caps) or to the socket.
/// False when the socket is gone.
async fn pass(
    shared: &Shared,
    guarded: &mut Guarded,
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    way: Way,
) -> bool {
    match way {
        Way::In(text) => {
            let now = Instant::now();
            let ext = &guarded.extension;
            match ClientFrame::decode(&text) {
                Ok(frame) => match field_caps::oversized(&frame) {
                    None => {
                        let socket = guarded.id;
                        let _ = shared.switch.send(SwitchInput::Frame { socket, frame });
                    }
                    Some(why) => {
                        shared
                            .refusals
                            .oversized_fields
                            .fetch_add(1, Ordering::Relaxed);
                        warn_within!(guarded.complaints, now, ext = %ext, "frame refused: {why}");
                    }
                },
                Err(e) => {
                    shared
                        .refusals
                        .malformed_frames
                        .fetch_add(1, Ordering::Relaxed);
                    warn_within!(guarded.complaints, now, ext = %ext, "malformed frame ignored: {e}");
                }
            }
            true
        }
        Way::Out(text) => sink.send(Message::text(text)).await.is_ok(),
    }
}

/// What the softphone page needs to offer a login: the domain, the dialect, the extensions.
async fn info(State(shared): State<Arc<Shared>>) -> Response {
    let extensions: Vec<Value> = shared
        .ctx
        .accounts
        .extensions
        .values()
        .map(|e| json!({ "number": e.number, "name": e.name }))
        .collect();
    Json(json!({
        "domain": shared.ctx.domain,
        "dialect": shared.ctx.options.dialect.as_str(),
        "server": shared.server_header.to_str().unwrap_or_default(),
        "extensions": extensions,
    }))
    .into_response()
}

/// The `/emulator/*` views show who called whom and the digits they pressed: they need the
/// admin's credentials (Basic), unless the emulator runs with `--open-test-api`. Failed tries
/// count against the login brake. `None` when the view may be shown.
fn test_api_refusal(shared: &Shared, peer: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    if shared.open_test_api {
        return None;
    }
    let (user, password) = basic_auth(headers).unwrap_or_default();
    let now = Instant::now();
    let mut sessions = lock(&shared.sessions);
    if let Err(wait) = sessions.may_try(peer.ip(), &user, now) {
        drop(sessions);
        return Some(throttled(shared, wait));
    }
    if shared.ctx.accounts.is_admin(&user, &password) {
        sessions.succeeded(peer.ip(), &user);
        return None;
    }
    if !user.is_empty() {
        sessions.failed(peer.ip(), &user, now);
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"callbot emulator\""),
            )],
            Json(json!({ "error": "the admin's credentials are needed (or --open-test-api)" })),
        )
            .into_response(),
    )
}

/// `?limit=` (at most `max`, the default) and `?after=` of a view.
fn paging(query: &HashMap<String, String>, max: usize) -> (Option<u64>, usize) {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .map_or(max, |l| l.min(max));
    let after = query.get("after").and_then(|a| a.parse().ok());
    (after, limit)
}

/// `GET /emulator/calls[?limit=N]`: the newest calls (all that are kept by default).
async fn calls(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = test_api_refusal(&shared, peer, &headers) {
        return refusal;
    }
    let (_, limit) = paging(&query, MAX_CALLS);
    let calls = lock(&shared.ctx.journal).calls(limit);
    Json(calls).into_response()
}

/// `GET /emulator/events[?after=SEQ][&limit=N]`: the events after `SEQ` (oldest first), or
/// the newest ones; at most 10,000 a page.
async fn events(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = test_api_refusal(&shared, peer, &headers) {
        return refusal;
    }
    let (after, limit) = paging(&query, MAX_EVENTS_SHOWN);
    let events = lock(&shared.ctx.journal).events(after, limit);
    Json(events).into_response()
}

/// `GET /emulator/stats`: the journal's size, open sockets and sessions, and what was refused.
async fn stats(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = test_api_refusal(&shared, peer, &headers) {
        return refusal;
    }
    let journal = lock(&shared.ctx.journal).stats();
    Json(json!({
        "journal": journal,
        "connections": shared.connections.open(),
        "sessions": lock(&shared.sessions).len(),
        "refused": &shared.refusals,
    }))
    .into_response()
}
