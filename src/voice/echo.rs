//! A tiny voice agent that speaks the Twilio Media Streams protocol: it sends the caller's own
//! audio back after a delay, so a person hears the whole path work. `*` clears what it has
//! queued (barge-in), `#` ends the stream. `callbot agent-echo` serves it, and `callbot demo`
//! runs one for its agent bot.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info};

/// Streams served at once; more wait for a free one.
const MAX_STREAMS: usize = 256;
/// The largest message taken from a bot (a 20 ms media message is about 300 bytes).
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// Frames held for their echo at most: up to ten seconds of delay.
const MAX_HELD: usize = 500;

/// A running echo agent.
pub struct EchoAgent {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoAgent {
    /// Listens on `listen` (port 0: one the OS picks); echoes after `delay`.
    pub async fn start(listen: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let slots = Arc::new(Semaphore::new(MAX_STREAMS));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(e) = serve(tcp, delay).await {
                        debug!("echo agent: stream from {peer}: {e}");
                    }
                    drop(permit);
                });
            }
        });
        Ok(Self { address, task })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL a bot streams to.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.address)
    }
}

impl Drop for EchoAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One stream: echo inbound media `delay` later, act on keys, stop at `stop`.
async fn serve(tcp: TcpStream, delay: Duration) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let mut socket = tokio_tungstenite::accept_async_with_config(tcp, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    let mut stream_sid = String::new();
    let mut held: VecDeque<(Instant, String)> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                };
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match message["event"].as_str().unwrap_or_default() {
                    "start" => {
                        stream_sid = message["streamSid"].as_str().unwrap_or_default().to_owned();
                        info!("echo agent: stream {} started", crate::untrusted::escaped(&stream_sid));
                    }
                    "media" if message["media"]["track"] == "inbound" => {
                        if let Some(payload) = message["media"]["payload"].as_str() {
                            if held.len() >= MAX_HELD {
                                held.pop_front();
                            }
                            held.push_back((Instant::now() + delay, payload.to_owned()));
                        }
                    }
                    "dtmf" => match message["dtmf"]["digit"].as_str() {
                        Some("*") => {
                            held.clear();
                            let clear = json!({"event": "clear", "streamSid": stream_sid});
                            socket.send(Message::text(clear.to_string())).await.map_err(|e| e.to_string())?;
                        }
                        Some("#") => {
                            socket.close(None).await.map_err(|e| e.to_string())?;
                            return Ok(());
                        }
                        _ => {}
                    },
                    "stop" => return Ok(()),
                    _ => {}
                }
            }
            now = tick.tick() => {
                while held.front().is_some_and(|(due, _)| *due <= now) {
                    let Some((_, payload)) = held.pop_front() else { break };
                    let media = json!({
                        "event": "media",
                        "streamSid": stream_sid,
                        "media": {"payload": payload},
                    });
                    socket.feed(Message::text(media.to_string())).await.map_err(|e| e.to_string())?;
                }
                socket.flush().await.map_err(|e| e.to_string())?;
            }
        }
    }
}
