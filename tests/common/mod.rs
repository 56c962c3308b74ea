//! What the property tests and the fuzz harness feed their inputs to: every parser that sees
//! untrusted text, plus the invariants that must hold when a parser accepts its input.

#![allow(dead_code)] // each test crate uses part of this module

use std::path::Path;

use callbot::config::Config;
use callbot::protocol::{ClientFrame, ServerFrame};

/// Decodes `text` as a server frame and as a client frame. Must never panic; a frame that
/// decodes must decode to the same value again after we encode it (so the emulator and the bots
/// agree on every frame either of them can produce). Returns whether either decoder accepted it.
pub fn exercise_frame(text: &str) -> bool {
    let server = ServerFrame::decode(text);
    if let Ok(frame) = &server {
        let again = ServerFrame::decode(&frame.encode())
            .unwrap_or_else(|e| panic!("re-decoding {frame:?} failed: {e}"));
        assert_eq!(again, bare(frame), "server frame changed on a round trip");
        if let ServerFrame::Candidate(candidate) = frame {
            let _ = candidate.lines();
        }
    }
    let client = ClientFrame::decode(text);
    if let Ok(frame) = &client {
        let again = ClientFrame::decode(&frame.encode())
            .unwrap_or_else(|e| panic!("re-decoding {frame:?} failed: {e}"));
        assert_eq!(&again, frame, "client frame changed on a round trip");
    }
    server.is_ok() || client.is_ok()
}

/// `frame` as it survives our encoding: the PBX sends SDP as bare text (docs/protocol.md §3), so
/// the type an object-form SDP declared is not sent on.
fn bare(frame: &ServerFrame) -> ServerFrame {
    let mut frame = frame.clone();
    match &mut frame {
        ServerFrame::Sdp(sdp) => sdp.sdp.kind = None,
        ServerFrame::InviteSdp(invite) => invite.sdp.kind = None,
        _ => {}
    }
    frame
}

/// Loads `text` as a config file living in `dir`. Must never panic. Returns whether it was valid.
pub fn exercise_config(text: &str, dir: &Path) -> bool {
    let env = |name: &str| (name == "SET").then(|| "value".to_owned());
    Config::parse(text, &dir.join("bots.yaml"), &env).is_ok()
}

/// The fixture folder, where a config's script and prompt paths can resolve.
pub fn fixture_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config"
    ))
}

/// Keys and values that steer random JSON towards the frames the decoders know: the reserved
/// keys of flat frames, then the rest.
pub static FRAME_WORDS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    callbot::protocol::RESERVED_KEYS
        .iter()
        .chain(OTHER_FRAME_WORDS)
        .copied()
        .collect()
});

const OTHER_FRAME_WORDS: &[&str] = &[
    "action",
    "callid",
    "cseq",
    "code",
    "reason",
    "from",
    "to",
    "from-user",
    "from-display",
    "adr",
    "calls",
    "accounts",
    "account",
    "registered",
    "dnd",
    "id",
    "id2",
    "state",
    "callstate",
    "type",
    "offer",
    "answer",
    "true",
    "false",
    "add",
    "remove",
    "expires",
    "subscribe",
    "caller",
    "holdcmd",
    "sendonly",
    "sendrecv",
    "startstop",
    "on",
    "off",
    "name",
    "number",
    "call-state",
    "user-state",
    "domain-state",
    "blf",
    "sip-register",
    "callerid",
    "rec-start",
    "rec-stop",
    "avoid-disconnect",
    "own-calls",
    "orbit-calls",
    "domain-calls",
    "sdp-packet",
    "sip-ringing",
    "sdp-200ok",
    "sip-busy",
    "sip-ack",
    "ice-candidate",
    "sip-bye",
    "bye-response",
    "cancel-response",
    "wrtc-hold",
    "blind-transfer2",
    "att-transfer",
    "rec-call",
    "sdpMid",
    "sdpMLineIndex",
    "usernameFragment",
    "calldir",
    "callee",
    "domain",
    "useragent",
    "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
];
/// An HTTPS client for the emulator, whose certificate is self-signed.
pub fn insecure_http() -> reqwest::Client {
    let tls = callbot::connection::tls::client_config(&callbot::config::TlsSetting::Insecure);
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.expect("TLS config"))
        .build()
        .expect("HTTP client")
}

/// `GET <base>emulator/<what>` as JSON (`base` ends in `/`): the emulator's own view of its
/// calls and events, which tests compare with what the bots saw.
pub async fn emulator_json<T: serde::de::DeserializeOwned>(base: &str, what: &str) -> T {
    insecure_http()
        .get(format!("{base}emulator/{what}"))
        .send()
        .await
        .expect("emulator answers")
        .json()
        .await
        .expect("emulator sends JSON")
}

/// Runs a test body (an `async fn(Dialect)`) once per dialect, as the tests `<name>::modern` and
/// `<name>::legacy`: every feature must work with both kinds of PBX.
#[allow(unused_macros)] // not every test crate has dialect-specific tests
macro_rules! both_dialects {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn modern() {
                super::$name(callbot::protocol::Dialect::Modern).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn legacy() {
                super::$name(callbot::protocol::Dialect::Legacy).await;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_dialects;

pub mod agent;
pub mod audio;
pub mod binary;
pub mod emulator;
pub mod ivr;
pub mod legs;
pub mod mutate;
pub mod wait;
