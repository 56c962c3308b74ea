//! Wire conformance. Every example frame of the vendor's WebSocket page and of the protocol
//! document (kept in `tests/fixtures/wire/`) decodes and re-encodes into exactly the vendor's
//! shape: the same key names and value types (string, number, boolean, object, list, `"true"`
//! strings), per direction. And every frame the emulator sends, in both dialects and both media
//! modes, has a shape those examples show for its dialect: SDP as bare text above all.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use callbot::media::{MediaLeg, MediaRuntime};
use callbot::pbx::{MediaMode, Pbx};
use callbot::protocol::{
    CallId, CallScope, ClientFrame, Cseq, Dialect, HoldCommand, RESERVED_KEYS, ServerFrame,
};
use common::emulator::{WAIT, media_runtime, raw_socket, start_pbx};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
enum Direction {
    /// Client → PBX.
    Client,
    /// PBX → client.
    Server,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    name: String,
    direction: Direction,
    /// The dialects whose PBXs send (or receive) it.
    dialects: Vec<String>,
    /// The frame as the document shows it.
    frame: Value,
    /// The vendor's shape, when the document's frame is a lenient form of it.
    wire: Option<Value>,
}

impl Fixture {
    fn wire(&self) -> &Value {
        self.wire.as_ref().unwrap_or(&self.frame)
    }
}

#[derive(Deserialize)]
struct Fixtures {
    frames: Vec<Fixture>,
}

/// Both documents' examples, each with the file it comes from.
fn fixtures() -> Vec<(&'static str, Fixture)> {
    ["vendor.json", "protocol.json"]
        .into_iter()
        .flat_map(|file| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/wire")
                .join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let fixtures: Fixtures =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            fixtures.frames.into_iter().map(move |f| (file, f))
        })
        .collect()
}

