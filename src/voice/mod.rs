//! Voice agents: a call's audio streamed both ways over a WebSocket in the Twilio Media Streams
//! format (`call.stream(url)`), so any agent framework with a Twilio serializer can take a call.
//!
//! The caller's audio reaches the agent through an [`AudioTap`](crate::media::tap::AudioTap) on
//! the call's leg, one `media` message per 20 ms; the agent's audio plays through a
//! [`LiveFeed`](crate::media::live::LiveFeed) item of the leg's player, paced by the media clock
//! and recorded like a prompt. Every queue between them is bounded.

mod audio;
pub mod echo;
mod message;
mod metrics;
mod session;
mod socket;

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::ClientConfig;
use thiserror::Error;
use tokio_tungstenite::tungstenite::http::{HeaderName, StatusCode};

use crate::config::{Secret, StreamConfig, TlsSetting};
use crate::connection::tls::{self, TlsError};

pub use audio::{Downlink, FRAME, Framer, STREAM_RATE};
pub use message::{Incoming, MAX_MARK_NAME, MessageError, Outgoing, Track};
pub use metrics::{StreamFamilies, StreamMetrics};
pub use session::Stream;
pub use socket::check_url;

/// Which audio the agent gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tracks {
    /// What the caller says (what an agent needs).
    #[default]
    Inbound,
    /// Also what the bot plays, as `outbound` media.
    Both,
}

impl Tracks {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "inbound" => Some(Tracks::Inbound),
            "both" => Some(Tracks::Both),
            _ => None,
        }
    }

    /// As `start.tracks` lists them.
    pub fn list(self) -> &'static [Track] {
        match self {
            Tracks::Inbound => &[Track::Inbound],
            Tracks::Both => &[Track::Inbound, Track::Outbound],
        }
    }
}

/// What a script asked for: `call.stream(url, #{ params, tracks })`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRequest {
    pub url: String,
    /// `start.customParameters` (the config's `stream.params` are added and win).
    pub params: BTreeMap<String, String>,
    pub tracks: Tracks,
}

/// A bot's stream settings, from its config: who it is to the agent, how to reach agents.
pub struct StreamSettings {
    /// `start.accountSid`: the bot's name.
    pub account: String,
    /// Sent with the WebSocket upgrade (an `Authorization` token); never logged.
    pub headers: Vec<(HeaderName, Secret)>,
    /// Added to every stream's `customParameters` (tokens some agents expect there).
    pub params: BTreeMap<String, Secret>,
    /// How `wss://` agents' certificates are checked.
    pub tls: Arc<ClientConfig>,
    /// `ws://` to hosts other than this machine.
    pub allow_ws: bool,
    pub metrics: StreamMetrics,
}

impl std::fmt::Debug for StreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSettings")
            .field("account", &self.account)
            .field("headers", &self.headers)
            .field("params", &self.params)
            .field("allow_ws", &self.allow_ws)
            .finish_non_exhaustive()
    }
}

impl StreamSettings {
    /// No headers or parameters, `ws://` to loopback only; `wss://` checked with `tls`.
    pub fn new(account: &str, tls: Arc<ClientConfig>) -> Self {
        Self {
            account: account.to_owned(),
            headers: Vec::new(),
            params: BTreeMap::new(),
            tls,
            allow_ws: false,
            metrics: StreamMetrics::default(),
        }
    }
}

impl StreamSettings {
    /// A bot's settings from its `stream:` config; `wss://` agents are checked as the PBX is
    /// unless the section says otherwise (`pbx_tls`).
    pub fn from_config(
        account: &str,
        config: &StreamConfig,
        pbx_tls: Arc<ClientConfig>,
        metrics: StreamMetrics,
    ) -> Result<Self, TlsError> {
        let tls = match &config.tls {
            None => pbx_tls,
            Some(setting) => {
                if *setting == TlsSetting::Insecure {
                    tracing::warn!(
                        bot = account,
                        "stream.tls.insecure: voice agents' certificates are not checked (lab use only)"
                    );
                }
                Arc::new(tls::client_config(setting)?)
            }
        };
        Ok(Self {
            account: account.to_owned(),
            // The config checked every name.
            headers: config
                .headers
                .iter()
                .filter_map(|(name, value)| Some((name.parse().ok()?, value.clone())))
                .collect(),
            params: config.params.clone(),
            tls,
            allow_ws: config.allow_ws,
            metrics,
        })
    }
}

/// What a stream tells its call (and the script, as `on_stream(call, event)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The WebSocket is open; `connected` and `start` are sent.
    Connected,
    /// The agent's mark: its audio before the mark has played (or was cleared).
    Mark(String),
    /// The stream ended: stopped by us, or closed by the agent.
    Closed(String),
    /// The stream could not connect or broke.
    Error(String),
}

impl StreamEvent {
    /// `kind`, `name` and `reason` as scripts see them.
    pub fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            StreamEvent::Connected => ("connected", "", ""),
            StreamEvent::Mark(name) => ("mark", name, ""),
            StreamEvent::Closed(reason) => ("closed", "", reason),
            StreamEvent::Error(reason) => ("error", "", reason),
        }
    }
}

/// Why a stream could not start or went wrong.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error("bad stream URL: {0}")]
    Url(String),
    #[error("{0}: ws:// only to this machine; use wss:// (or set the bot's stream.allow_ws)")]
    PlainRemote(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{}", socket::refusal(*.0))]
    Refused(StatusCode),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_print_secrets() {
        let tls = crate::connection::tls::client_config(&crate::config::TlsSetting::PublicRoots);
        let mut settings = StreamSettings::new("bot", Arc::new(tls.unwrap()));
        settings.headers.push((
            HeaderName::from_static("authorization"),
            Secret::new("Bearer hunter2"),
        ));
        settings
            .params
            .insert("token".into(), Secret::new("hunter3"));
        let text = format!("{settings:?}");
        assert!(!text.contains("hunter"), "{text}");
    }

    #[test]
    fn tracks_and_events_for_scripts() {
        assert_eq!(Tracks::parse("both"), Some(Tracks::Both));
        assert_eq!(Tracks::parse("outbound"), None);
        assert_eq!(Tracks::Inbound.list(), [Track::Inbound]);
        assert_eq!(StreamEvent::Mark("m".into()).parts(), ("mark", "m", ""));
        assert_eq!(
            StreamEvent::Error("down".into()).parts(),
            ("error", "", "down")
        );
    }
}
