//! The Twilio Media Streams messages (JSON text frames), both ways. Voice-agent frameworks ship
//! a serializer for exactly these shapes, so a bot that speaks them works with all of them.
//!
//! To the agent: `connected`, then `start`, then `media` (20 ms of 8 kHz μ-law each), `dtmf`,
//! `mark` (echoing the agent's own marks once their audio has played) and finally `stop`.
//! From the agent: `media` (audio to play), `mark` and `clear`; anything else is ignored.
//! Counters (`sequenceNumber`, `chunk`, `timestamp`) are strings, as Twilio sends them.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The longest mark name we take: names are echoed back, so they are kept whole or refused.
pub const MAX_MARK_NAME: usize = 1024;

/// Which audio a `media` message carries, named from the bot's side: `inbound` is what the
/// caller says, `outbound` what the bot plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    Inbound,
    Outbound,
}

/// Numbers the messages of one stream: `sequenceNumber` counts every message after
/// `connected`, `chunk` counts each track's media messages.
#[derive(Debug)]
pub struct Outgoing {
    stream_sid: String,
    account_sid: String,
    call_sid: String,
    sequence: u64,
    chunks: [u64; 2],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    event: &'static str,
    sequence_number: String,
    stream_sid: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StartBody<'a> {
    start: Start<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    stream_sid: &'a str,
    account_sid: &'a str,
    call_sid: &'a str,
    tracks: &'a [Track],
    custom_parameters: &'a BTreeMap<String, String>,
    media_format: MediaFormat,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormat {
    encoding: &'static str,
    sample_rate: u32,
    channels: u32,
}

#[derive(Serialize)]
struct MediaBody<'a> {
    media: Media<'a>,
}

#[derive(Serialize)]
struct Media<'a> {
    track: Track,
    chunk: String,
    timestamp: String,
    payload: &'a str,
}

#[derive(Serialize)]
struct DtmfBody {
    dtmf: Dtmf,
}

#[derive(Serialize)]
struct Dtmf {
    track: &'static str,
    digit: String,
}

#[derive(Serialize)]
struct MarkBody<'a> {
    mark: Mark<'a>,
}

#[derive(Serialize)]
struct Mark<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StopBody<'a> {
    stop: Stop<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stop<'a> {
    account_sid: &'a str,
    call_sid: &'a str,
}

impl Outgoing {
    /// `stream_sid` names this stream, `account_sid` the bot, `call_sid` the call.
    pub fn new(stream_sid: String, account_sid: String, call_sid: String) -> Self {
        Self {
            stream_sid,
            account_sid,
            call_sid,
            sequence: 0,
            chunks: [0; 2],
        }
    }

    pub fn stream_sid(&self) -> &str {
        &self.stream_sid
    }

    fn envelope<T: Serialize>(&mut self, event: &'static str, body: T) -> String {
        envelope(&mut self.sequence, &self.stream_sid, event, body)
    }

    /// The first message; it has no sequence number.
    pub fn connected(&self) -> String {
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned()
    }

    pub fn start(&mut self, tracks: &[Track], parameters: &BTreeMap<String, String>) -> String {
        envelope(
            &mut self.sequence,
            &self.stream_sid,
            "start",
            StartBody {
                start: Start {
                    stream_sid: &self.stream_sid,
                    account_sid: &self.account_sid,
                    call_sid: &self.call_sid,
                    tracks,
                    custom_parameters: parameters,
                    media_format: MediaFormat {
                        encoding: "audio/x-mulaw",
                        sample_rate: 8000,
                        channels: 1,
                    },
                },
            },
        )
    }

    /// One frame of μ-law, `timestamp_ms` after the stream started.
    pub fn media(&mut self, track: Track, timestamp_ms: u64, mulaw: &[u8]) -> String {
        let chunk = &mut self.chunks[track as usize];
        *chunk += 1;
        let chunk = chunk.to_string();
        let payload = BASE64.encode(mulaw);
        self.envelope(
            "media",
            MediaBody {
                media: Media {
                    track,
                    chunk,
                    timestamp: timestamp_ms.to_string(),
                    payload: &payload,
                },
            },
        )
    }

    /// A key the caller pressed.
    pub fn dtmf(&mut self, digit: char) -> String {
        self.envelope(
            "dtmf",
            DtmfBody {
                dtmf: Dtmf {
                    track: "inbound_track",
                    digit: digit.to_string(),
                },
            },
        )
    }

    /// The agent's mark `name`: the audio it sent before the mark has played (or was cleared).
    pub fn mark(&mut self, name: &str) -> String {
        self.envelope(
            "mark",
            MarkBody {
                mark: Mark { name },
            },
        )
    }

    /// The last message.
    pub fn stop(&mut self) -> String {
        envelope(
            &mut self.sequence,
            &self.stream_sid,
            "stop",
            StopBody {
                stop: Stop {
                    account_sid: &self.account_sid,
                    call_sid: &self.call_sid,
                },
            },
        )
    }
}

