//! The emulator's HTTPS side: REST login (PROTOCOL.md §1), the websocket (§2), CORS for browser
//! pages, and the `/emulator/*` views. One TLS port serves them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::chaos::{Chaos, ChaosSettings, Fate, Way};
use super::sessions::Sessions;
use super::switch::SwitchInput;
use super::{Context, lock};
use crate::protocol::{ClientFrame, password_digest};

/// Frames larger than this close the socket with 1009 (message too big).
const MAX_FRAME_BYTES: usize = 1 << 20;
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Shared {
    pub ctx: Arc<Context>,
    pub sessions: std::sync::Mutex<Sessions>,
    pub switch: mpsc::UnboundedSender<SwitchInput>,
    pub server_header: HeaderValue,
    pub next_socket: AtomicU64,
    /// `--chaos`: what to do to frames.
    pub chaos: Option<ChaosSettings>,
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/rest/system/session", post(session_post).put(session_put))
        .route("/websocket", get(websocket))
        .route("/", get(|| async { super::page::file("index.html") }))
        .route("/app.js", get(|| async { super::page::file("app.js") }))
        .route(
            "/style.css",
            get(|| async { super::page::file("style.css") }),
        )
        .route("/emulator/info", get(info))
        .route("/emulator/calls", get(calls))
        .route("/emulator/events", get(events))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            common_headers,
        ))
        .with_state(shared)
}

/// Accepts TLS connections until the task is aborted; aborting it also ends every connection.
pub(super) async fn serve(listener: TcpListener, tls: TlsAcceptor, app: Router) {
    let mut connections = JoinSet::new();
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
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        connections.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return debug!(%peer, "TLS handshake: {e}"),
                Err(_) => return debug!(%peer, "TLS handshake timed out"),
            };
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request)
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
                debug!(%peer, "connection: {e}");
            }
        });
    }
}

/// `Server: PBX/<version>` on every reply (the dialect a client detects, §1), and CORS so that
/// a page served elsewhere can log in with credentials; preflights are answered here.
async fn common_headers(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, OPTIONS"),
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

fn session_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "session={id}; Path=/; Secure; HttpOnly; SameSite=None"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("session=; Path=/"))
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
            let mut sessions = lock(&shared.sessions);
            if !sessions.may_try(peer.ip(), now) {
                return StatusCode::TOO_MANY_REQUESTS.into_response();
            }
            let (user, password) = basic_auth(&headers).unwrap_or_default();
            if !shared.ctx.accounts.is_admin(&user, &password) {
                sessions.failed(peer.ip(), now);
                drop(sessions);
                lock(&shared.ctx.journal).event(
                    "login-denied",
                    None,
                    None,
                    json!({ "user": user }),
                );
                return Json(json!(false)).into_response();
            }
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
                        [(header::SET_COOKIE, session_cookie(&id))],
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
    if !sessions.may_try(peer.ip(), now) {
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    let valid = shared
        .ctx
        .accounts
        .extension(extension)
        .is_some_and(|e| password_digest(e.password.expose()).eq_ignore_ascii_case(digest));
    if !valid {
        sessions.failed(peer.ip(), now);
        drop(sessions);
        lock(&shared.ctx.journal).event(
            "login-denied",
            Some(extension),
            None,
            json!({ "method": "password" }),
        );
        return Json(json!(false)).into_response();
    }
    let id = sessions.open(extension);
    drop(sessions);
    lock(&shared.ctx.journal).event(
        "login",
        Some(extension),
        None,
        json!({ "method": "password" }),
    );
    ([(header::SET_COOKIE, session_cookie(&id))], Json(json!(id))).into_response()
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
/// parameter for browsers) that belongs to `user`.
async fn websocket(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers pass the session as a query parameter: tabs logged in as different extensions
    // share one cookie jar, so the cookie may belong to another tab. Take the first valid
    // session that belongs to `user`.
    let candidates = [query.get("session").cloned(), cookie_session(&headers)];
    let owners: Vec<_> = {
        let sessions = lock(&shared.sessions);
        candidates
            .iter()
            .flatten()
            .filter_map(|id| sessions.owner(id).cloned())
            .collect()
    };
    if owners.is_empty() {
        return (StatusCode::UNAUTHORIZED, "no valid session").into_response();
    }
    let wanted = query.get("user");
    let Some(owner) = owners
        .into_iter()
        .find(|owner| wanted.is_none_or(|user| *user == owner.extension))
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
        .on_upgrade(move |socket| serve_socket(shared, socket, owner.extension))
}

/// Reads frames for the switch and writes the frames it sends, until either side closes.
/// Under `--chaos` every frame, either way, meets its fate first.
async fn serve_socket(shared: Arc<Shared>, socket: WebSocket, extension: String) {
    let id = shared.next_socket.fetch_add(1, Ordering::Relaxed);
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
            message = stream.next() => match message {
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
                    warn!(ext = %extension, "binary frame ignored");
                    continue;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            frame = outgoing.recv() => match frame {
                Some(Some(frame)) => Way::Out(frame.encode()),
                Some(None) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            Some(held) = later.recv() => {
                // Its fate was decided when it first came by.
                if !pass(&shared, id, &extension, &mut sink, held).await {
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
            open &= pass(&shared, id, &extension, &mut sink, way).await;
        }
        if !open {
            break;
        }
    }
    info!(ext = %extension, socket = id, "socket closed");
    let _ = shared.switch.send(SwitchInput::Closed { socket: id });
}

/// Hands a frame on: to the switch (decoded) or to the socket. False when the socket is gone.
async fn pass(
    shared: &Shared,
    id: u64,
    extension: &str,
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    way: Way,
) -> bool {
    match way {
        Way::In(text) => {
            match ClientFrame::decode(&text) {
                Ok(frame) => {
                    let _ = shared.switch.send(SwitchInput::Frame { socket: id, frame });
                }
                Err(e) => warn!(ext = %extension, "malformed frame ignored: {e}"),
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

async fn calls(State(shared): State<Arc<Shared>>) -> Response {
    let calls = lock(&shared.ctx.journal).calls();
    Json(calls).into_response()
}

async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let events = lock(&shared.ctx.journal).events();
    Json(events).into_response()
}
