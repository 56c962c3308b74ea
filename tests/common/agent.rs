//! A voice agent for tests: a WebSocket server on 127.0.0.1 that checks the shape of every
//! Twilio Media Streams message a bot sends it, and sends what the test tells it to.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderMap;

/// How long a test waits for the next message it expects.
pub const WAIT: Duration = Duration::from_secs(20);

/// Accepts streams; each becomes an [`AgentStream`].
pub struct TestAgent {
    pub url: String,
    streams: mpsc::UnboundedReceiver<AgentStream>,
}

impl TestAgent {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/agent", listener.local_addr().unwrap());
        let (tx, streams) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Some(stream) = AgentStream::accept(tcp).await {
                    let _ = tx.send(stream);
                }
            }
        });
        Self { url, streams }
    }

    /// The next stream a bot opens.
    pub async fn stream(&mut self) -> AgentStream {
        timeout(WAIT, self.streams.recv())
            .await
            .expect("a bot opens a stream")
            .expect("the agent listens")
    }
}

/// One received message and when it came.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub message: Value,
}

impl Received {
    pub fn event(&self) -> &str {
        self.message["event"].as_str().unwrap_or_default()
    }

    /// The μ-law of a media message.
    pub fn payload(&self) -> Vec<u8> {
        BASE64
            .decode(self.message["media"]["payload"].as_str().unwrap())
            .unwrap()
    }

    pub fn track(&self) -> &str {
        self.message["media"]["track"].as_str().unwrap_or_default()
    }
}

/// One stream as the agent sees it: every message is checked against Twilio's shapes as it
/// arrives (a wrong one fails the test), and kept.
pub struct AgentStream {
    pub headers: HeaderMap,
    socket: WebSocketStream<TcpStream>,
    pub received: Vec<Received>,
    pub start: Value,
    sequence: u64,
    chunks: [(u64, u64); 2],
    stopped: bool,
}

impl AgentStream {
    // The header callback's error type is tungstenite's (an HTTP response).
    #[allow(clippy::result_large_err)]
    async fn accept(tcp: TcpStream) -> Option<Self> {
        let mut headers = HeaderMap::new();
        let socket = tokio_tungstenite::accept_hdr_async(tcp, |request: &Request, response| {
            headers = request.headers().clone();
            Ok::<Response, _>(response)
        })
        .await
        .ok()?;
        Some(Self {
            headers,
            socket,
            received: Vec::new(),
            start: Value::Null,
            sequence: 0,
            chunks: [(0, 0); 2],
            stopped: false,
        })
    }

    /// Reads `connected` and `start`, checking both.
    pub async fn started(&mut self) -> &Value {
        let connected = self.next().await.expect("connected");
        assert_eq!(
            connected.message,
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        );
        let start = self.next().await.expect("start");
        assert_eq!(start.event(), "start");
        &self.start
    }

