//! Hostile peers: a PBX that lies in its call ids, pages of other sites, password guessers,
//! floods of frames and half-sent requests, scripts that hoard memory, contact lists with
//! formulas and giant rows, files that are not files. Each limit holds, and says so.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callbot::config::{Secret, TlsSetting};
use callbot::pbx::{Guard, Limits, MediaMode, Pbx};
use callbot::protocol::{CallId, ClientFrame, Dialect, ServerFrame};
use common::binary::{self, ADMIN_PASSWORD, emulator_with, files, run_to_end};
use common::emulator::{TestClient, WAIT, options, raw_socket, third_party};
use common::wait::until;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// An emulator in this process (relay media) with `limits`, and `guard` as given.
async fn pbx_with(guard: Guard) -> Pbx {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut options = options(listen, MediaMode::Relay, Dialect::Legacy);
    options.guard = guard;
    Pbx::start(options).await.expect("emulator starts")
}

async fn pbx_limited(limits: Limits) -> Pbx {
    pbx_with(Guard {
        open_test_api: true,
        limits,
        ..Guard::default()
    })
    .await
}

async fn stats(pbx: &Pbx) -> Value {
    common::emulator::emulator(pbx, "stats").await
}

/// The close code and reason the emulator ends a socket with (frames before it are skipped).
async fn close_of(socket: &mut callbot::connection::PbxSocket) -> (u16, String) {
    tokio::time::timeout(WAIT, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Ok(Message::Close(None)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (0, "closed without a close frame".to_owned())
    })
    .await
    .expect("the emulator closes the socket")
}

/// An HTTPS client for the emulator that connects from `address` (any 127.0.0.0/8 works).
fn http_from(address: IpAddr) -> reqwest::Client {
    let tls = callbot::connection::tls::client_config(&TlsSetting::Insecure).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(address)
        .build()
        .unwrap()
}

fn session_url(base: &str) -> String {
    format!("{}/rest/system/session", base.trim_end_matches('/'))
}