/// Decodes `frame` as sent in `direction` and encodes it again; a frame the decoder does not
/// understand is an error.
fn re_encode(direction: Direction, frame: &Value) -> Result<Value, String> {
    let text = frame.to_string();
    match direction {
        Direction::Client => match ClientFrame::decode(&text).map_err(|e| e.to_string())? {
            ClientFrame::Unknown(_) => Err("decoded as an unknown frame".into()),
            known => Ok(known.to_json()),
        },
        Direction::Server => match ServerFrame::decode(&text).map_err(|e| e.to_string())? {
            ServerFrame::Unknown(_) => Err("decoded as an unknown frame".into()),
            known => Ok(known.to_json()),
        },
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Where two frames differ in keys or value types (empty when only values differ).
fn shape_differences(got: &Value, want: &Value, path: &str, out: &mut Vec<String>) {
    if type_name(got) != type_name(want) {
        out.push(format!(
            "{path}: {} instead of {}",
            type_name(got),
            type_name(want)
        ));
        return;
    }
    match (got, want) {
        (Value::Object(got), Value::Object(want)) => {
            for key in want.keys().filter(|k| !got.contains_key(*k)) {
                out.push(format!("{path}.{key}: missing"));
            }
            for (key, value) in got {
                match want.get(key) {
                    Some(wanted) => shape_differences(value, wanted, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key}: not in the vendor's shape")),
                }
            }
        }
        (Value::Array(got), Value::Array(want)) => {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                shape_differences(g, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_example_frame_re_encodes_in_the_vendors_shape() {
    let fixtures = fixtures();
    assert!(fixtures.len() > 70, "both documents' examples are loaded");
    let mut failures = Vec::new();
    for (file, fixture) in &fixtures {
        let wire = fixture.wire();
        for (what, input) in [
            ("the document's frame", &fixture.frame),
            ("its wire form", wire),
        ] {
            match re_encode(fixture.direction, input) {
                Ok(encoded) if encoded == *wire => {}
                Ok(encoded) => {
                    let mut shape = Vec::new();
                    shape_differences(&encoded, wire, "frame", &mut shape);
                    failures.push(format!(
                        "{file}: {}: {what} re-encodes as {encoded}\n  expected {wire}\n  {}",
                        fixture.name,
                        shape.join("; ")
                    ));
                }
                Err(e) => failures.push(format!("{file}: {}: {what}: {e}", fixture.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A frame's kind: its reserved key (server frames, §3 precedence) or its action.
fn kind_of(direction: Direction, frame: &Value) -> String {
    let counts =
        |v: &Value| !matches!(v, Value::Null | Value::Bool(false)) && v != "" && v != "false";
    if direction == Direction::Server
        && let Some(key) = RESERVED_KEYS
            .iter()
            .find(|key| frame.get(**key).is_some_and(counts))
    {
        return (*key).to_owned();
    }
    frame["action"].as_str().unwrap_or("?").to_owned()
}

/// What the examples allow at one place of a frame: value types, and the keys of objects and
/// the items of lists they show.
#[derive(Debug, Default)]
struct Shape {
    types: BTreeSet<&'static str>,
    keys: BTreeMap<String, Shape>,
    items: Option<Box<Shape>>,
}

impl Shape {
    fn learn(&mut self, value: &Value) {
        self.types.insert(type_name(value));
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    self.keys.entry(key.clone()).or_default().learn(value);
                }
            }
            Value::Array(items) => {
                let shape = self.items.get_or_insert_with(Box::default);
                for item in items {
                    shape.learn(item);
                }
            }
            _ => {}
        }
    }

    fn check(&self, value: &Value, path: &str, problems: &mut Vec<String>) {
        if !self.types.contains(type_name(value)) {
            problems.push(format!(
                "{path} is a {}, the examples show {:?}",
                type_name(value),
                self.types
            ));
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match self.keys.get(key) {
                        Some(shape) => shape.check(value, &format!("{path}.{key}"), problems),
                        None => problems.push(format!("{path}.{key} is in no example")),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(shape) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        shape.check(item, &format!("{path}[{i}]"), problems);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The examples' shapes of every server frame kind a PBX of `dialect` sends.
fn server_shapes(dialect: Dialect) -> BTreeMap<String, Shape> {
    let mut shapes: BTreeMap<String, Shape> = BTreeMap::new();
    for (_, fixture) in fixtures() {
        if fixture.direction == Direction::Server
            && fixture.dialects.iter().any(|d| d == dialect.as_str())
        {
            let wire = fixture.wire();
            shapes
                .entry(kind_of(Direction::Server, wire))
                .or_default()
                .learn(wire);
        }
    }
    shapes
}

/// A client on a raw socket with a media leg of our own stack (for real SDP): it keeps every
/// frame the emulator sends it.
struct RawPhone {
    socket: callbot::connection::PbxSocket,
    leg: MediaLeg,
    received: Vec<Value>,
}

impl RawPhone {
    async fn connect(pbx: &Pbx, extension: &str, media: &MediaRuntime) -> Self {
        let (leg, _events) = media.new_leg().await.unwrap();
        let mut phone = Self {
            socket: raw_socket(pbx, extension).await,
            leg,
            received: Vec::new(),
        };
        phone.send(ClientFrame::AvoidDisconnect).await;
        for scope in [CallScope::Own, CallScope::Domain] {
            let subscribe = true;
            phone
                .send(ClientFrame::CallSubscription { scope, subscribe })
                .await;
        }
        phone.send(ClientFrame::Ringtones).await;
        let blf = ClientFrame::Blf {
            add: vec!["502".into(), "503".into()],
            remove: vec![],
        };
        phone.send(blf).await;
        let useragent = "wire-test".into();
        phone.send(ClientFrame::SipRegister { useragent }).await;
        phone
            .next("sip-register reply", |f| f["action"] == "sip-register")
            .await;
        phone
    }

    /// A new leg, for the next call.
    async fn new_leg(&mut self, media: &MediaRuntime) {
        self.leg = media.new_leg().await.unwrap().0;
    }

    async fn send(&mut self, frame: ClientFrame) {
        self.socket
            .send(Message::text(frame.encode()))
            .await
            .unwrap();
    }

    /// The next frame `wanted` accepts (every frame on the way is kept).
    async fn next(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(WAIT, async {
            while let Some(message) = self.socket.next().await {
                if let Message::Text(text) = message.expect("socket open") {
                    let frame: Value = serde_json::from_str(&text).expect("frames are JSON");
                    self.received.push(frame.clone());
                    if wanted(&frame) {
                        return frame;
                    }
                }
            }
            panic!("the socket closed while waiting for {what}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {what}"))
    }
}

fn text(frame: &Value, key: &str) -> String {
    frame[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not text in {frame}"))
        .to_owned()
}

fn cseq(frame: &Value) -> Cseq {
    match &frame["cseq"] {
        Value::Number(n) => Cseq::Number(n.as_u64().unwrap()),
        Value::String(s) => Cseq::Text(s.clone()),
        other => panic!("cseq {other} in {frame}"),
    }
}

fn call_id(frame: &Value) -> CallId {
    CallId::new(text(frame, "callid")).unwrap()
}

/// 502 calls 503, which answers, holds and resumes; 502 hangs up. 502 calls again and gives up
/// before 503 answers. The frames both received.
async fn calls_through(pbx: &Pbx, dialect: Dialect) -> Vec<Value> {
    let media = media_runtime();
    let mut caller = RawPhone::connect(pbx, "502", &media).await;
    let mut callee = RawPhone::connect(pbx, "503", &media).await;

    let ours = CallId::random();
    let offer = caller.leg.create_offer().await.unwrap();
    caller
        .send(ClientFrame::SdpPacket {
            to: "503".into(),
            callid: ours.clone(),
            offer,
        })
        .await;
    let invite = callee
        .next("invitesdp", |f| f.get("invitesdp").is_some())
        .await;
    let inbound = call_id(&invite);
    let answer = callee
        .leg
        .accept_offer(&text(&invite, "invitesdp"))
        .await
        .unwrap();
    callee
        .send(ClientFrame::SipRinging {
            callid: inbound.clone(),
            cseq: cseq(&invite),
        })
        .await;
    callee
        .send(ClientFrame::Sdp200Ok {
            callid: inbound.clone(),
            cseq: cseq(&invite),
            answer,
        })
        .await;

    // The caller's `sdp` frames: our answer (legacy), or the PBX's offer to answer (modern).
    let mut negotiated = false;
    let outbound = loop {
        let sdp = caller.next("sdp", |f| f.get("sdp").is_some()).await;
        let outbound = call_id(&sdp);
        if !negotiated {
            negotiated = true;
            let remote = text(&sdp, "sdp");
            if dialect == Dialect::Modern {
                caller.leg.rollback().await.unwrap();
                let answer = caller.leg.accept_offer(&remote).await.unwrap();
                caller
                    .send(ClientFrame::Sdp200Ok {
                        callid: outbound.clone(),
                        cseq: cseq(&sdp),
                        answer,
                    })
                    .await;
            } else {
                caller.leg.apply_answer(&remote).await.unwrap();
            }
        }
        if sdp["code"] == 200 {
            break outbound;
        }
    };
    caller
        .send(ClientFrame::SipAck {
            callid: outbound.clone(),
        })
        .await;
    for command in [HoldCommand::Hold, HoldCommand::Resume] {
        callee
            .send(ClientFrame::WrtcHold {
                callid: Some(inbound.clone()),
                command,
                offer: None,
                calldir: None,
            })
            .await;
    }
    caller
        .next("the held state", |f| {
            f["action"] == "call-state" && f.to_string().contains("onhold")
        })
        .await;
    caller
        .send(ClientFrame::SipBye {
            callid: Some(outbound),
            caller: true,
        })
        .await;
    let bye = callee.next("bye", |f| f.get("bye").is_some()).await;
    callee
        .send(ClientFrame::ByeResponse {
            callid: call_id(&bye),
            cseq: Some(cseq(&bye)),
        })
        .await;

    // Given up before the answer: the callee's fork is cancelled.
    caller.new_leg(&media).await;
    callee.new_leg(&media).await;
    let offer = caller.leg.create_offer().await.unwrap();
    let second = CallId::random();
    caller
        .send(ClientFrame::SdpPacket {
            to: "503".into(),
            callid: second.clone(),
            offer,
        })
        .await;
    let invite = callee
        .next("invitesdp", |f| f.get("invitesdp").is_some())
        .await;
    caller
        .send(ClientFrame::SipBye {
            callid: Some(second),
            caller: true,
        })
        .await;
    let cancel = callee.next("cancel", |f| f.get("cancel").is_some()).await;
    assert_eq!(cancel["callid"], invite["callid"]);
    callee
        .send(ClientFrame::CancelResponse {
            callid: call_id(&cancel),
            cseq: cseq(&cancel),
        })
        .await;
    caller
        .next("cancelresponse", |f| f.get("cancelresponse").is_some())
        .await;

    let mut frames = caller.received;
    frames.extend(callee.received);
    frames
}

async fn the_emulator_sends_the_vendors_shapes(dialect: Dialect, media: MediaMode) {
    let pbx = start_pbx(media, dialect).await;
    let frames = calls_through(&pbx, dialect).await;
    let shapes = server_shapes(dialect);
    let mut problems = Vec::new();
    let mut sdp_values = 0;
    for frame in &frames {
        let kind = kind_of(Direction::Server, frame);
        match shapes.get(&kind) {
            Some(shape) => shape.check(frame, &kind, &mut problems),
            None => problems.push(format!("{kind}: no example shows this frame: {frame}")),
        }
        for key in ["sdp", "invitesdp"] {
            if let Some(sdp) = frame.get(key) {
                sdp_values += 1;
                assert!(
                    sdp.as_str().is_some_and(|s| s.starts_with("v=0")),
                    "{key} is not bare SDP text: {frame}"
                );
            }
        }
    }
    assert!(sdp_values >= 3, "offers and answers went by: {frames:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_sends_the_vendors_shapes_legacy_anchored() {
    the_emulator_sends_the_vendors_shapes(Dialect::Legacy, MediaMode::Anchored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_sends_the_vendors_shapes_modern_anchored() {
    the_emulator_sends_the_vendors_shapes(Dialect::Modern, MediaMode::Anchored).await;
}

/// Relay media always speaks the legacy dialect (the emulator makes no offers of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_sends_the_vendors_shapes_relay() {
    the_emulator_sends_the_vendors_shapes(Dialect::Legacy, MediaMode::Relay).await;
}