/// The next numbered message of stream `stream_sid`.
fn envelope<T: Serialize>(
    sequence: &mut u64,
    stream_sid: &str,
    event: &'static str,
    body: T,
) -> String {
    *sequence += 1;
    let envelope = Envelope {
        event,
        sequence_number: sequence.to_string(),
        stream_sid,
        body,
    };
    // Plain strings and numbers only: serializing cannot fail.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// A message from the agent that we act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// μ-law at 8 kHz to play to the caller, any length.
    Media(Vec<u8>),
    Mark(String),
    /// Drop the audio queued so far (the caller barged in).
    Clear,
    /// An event we do not act on (or none): ignored, as Twilio does.
    Other,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("not a JSON message: {0}")]
    Json(String),
    #[error("media payload is not base64")]
    Payload,
    #[error("mark name longer than {MAX_MARK_NAME} bytes")]
    MarkName,
}

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Raw {
    Media {
        media: RawMedia,
    },
    Mark {
        mark: RawMark,
    },
    Clear,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct RawMedia {
    payload: String,
}

#[derive(Deserialize)]
struct RawMark {
    name: String,
}

impl Incoming {
    /// Parses one text frame from the agent.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| MessageError::Json(e.to_string()))?;
        Ok(match raw {
            Raw::Media { media } => Incoming::Media(
                BASE64
                    .decode(media.payload.as_bytes())
                    .map_err(|_| MessageError::Payload)?,
            ),
            Raw::Mark { mark } if mark.name.len() > MAX_MARK_NAME => {
                return Err(MessageError::MarkName);
            }
            Raw::Mark { mark } => Incoming::Mark(mark.name),
            Raw::Clear => Incoming::Clear,
            Raw::Other => Incoming::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn outgoing() -> Outgoing {
        Outgoing::new("MZ01".into(), "agent-bot".into(), "call-7".into())
    }

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn messages_to_the_agent_have_twilios_shapes() {
        let mut out = outgoing();
        assert_eq!(
            value(&out.connected()),
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        );
        let params = BTreeMap::from([("lang".to_owned(), "de".to_owned())]);
        assert_eq!(
            value(&out.start(&[Track::Inbound, Track::Outbound], &params)),
            json!({
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ01",
                "start": {
                    "streamSid": "MZ01",
                    "accountSid": "agent-bot",
                    "callSid": "call-7",
                    "tracks": ["inbound", "outbound"],
                    "customParameters": {"lang": "de"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                }
            })
        );
        assert_eq!(
            value(&out.media(Track::Inbound, 20, &[0xff, 0x7f])),
            json!({
                "event": "media",
                "sequenceNumber": "2",
                "streamSid": "MZ01",
                "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": "/38="}
            })
        );
        let outbound = value(&out.media(Track::Outbound, 20, &[0xff]));
        assert_eq!(
            outbound["media"]["chunk"], "1",
            "each track counts its chunks"
        );
        assert_eq!(
            value(&out.media(Track::Inbound, 40, &[0xff]))["media"]["chunk"],
            "2"
        );
        assert_eq!(
            value(&out.dtmf('#')),
            json!({
                "event": "dtmf", "sequenceNumber": "5", "streamSid": "MZ01",
                "dtmf": {"track": "inbound_track", "digit": "#"}
            })
        );
        assert_eq!(
            value(&out.mark("greeting \"1\"")),
            json!({
                "event": "mark", "sequenceNumber": "6", "streamSid": "MZ01",
                "mark": {"name": "greeting \"1\""}
            })
        );
        assert_eq!(
            value(&out.stop()),
            json!({
                "event": "stop", "sequenceNumber": "7", "streamSid": "MZ01",
                "stop": {"accountSid": "agent-bot", "callSid": "call-7"}
            })
        );
    }

    #[test]
    fn messages_from_the_agent() {
        assert_eq!(
            Incoming::parse(r#"{"event":"media","streamSid":"MZ01","media":{"payload":"/38="}}"#),
            Ok(Incoming::Media(vec![0xff, 0x7f]))
        );
        assert_eq!(
            Incoming::parse(r#"{"event":"mark","streamSid":"MZ01","mark":{"name":"m1"}}"#),
            Ok(Incoming::Mark("m1".into()))
        );
        assert_eq!(
            Incoming::parse(r#"{"event":"clear","streamSid":"MZ01"}"#),
            Ok(Incoming::Clear)
        );
        assert_eq!(
            Incoming::parse(r#"{"event":"something-new"}"#),
            Ok(Incoming::Other)
        );
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        for text in [
            "",
            "[]",
            "{}",
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":{"payload":7}}"#,
            r#"{"event":"mark","mark":{}}"#,
            "\u{0}garbage",
        ] {
            assert!(Incoming::parse(text).is_err(), "{text:?}");
        }
        assert_eq!(
            Incoming::parse(r#"{"event":"media","media":{"payload":"***"}}"#),
            Err(MessageError::Payload)
        );
        let long = format!(
            r#"{{"event":"mark","mark":{{"name":"{}"}}}}"#,
            "x".repeat(MAX_MARK_NAME + 1)
        );
        assert_eq!(Incoming::parse(&long), Err(MessageError::MarkName));
    }
}
