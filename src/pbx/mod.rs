//! The PBX emulator (`callbot pbx`): enough of a Vodia PBX, speaking the same protocol, that
//! bots and browsers can log in, see each other, and call each other on one machine
//! (docs/protocol.md §9).

mod accounts;
mod auto;
mod call;
mod certificate;
mod chaos;
mod field_caps;
mod http;
mod journal;
pub mod limits;
mod origin;
mod page;
mod sessions;
mod switch;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderValue;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use url::Url;

use crate::media::MediaRuntime;
use crate::media::transport::{NetworkSettings, Sockets};
use crate::protocol::Dialect;

pub use accounts::{Accounts, AccountsError, AutoAction, AutoAnswer, Extension};
pub use certificate::{CertificateError, CertificateSource};
pub use chaos::ChaosSettings;
pub use journal::{CallView, Event, LegView};
pub use limits::Limits;

/// Where call media flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MediaMode {
    /// The emulator terminates WebRTC on every leg and bridges audio, as a real PBX does.
    Anchored,
    /// SDP and candidates are passed through; peers' media flows directly (cheap, for load).
    Relay,
}

impl MediaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaMode::Anchored => "anchored",
            MediaMode::Relay => "relay",
        }
    }
}

impl std::fmt::Display for MediaMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `callbot pbx` runs.
#[derive(Clone, Debug)]
pub struct PbxOptions {
    pub listen: SocketAddr,
    pub domain: String,
    /// The dialect's version goes into the `Server` header; relay mode always speaks legacy.
    pub dialect: Dialect,
    pub media: MediaMode,
    pub accounts: Accounts,
    pub certificate: CertificateSource,
    /// Host candidates and ICE servers of anchored legs.
    pub network: NetworkSettings,
    /// Unanswered calls end with 480 after this.
    pub ring_timeout: Duration,
    /// Modern dialect: a caller that has not answered our offer after this gets `bye` 415.
    pub offer_timeout: Duration,
    /// Mistreat frames and sockets on purpose (reliability tests).
    pub chaos: Option<ChaosSettings>,
    /// Who may use the emulator, and how much any one peer may take.
    pub guard: Guard,
}

/// Who may reach the emulator and what any one peer may take of it.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// `--open-test-api`: `/emulator/calls`, `/events` and `/stats` without the admin's
    /// credentials (tests; the views show who called whom and the digits pressed).
    pub open_test_api: bool,
    /// `--allow-origin`: web origins whose pages may use the emulator besides its own and
    /// loopback ones.
    pub allow_origins: Vec<String>,
    pub limits: Limits,
}

impl PbxOptions {
    /// The effective dialect: relay mode cannot make offers of its own, so it speaks legacy.
    pub fn effective_dialect(&self) -> Dialect {
        match self.media {
            MediaMode::Relay => Dialect::Legacy,
            MediaMode::Anchored => self.dialect,
        }
    }
}

#[derive(Debug, Error)]
pub enum PbxError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("media runtime: {0}")]
    Media(std::io::Error),
    #[error("{0}")]
    Origin(String),
}

/// What calls and the HTTP side share.
pub(crate) struct Context {
    accounts: Accounts,
    domain: String,
    options: CallOptions,
    media: Option<MediaRuntime>,
    journal: Mutex<journal::Journal>,
}

struct CallOptions {
    /// The dialect calls speak: [`PbxOptions::effective_dialect`], decided once at start.
    dialect: Dialect,
    media: MediaMode,
    ring_timeout: Duration,
    offer_timeout: Duration,
    /// Live calls one extension may have placed.
    calls_per_extension: usize,
}

/// A running emulator. Dropping it stops it (sockets are closed, calls end).
pub struct Pbx {
    url: Url,
    address: SocketAddr,
    certificate_pem: String,
    server: JoinHandle<()>,
    switch: JoinHandle<()>,
    /// The test extensions the emulator answers itself.
    extensions: Option<auto::TestExtensions>,
}

impl Pbx {
    /// Binds, makes or loads the certificate, and starts serving.
    pub async fn start(options: PbxOptions) -> Result<Self, PbxError> {
        let origins =
            origin::OriginPolicy::new(&options.guard.allow_origins).map_err(PbxError::Origin)?;
        let limits = options.guard.limits.clone();
        let identity = certificate::identity(&options.certificate)?;
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| PbxError::Listen {
                    address: options.listen,
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| PbxError::Listen {
            address: options.listen,
            source,
        })?;
        let dialect = options.effective_dialect();
        let has_auto = options
            .accounts
            .extensions
            .values()
            .any(|e| e.auto.is_some());
        let media = match (options.media, has_auto) {
            (MediaMode::Relay, false) => None,
            _ => {
                // A PBX gives every call a port of its own.
                let network = NetworkSettings {
                    sockets: Sockets::PerLeg,
                    ..options.network.clone()
                };
                Some(MediaRuntime::start(network).map_err(PbxError::Media)?)
            }
        };
        let ctx = Arc::new(Context {
            accounts: options.accounts,
            domain: options.domain,
            options: CallOptions {
                dialect,
                media: options.media,
                ring_timeout: options.ring_timeout,
                offer_timeout: options.offer_timeout,
                calls_per_extension: limits.calls_per_extension,
            },
            media,
            journal: Mutex::new(journal::Journal::new(limits.journal_bytes)),
        });
        let (switch_tx, switch_rx) = mpsc::unbounded_channel();
        let switch =
            tokio::spawn(switch::Switch::new(ctx.clone(), switch_tx.clone()).run(switch_rx));
        let extensions = ctx
            .media
            .as_ref()
            .map(|media| auto::start(&ctx, &switch_tx, media));
        let version = match dialect {
            Dialect::Modern => "PBX/70.1 (callbot emulator)",
            Dialect::Legacy => "PBX/68.5 (callbot emulator)",
        };
        let shared = Arc::new(http::Shared {
            ctx,
            sessions: Mutex::new(sessions::Sessions::new(
                limits.session_idle,
                limits.session_lifetime,
            )),
            switch: switch_tx,
            server_header: HeaderValue::from_static(version),
            next_socket: AtomicU64::new(1),
            chaos: options.chaos,
            origins,
            open_test_api: options.guard.open_test_api,
            connections: limits::Connections::new(&limits),
            limits,
            refusals: http::Refusals::default(),
        });
        let app = http::router(shared.clone());
        let server = tokio::spawn(http::serve(
            listener,
            TlsAcceptor::from(identity.config),
            app,
            shared,
        ));
        let host = match address.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let url = Url::parse(&format!("https://{host}:{}/", address.port()))
            .expect("a host and a port make a URL");
        Ok(Self {
            url,
            address,
            certificate_pem: identity.certificate_pem,
            server,
            switch,
            extensions,
        })
    }

    /// `https://host:port/`: REST base, websocket base and softphone page.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The certificate clients must trust (PEM).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Stops serving and closes every socket; calls end.
    pub async fn stop(mut self) {
        self.server.abort();
        self.switch.abort();
        for extension in self.extensions.iter().flat_map(|e| &e.tasks) {
            extension.abort();
        }
        let _ = (&mut self.server).await;
        let _ = (&mut self.switch).await;
    }
}

impl Drop for Pbx {
    fn drop(&mut self) {
        self.server.abort();
        self.switch.abort();
        for extension in self.extensions.iter().flat_map(|e| &e.tasks) {
            extension.abort();
        }
    }
}