/// Password login for `extension`: the session id.
async fn password_login(pbx: &Pbx, extension: &str) -> String {
    let digest = callbot::protocol::password_digest(extension);
    common::insecure_http()
        .put(session_url(pbx.url().as_str()))
        .json(&json!({ "name": "auth", "value": format!("{extension} {digest}") }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
        .as_str()
        .expect("a session id")
        .to_owned()
}

async fn open_socket(
    pbx: &Pbx,
    extension: &str,
    session: &str,
) -> Result<callbot::connection::PbxSocket, callbot::connection::SocketError> {
    let settings = common::emulator::settings(pbx, extension, third_party(ADMIN_PASSWORD));
    callbot::connection::open_socket(
        &settings.base,
        "localhost",
        extension,
        &Secret::new(session),
        settings.tls,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. A PBX that lies: call ids that are paths or log lines.

/// A PBX that is nothing but a liar: it logs any bot in, then sends the frames the test gives
/// it and hands back what the bot sends. TLS with a throwaway certificate (`tls: insecure`,
/// as a man in the middle would need).
mod fake_pbx {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::http::{HeaderValue, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use futures_util::{SinkExt, StreamExt};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use serde_json::{Value, json};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    use callbot::protocol::ServerFrame;

    #[derive(Clone)]
    struct Wires {
        to_bot: Arc<Mutex<Option<mpsc::UnboundedReceiver<String>>>>,
        from_bot: mpsc::UnboundedSender<String>,
    }

    pub struct FakePbx {
        pub url: String,
        pub to_bot: mpsc::UnboundedSender<String>,
        pub from_bot: mpsc::UnboundedReceiver<String>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakePbx {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn session(body: Bytes) -> Response {
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut response = if request["name"] == "3rd" {
            axum::Json(json!("token")).into_response()
        } else {
            (
                [(header::SET_COOKIE, "session=fake; Path=/")],
                axum::Json(json!({ "session": "fake" })),
            )
                .into_response()
        };
        response
            .headers_mut()
            .insert(header::SERVER, HeaderValue::from_static("PBX/68.5"));
        response
    }

    async fn websocket(State(wires): State<Wires>, upgrade: WebSocketUpgrade) -> Response {
        upgrade.on_upgrade(move |socket| talk(wires, socket))
    }

    async fn talk(wires: Wires, socket: WebSocket) {
        let Some(mut to_bot) = wires.to_bot.lock().unwrap().take() else {
            return;
        };
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                frame = to_bot.recv() => match frame {
                    Some(text) => {
                        let _ = sink.send(Message::text(text)).await;
                    }
                    None => break,
                },
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if text.contains("sip-register") {
                            let reply = ServerFrame::SipRegister { added: true, expires: Some(3600) };
                            let _ = sink.send(Message::text(reply.encode())).await;
                        }
                        let _ = wires.from_bot.send(text.to_string());
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        *wires.to_bot.lock().unwrap() = Some(to_bot);
    }

    pub async fn start() -> FakePbx {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![certified.cert.der().clone()];
        let mut config =
            rustls::ServerConfig::builder_with_provider(callbot::connection::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let (to_bot, to_bot_rx) = mpsc::unbounded_channel();
        let (from_bot_tx, from_bot) = mpsc::unbounded_channel();
        let wires = Wires {
            to_bot: Arc::new(Mutex::new(Some(to_bot_rx))),
            from_bot: from_bot_tx,
        };
        let app = Router::new()
            .route("/rest/system/session", post(session).put(session))
            .route("/websocket", get(websocket))
            .with_state(wires);
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: axum::http::Request<hyper::body::Incoming>| {
                            app.clone().oneshot(request)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakePbx {
            url,
            to_bot,
            from_bot,
            server,
        }
    }
}

const BROWSER_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\n\
c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";

fn invite(callid: &str, from: &str) -> String {
    ServerFrame::InviteSdp(callbot::protocol::Invite {
        callid: CallId::new(callid).unwrap(),
        cseq: callbot::protocol::Cseq::Number(1),
        from: from.into(),
        to: "500".into(),
        from_user: None,
        from_display: None,
        sdp: callbot::protocol::Sdp::offer(BROWSER_OFFER),
    })
    .encode()
}

fn bye(callid: &str) -> String {
    ServerFrame::Bye(callbot::protocol::Bye {
        callid: CallId::new(callid).unwrap(),
        cseq: None,
        code: None,
        reason: None,
    })
    .encode()
}

/// The next frame from the bot that `pick` accepts.
async fn from_bot<T>(
    pbx: &mut fake_pbx::FakePbx,
    mut pick: impl FnMut(ClientFrame) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let text = pbx.from_bot.recv().await.expect("the bot is connected");
            if let Some(found) = ClientFrame::decode(&text).ok().and_then(&mut pick) {
                return found;
            }
        }
    })
    .await
    .expect("the bot answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_ids_from_a_lying_pbx_name_no_paths_and_forge_no_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut pbx = fake_pbx::start().await;
    std::fs::write(
        dir.path().join("answer.rhai"),
        "fn on_incoming_call(call) { call.answer(); }\n",
    )
    .unwrap();
    let config = dir.path().join("bots.yaml");
    std::fs::write(
        &config,
        format!(
            "pbx:\n  url: \"{}\"\n  domain: localhost\n  tls: {{ insecure: true }}\n  admin: {{ user: admin, password: x }}\n\
             defaults: {{ prompts: \"{}\", recordings: \"{}\", record: stereo }}\n\
             media: {{ addresses: [127.0.0.1] }}\n\
             bots:\n  - name: victim\n    extension: \"500\"\n    script: \"{}\"\n",
            pbx.url,
            binary::repo("prompts").display(),
            dir.path().join("recordings").display(),
            dir.path().join("answer.rhai").display(),
        ),
    )
    .unwrap();
    let daemon = binary::daemon(&config, 1);
    let outside_path = outside.path().display().to_string();
    let ids = [
        format!("../../../../../../../../../../..{outside_path}/climbed"),
        format!("{outside_path}/absolute"),
        "evil\nERROR forged log line".to_owned(),
        "reused".to_owned(),
        "reused".to_owned(),
    ];
    for (n, id) in ids.iter().enumerate() {
        pbx.to_bot
            .send(invite(id, "666\nERROR forged caller"))
            .unwrap();
        from_bot(&mut pbx, |frame| match frame {
            ClientFrame::Sdp200Ok { callid, .. } if callid.as_str() == id => Some(()),
            _ => None,
        })
        .await;
        let recordings = dir.path().join("recordings");
        until("the recording to start", WAIT, || {
            let found = files(&recordings, "wav").len();
            async move { (found > n).then_some(()) }
        })
        .await;
        pbx.to_bot.send(bye(id)).unwrap();
        until("the sidecar", WAIT, || {
            let found = files(&recordings, "json").len();
            async move { (found > n).then_some(()) }
        })
        .await;
    }
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing was written outside the recordings folder"
    );
    let day = files(&dir.path().join("recordings"), "wav")[0]
        .parent()
        .unwrap()
        .to_owned();
    assert_eq!(day.parent().unwrap(), dir.path().join("recordings/victim"));
    for ext in ["wav", "json"] {
        let found = files(dir.path(), ext);
        assert_eq!(found.len(), ids.len(), "one {ext} per call: {found:?}");
        assert!(
            found.iter().all(|f| f.parent() == Some(day.as_path())),
            "{found:?}"
        );
    }
    let output = daemon.output();
    assert!(
        !output
            .lines()
            .any(|l| l.trim_start().starts_with("ERROR forged")),
        "a wire value started a log line:\n{output}"
    );
    assert!(output.contains("evil\\nERROR forged log line"), "{output}");
}

// ---------------------------------------------------------------------------------------------
// 2. Emulator memory: oversized fields, and a journal bounded in bytes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_call_ids_are_refused_and_the_journal_stays_within_its_bytes() {
    let journal_bytes = 256 << 10;
    let pbx = pbx_limited(Limits {
        frames_per_second: 1_000_000,
        journal_bytes,
        ..Limits::default()
    })
    .await;
    let mut socket = raw_socket(&pbx, "502").await;
    let huge = "x".repeat(1_000_000);
    for _ in 0..20 {
        let frame = json!({ "action": "sip-ack", "callid": huge }).to_string();
        socket.send(Message::text(frame)).await.unwrap();
    }
    until("20 refused frames", WAIT, || async {
        (stats(&pbx).await["refused"]["oversized_fields"] == 20).then_some(())
    })
    .await;
    assert!(stats(&pbx).await["journal"]["bytes"].as_u64().unwrap() < 16 << 10);
    // Frames within the caps still land in the journal, which drops its oldest to stay small.
    for n in 0..3000u32 {
        let callid = format!("{n:0>128}");
        let frame = json!({ "action": "sip-ack", "callid": callid }).to_string();
        socket.send(Message::text(frame)).await.unwrap();
    }
    until("the journal to drop old events", WAIT, || async {
        (stats(&pbx).await["journal"]["dropped"].as_u64().unwrap() > 0).then_some(())
    })
    .await;
    let journal = &stats(&pbx).await["journal"];
    assert!(
        journal["bytes"].as_u64().unwrap() <= journal_bytes as u64,
        "{journal}"
    );
    let all = common::emulator::emulator(&pbx, "events").await.to_string();
    assert!(
        all.len() <= 2 * journal_bytes,
        "{} bytes of events",
        all.len()
    );
    let page = common::emulator::emulator(&pbx, "events?limit=5").await;
    assert_eq!(page.as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_api_needs_the_admin_login_unless_opened() {
    let pbx = pbx_with(Guard::default()).await;
    let http = common::insecure_http();
    for view in ["events", "calls", "stats"] {
        let url = format!("{}emulator/{view}", pbx.url());
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{view}");
        let admin = http
            .get(&url)
            .basic_auth("admin", Some(common::emulator::ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "{view}");
    }
    let info = http
        .get(format!("{}emulator/info", pbx.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.status(),
        200,
        "the softphone page needs it before login"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Pages of other sites.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_foreign_origins_are_refused_requests_and_websockets_alike() {
    let pbx = pbx_with(Guard {
        allow_origins: vec!["https://app.example".into()],
        ..Guard::default()
    })
    .await;
    let own = pbx.url().origin().ascii_serialization();
    let http = common::insecure_http();
    let url = session_url(pbx.url().as_str());
    let digest = callbot::protocol::password_digest("502");
    let login = |origin: Option<&str>| {
        let mut request = http
            .put(&url)
            .json(&json!({ "name": "auth", "value": format!("502 {digest}") }));
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    let foreign = login(Some("https://evil.example")).await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);
    let cookie = |response: &reqwest::Response| {
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    for (origin, same_site) in [
        (None, "SameSite=Strict"),
        (Some(own.as_str()), "SameSite=Strict"),
        (Some("http://localhost:3000"), "SameSite=None"),
        (Some("https://app.example"), "SameSite=None"),
    ] {
        let response = login(origin).await.unwrap();
        assert_eq!(response.status(), 200, "{origin:?}");
        let set = cookie(&response);
        assert!(
            set.contains(same_site) && set.contains("Secure; HttpOnly"),
            "{origin:?}: {set}"
        );
        if let Some(origin) = origin {
            assert_eq!(response.headers()["access-control-allow-origin"], origin);
        }
    }
    // A websocket from a foreign page is refused, with a valid session in hand.
    let session = password_login(&pbx, "502").await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let port = pbx.local_addr().port();
    let mut request = format!("wss://127.0.0.1:{port}/websocket?domain=localhost&user=502")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("Origin", HeaderValue::from_static("https://evil.example"));
    headers.insert(
        "Cookie",
        HeaderValue::from_str(&format!("session={session}")).unwrap(),
    );
    let stream = tls_to(&pbx).await.unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a foreign page's websocket opened: {:?}", other.map(|_| ())),
    }
    assert!(
        open_socket(&pbx, "502", &session).await.is_ok(),
        "our own may"
    );
    assert!(
        stats_admin(&pbx).await["refused"]["origins"]
            .as_u64()
            .unwrap()
            >= 3
    );
}

async fn stats_admin(pbx: &Pbx) -> Value {
    common::insecure_http()
        .get(format!("{}emulator/stats", pbx.url()))
        .basic_auth("admin", Some(common::emulator::ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 4. Password guessing, sessions that end.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_the_bots_address_or_at_their_account_does_not_keep_the_bot_out() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator_with(dir.path(), &[]);
    let url = session_url(&emulator.url);
    let here = http_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let elsewhere = http_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let mut last = Vec::new();
    for _ in 0..12 {
        // Other accounts from the bot's own address …
        let wrong_password = here
            .put(&url)
            .json(&json!({ "name": "auth", "value": "500 0000" }))
            .send();
        let wrong_admin = here
            .post(&url)
            .basic_auth("root", Some("guess"))
            .json(&json!({ "name": "3rd", "username": "500", "domain": "localhost" }))
            .send();
        // … and the bot's own account from another address.
        let guessed_admin = elsewhere
            .post(&url)
            .basic_auth("admin", Some("guess"))
            .json(&json!({ "name": "3rd", "username": "500", "domain": "localhost" }))
            .send();
        last = vec![
            wrong_password.await.unwrap().status(),
            wrong_admin.await.unwrap().status(),
            guessed_admin.await.unwrap().status(),
        ];
    }
    assert_eq!(last, [429, 429, 429], "every guesser is braked");
    std::fs::write(dir.path().join("answer.rhai"), "fn on_start() {}\n").unwrap();
    let bot = format!(
        "  - name: bot\n    extension: \"500\"\n    script: \"{}\"\n",
        dir.path().join("answer.rhai").display()
    );
    let config = binary::config(dir.path(), &emulator, &bot);
    let daemon = binary::daemon(&config, 1);
    assert!(!daemon.output().contains("429"), "{}", daemon.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_expiry_end_sessions_and_close_their_sockets() {
    let pbx = pbx_limited(Limits {
        session_idle: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let session = password_login(&pbx, "502").await;
    let mut socket = open_socket(&pbx, "502", &session).await.unwrap();
    let logout = common::insecure_http()
        .delete(session_url(pbx.url().as_str()))
        .header("Cookie", format!("session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(close_of(&mut socket).await, (1000, "logged out".to_owned()));
    assert!(
        open_socket(&pbx, "502", &session).await.is_err(),
        "the session is gone"
    );

    // Unused, a session ends after the idle time (watched without using it).
    let idle = password_login(&pbx, "503").await;
    assert_eq!(stats(&pbx).await["sessions"], 1);
    until("the idle session to end", WAIT, || async {
        (stats(&pbx).await["sessions"] == 0).then_some(())
    })
    .await;
    assert!(open_socket(&pbx, "503", &idle).await.is_err());

    // In use or not, a session ends after its lifetime, and takes its sockets with it.
    let old = pbx_limited(Limits {
        session_lifetime: Duration::from_secs(2),
        ..Limits::default()
    })
    .await;
    let session = password_login(&old, "504").await;
    let mut socket = open_socket(&old, "504", &session).await.unwrap();
    assert_eq!(
        close_of(&mut socket).await,
        (1000, "session expired".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Scripts that hoard memory.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_keeps_too_much_gets_an_error_and_the_daemon_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator_with(dir.path(), &[]);
    // Every 10 ms, keep another 256 KiB under a new key: 1 MiB allows three.
    std::fs::write(
        dir.path().join("hoard.rhai"),
        r#"fn on_start() { bot.set_timer("fill", 10); }
fn on_timer(name) {
    let n = bot.get("n");
    if n == () { n = 0; }
    let chunk = "x";
    for i in 0..18 { chunk += chunk; }
    bot.set("n", n + 1);
    bot.set("chunk" + n, chunk);
    bot.log("kept chunk " + n);
    bot.set_timer("fill", 10);
}
"#,
    )
    .unwrap();
    let bot = format!(
        "  - name: hoarder\n    extension: \"500\"\n    script: \"{}\"\n    script_memory_mb: 1\n",
        dir.path().join("hoard.rhai").display()
    );
    let config = binary::config(dir.path(), &emulator, &bot);
    let mut daemon = binary::daemon(&config, 1);
    let output = daemon.wait_for("memory budget", 1, WAIT);
    assert!(output.contains("kept chunk 2"), "{output}");
    assert!(!output.contains("kept chunk 4"), "{output}");
    assert!(
        output.contains("hoard.rhai"),
        "the error names the script: {output}"
    );
    assert!(daemon.terminate(WAIT).success(), "the daemon went on");
}

// ---------------------------------------------------------------------------------------------
// 6. Contact lists: formulas and giant rows.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_cells_are_escaped_and_oversized_rows_skipped_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.yaml");
    std::fs::write(
        &accounts,
        format!(
            "admin: {{ user: admin, password: \"{ADMIN_PASSWORD}\" }}\nextensions:\n  - {{ number: \"602\", password: \"602\" }}\n  - {{ number: \"7000\", auto: {{ action: answer, after_ms: 100 }} }}\n  - {{ number: \"7001\", auto: {{ action: answer, after_ms: 100 }} }}\n"
        ),
    )
    .unwrap();
    let emulator = emulator_with(
        dir.path(),
        &[
            "--media",
            "relay",
            "--accounts",
            &accounts.display().to_string(),
        ],
    );
    std::fs::write(
        dir.path().join("echo.rhai"),
        r#"fn on_call_state(call, state) {
    if state == "IN_CALL" { call.set_result(call.vars.name); call.hangup(); }
}
"#,
    )
    .unwrap();
    let bot = format!(
        "  - name: campaign\n    extension: \"602\"\n    script: \"{}\"\n    allow_dial: [\"7???\"]\n",
        dir.path().join("echo.rhai").display()
    );
    let config = binary::config(dir.path(), &emulator, &bot);
    let contacts = dir.path().join("contacts.csv");
    let giant = "9".repeat(100 << 10);
    std::fs::write(
        &contacts,
        format!(
            "number,name\n7000,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\"\n7001,@SUM(1+1)\n7002,{giant}\n=1+2,-3\n"
        ),
    )
    .unwrap();
    let results = dir.path().join("results.csv");
    let paths = [&config, &contacts, &results].map(|p| p.display().to_string());
    let (status, output) = run_to_end(
        &[
            "campaign",
            "-c",
            &paths[0],
            "--bot",
            "campaign",
            "--contacts",
            &paths[1],
            "--results",
            &paths[2],
        ],
        Duration::from_secs(120),
    );
    assert!(status.success(), "{output}");
    let line4 = format!("{}:4:", paths[1]);
    assert!(
        output
            .lines()
            .any(|l| l.contains(&line4) && l.contains("row larger than 65536 bytes")),
        "{output}"
    );
    let text = std::fs::read_to_string(&results).unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    for row in rows.records() {
        for cell in row.unwrap().iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell a spreadsheet would run: {cell:?} in\n{text}"
            );
        }
    }
    assert!(text.contains("'=HYPERLINK"), "{text}");
    assert!(text.contains("'@SUM(1+1)"), "{text}");
    assert!(text.contains("'=1+2"), "the refused number too: {text}");
    let back = callbot::campaign::read_results(&results).unwrap();
    let result_of = |line: u64| {
        back.iter()
            .find(|r| r.line == line)
            .map(|r| (r.outcome.state.clone(), r.outcome.result.clone()))
    };
    assert_eq!(
        result_of(2).unwrap().1,
        "=HYPERLINK(\"http://evil.example\",\"x\")",
        "read back as it was"
    );
    assert_eq!(result_of(4).unwrap().0, "SKIPPED");
}

// ---------------------------------------------------------------------------------------------
// 7. Connections: half-sent requests, idle and flooding sockets, too many sockets and calls.

/// A TLS connection to the emulator (nothing sent yet).
async fn tls_to(
    pbx: &Pbx,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = callbot::connection::tls::client_config(&TlsSetting::Insecure).unwrap();
    let tcp = tokio::net::TcpStream::connect(pbx.local_addr()).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_idle_sockets_are_closed() {
    let pbx = pbx_limited(Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut slow = tls_to(&pbx).await.unwrap();
    slow.write_all(b"GET /emulator/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "a half-sent request holds its connection");
    let mut silent = raw_socket(&pbx, "502").await;
    let (code, reason) = close_of(&mut silent).await;
    assert_eq!(code, 1001, "{reason}");
    assert!(
        stats(&pbx).await["refused"]["idle_sockets"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flood_closes_the_socket_and_others_go_on() {
    let pbx = pbx_limited(Limits {
        frames_per_second: 20,
        ..Limits::default()
    })
    .await;
    let mut calm = raw_socket(&pbx, "503").await;
    let mut flood = raw_socket(&pbx, "502").await;
    let garbage = Message::text("{ not json");
    for _ in 0..200 {
        if flood.send(garbage.clone()).await.is_err() {
            break;
        }
    }
    let (code, reason) = close_of(&mut flood).await;
    assert_eq!((code, reason.as_str()), (1008, "too many frames a second"));
    let refused = &stats(&pbx).await["refused"];
    assert_eq!(refused["frame_floods"], 1, "{refused}");
    assert!(
        refused["malformed_frames"].as_u64().unwrap() <= 20,
        "{refused}"
    );
    let register = ClientFrame::SipRegister {
        useragent: "calm".into(),
    };
    calm.send(Message::text(register.encode())).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = calm.next().await {
            if let Message::Text(text) = message
                && matches!(
                    ServerFrame::decode(&text),
                    Ok(ServerFrame::SipRegister { .. })
                )
            {
                return;
            }
        }
        panic!("the calm socket closed");
    })
    .await
    .expect("the calm socket is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_capped_per_address() {
    let pbx = pbx_limited(Limits {
        sockets_per_address: 3,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls_to(&pbx).await.expect("within the cap"));
    }
    assert!(
        tls_to(&pbx).await.is_err(),
        "a fourth connection is closed at once"
    );
    held.pop();
    until("a place to come free", WAIT, || async {
        tls_to(&pbx).await.ok().map(drop)
    })
    .await;
    drop(held);
    until(
        "the places of closed connections to come free",
        WAIT,
        || async {
            common::insecure_http()
                .get(format!("{}emulator/stats", pbx.url()))
                .send()
                .await
                .ok()
                .map(drop)
        },
    )
    .await;
    assert!(
        stats(&pbx).await["refused"]["connections"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_may_place_only_so_many_calls_at_once() {
    let pbx = pbx_limited(Limits {
        calls_per_extension: 2,
        ..Limits::default()
    })
    .await;
    // Registered once ready: its calls ring until the test ends.
    let _callee = TestClient::ready(&pbx, "503").await;
    let mut caller = TestClient::ready(&pbx, "502").await;
    let calls: Vec<CallId> = (0..3).map(|_| CallId::random()).collect();
    for call in &calls {
        caller.dial("503", call, "v=0\r\n").await;
    }
    let third = calls[2].clone();
    let code = caller
        .frame("bye for the third call", |f| match f {
            ServerFrame::Bye(bye) if bye.callid == third => Some(bye.code),
            _ => None,
        })
        .await;
    assert_eq!(code.map(|c| c.0), Some(503));
    let refused = common::emulator::events_of(&pbx, "call-refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(common::emulator::events_of(&pbx, "dial").await.len(), 2);
    // One ends: there is room again.
    caller.hang_up(&calls[0]).await;
    let fourth = CallId::random();
    tokio::time::timeout(WAIT, async {
        loop {
            caller.dial("503", &fourth, "v=0\r\n").await;
            if common::emulator::events_of(&pbx, "dial")
                .await
                .iter()
                .any(|e| e["callid"] == fourth.as_str())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a call after one ended");
}

// ---------------------------------------------------------------------------------------------
// Files that are not files.

#[test]
fn check_refuses_devices_and_fifos_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("bots.yaml");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a valid C string.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    for path in [PathBuf::from("/dev/zero"), fifo] {
        let (status, output) = run_to_end(&["check", "-c", path.to_str().unwrap()], WAIT);
        assert_eq!(status.code(), Some(2), "{output}");
        assert!(output.contains("not a regular file"), "{output}");
    }
    let big = dir.path().join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(callbot::input_file::MAX_BYTES + 1)
        .unwrap();
    let (status, output) = run_to_end(&["check", "-c", big.to_str().unwrap()], WAIT);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("larger than"), "{output}");
}