    /// The next message (checked), or `None` when the bot closed the socket.
    pub async fn next(&mut self) -> Option<Received> {
        loop {
            let message = timeout(WAIT, self.socket.next())
                .await
                .expect("the bot sends something")?;
            match message {
                Ok(Message::Text(text)) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON");
                    self.check(&message);
                    let received = Received {
                        at: Instant::now(),
                        message,
                    };
                    self.received.push(received.clone());
                    return Some(received);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until a message `pick` accepts.
    pub async fn until(&mut self, what: &str, pick: impl Fn(&Received) -> bool) -> Received {
        loop {
            let received = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream closed before {what}"));
            if pick(&received) {
                return received;
            }
        }
    }

    /// Echoes each inbound frame `delay` after it came, paced at 20 ms, until a message
    /// `done` accepts arrives (returned) or the bot closes the socket (`None`).
    pub async fn echo_until(
        &mut self,
        delay: Duration,
        done: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let mut held: VecDeque<(Instant, String)> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                received = self.next() => {
                    let received = received?;
                    if received.event() == "media" && received.track() == "inbound" {
                        let payload = received.message["media"]["payload"].as_str().unwrap();
                        held.push_back((received.at + delay, payload.to_owned()));
                    }
                    if done(&received) {
                        return Some(received);
                    }
                }
                now = tick.tick() => {
                    while held.front().is_some_and(|(due, _)| *due <= now) {
                        let (_, payload) = held.pop_front().unwrap();
                        self.send(json!({"event": "media", "media": {"payload": payload}})).await;
                    }
                }
            }
        }
    }

    /// Sends a message with this stream's `streamSid`.
    pub async fn send(&mut self, mut message: Value) {
        message["streamSid"] = self.start["streamSid"].clone();
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("the bot takes messages");
    }

    /// Sends μ-law audio as 20 ms media messages.
    pub async fn say(&mut self, mulaw: &[u8]) {
        for frame in mulaw.chunks(160) {
            self.send(json!({"event": "media", "media": {"payload": BASE64.encode(frame)}}))
                .await;
        }
    }

    pub async fn mark(&mut self, name: &str) {
        self.send(json!({"event": "mark", "mark": {"name": name}}))
            .await;
    }

    /// Drops the connection without a close (a crashed agent).
    pub fn crash(self) {
        drop(self.socket);
    }

    /// Every message must be one Twilio sends, numbered and shaped as Twilio numbers and
    /// shapes them.
    fn check(&mut self, message: &Value) {
        let event = message["event"]
            .as_str()
            .expect("every message has an event");
        assert!(!self.stopped, "nothing may follow stop: {message}");
        if event == "connected" {
            assert_eq!(self.sequence, 0, "connected comes first");
            return;
        }
        self.sequence += 1;
        assert_eq!(
            message["sequenceNumber"],
            self.sequence.to_string(),
            "sequence numbers count every message: {message}"
        );
        let sid = message["streamSid"].as_str().expect("streamSid");
        if self.sequence == 1 {
            assert_eq!(event, "start", "start follows connected");
            let start = &message["start"];
            assert!(
                sid.len() == 34
                    && sid.starts_with("MZ")
                    && sid[2..].chars().all(|c| c.is_ascii_hexdigit()),
                "a Twilio-like stream sid: {sid}"
            );
            assert_eq!(start["streamSid"], sid);
            assert!(start["accountSid"].as_str().is_some_and(|a| !a.is_empty()));
            assert!(start["callSid"].as_str().is_some_and(|c| !c.is_empty()));
            let tracks = start["tracks"].as_array().expect("tracks");
            assert!(
                tracks == &[json!("inbound")] || tracks == &[json!("inbound"), json!("outbound")]
            );
            assert!(start["customParameters"].is_object());
            assert_eq!(
                start["mediaFormat"],
                json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
            );
            self.start = start.clone();
            return;
        }
        assert_eq!(sid, self.start["streamSid"], "one streamSid throughout");
        match event {
            "media" => {
                let media = &message["media"];
                let track = media["track"].as_str().expect("track");
                assert!(
                    self.start["tracks"]
                        .as_array()
                        .unwrap()
                        .contains(&json!(track)),
                    "media of a track that start announced: {message}"
                );
                let (chunk, timestamp) = &mut self.chunks[usize::from(track == "outbound")];
                *chunk += 1;
                assert_eq!(media["chunk"], chunk.to_string(), "chunks count per track");
                let at: u64 = media["timestamp"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .expect("timestamp: milliseconds as a string");
                assert!(at >= *timestamp, "timestamps do not go back: {message}");
                *timestamp = at;
                let payload = BASE64
                    .decode(media["payload"].as_str().expect("payload"))
                    .expect("base64 payload");
                assert_eq!(payload.len(), 160, "20 ms of 8 kHz μ-law per message");
            }
            "dtmf" => {
                assert_eq!(message["dtmf"]["track"], "inbound_track");
                let digit = message["dtmf"]["digit"].as_str().expect("digit");
                assert!(
                    digit.len() == 1 && "0123456789*#ABCD".contains(digit),
                    "{message}"
                );
            }
            "mark" => {
                assert!(message["mark"]["name"].is_string(), "{message}");
            }
            "stop" => {
                assert_eq!(message["stop"]["accountSid"], self.start["accountSid"]);
                assert_eq!(message["stop"]["callSid"], self.start["callSid"]);
                self.stopped = true;
            }
            other => panic!("Twilio sends no {other:?} event: {message}"),
        }
    }
}

/// `ms` of a sine at `hz` as 8 kHz μ-law.
pub fn tone(hz: f32, ms: u32) -> Vec<u8> {
    callbot::media::tone::sine(hz, 8000, ms)
        .into_iter()
        .map(audio_codec_algorithms::encode_ulaw)
        .collect()
}

/// Whether a μ-law frame carries sound (not silence).
pub fn loud(mulaw: &[u8]) -> bool {
    let energy: f64 = mulaw
        .iter()
        .map(|&b| f64::from(audio_codec_algorithms::decode_ulaw(b)).powi(2))
        .sum();
    (energy / mulaw.len().max(1) as f64).sqrt() > 300.0
}
