//! bots.yaml: the daemon's configuration (docs/architecture.md "Configuration"; the
//! keys are listed in the README).
//!
//! Loading happens in two steps: serde reads the YAML into a raw shape that keeps every value's
//! position ([`raw`]), then [`resolve`] substitutes `${VAR}`s, checks files and patterns, and
//! builds the typed [`Config`]. Every problem found is reported with file, line, column and key.

mod dial;
mod env;
mod error;
mod raw;
mod resolve;
mod secret;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use url::Url;

use crate::media::transport::{EngineKind, IceServer, NetworkSettings, PortRange};
use crate::protocol::Dialect;

pub use dial::{DialPattern, DialPolicy, PatternError};
pub use env::EnvError;
pub use error::{ConfigError, ConfigErrors, Problem};
pub use secret::Secret;

/// The calls-per-second limits a bot (`max_cps`) or a campaign (`--cps`) may set: from one call
/// every 100 s to a rate no PBX should be asked for.
pub const CPS_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1000.0;

/// What [`CPS_RANGE`] demands, for error messages.
pub fn cps_range_text() -> String {
    format!(
        "must be a number from {} to {}",
        CPS_RANGE.start(),
        CPS_RANGE.end()
    )
}

/// A validated bots.yaml. Paths are resolved against the directory of the config file.
#[derive(Debug)]
pub struct Config {
    /// The file this config was read from.
    pub file: PathBuf,
    pub pbx: PbxConfig,
    /// `defaults.recordings`: where `cdr.jsonl` goes (bots record below their own folder).
    pub recordings: PathBuf,
    /// Where the dashboard, `/metrics` and the probes are served; `None` serves nothing.
    pub http: Option<HttpConfig>,
    pub media: MediaConfig,
    pub bots: Vec<BotConfig>,
}

/// How to reach and log in to the PBX.
#[derive(Debug)]
pub struct PbxConfig {
    /// REST and websocket base, `https://host[:port]`.
    pub url: Url,
    /// The PBX tenant; defaults to the URL's host.
    pub domain: String,
    pub dialect: DialectSetting,
    pub tls: TlsSetting,
    /// Admin credentials for third-party login (preferred over per-bot passwords).
    pub admin: Option<AdminLogin>,
}

/// `pbx.dialect` (and `callbot dial --dialect`): fixed, or detected from the PBX's `Server`
/// header at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialectSetting {
    Auto,
    Fixed(Dialect),
}

impl DialectSetting {
    /// The dialect spoken before a login has told which one the PBX speaks: modern, that of
    /// current PBX versions.
    pub fn initial(self) -> Dialect {
        match self {
            DialectSetting::Fixed(dialect) => dialect,
            DialectSetting::Auto => Dialect::Modern,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DialectSetting::Auto => "auto",
            DialectSetting::Fixed(dialect) => dialect.as_str(),
        }
    }
}

impl std::fmt::Display for DialectSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DialectSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(DialectSetting::Auto),
            other => other
                .parse()
                .map(DialectSetting::Fixed)
                .map_err(|_| format!("{other:?} is not auto, modern or legacy")),
        }
    }
}

impl clap::ValueEnum for DialectSetting {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            DialectSetting::Auto,
            DialectSetting::Fixed(Dialect::Modern),
            DialectSetting::Fixed(Dialect::Legacy),
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// How the PBX's TLS certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSetting {
    /// Against the public web PKI roots.
    PublicRoots,
    /// Against the CA certificate(s) in this PEM file (e.g. the emulator's `--cert-out`).
    CaFile(PathBuf),
    /// Not at all; for lab use only, and logged as a warning.
    Insecure,
}

#[derive(Debug)]
pub struct AdminLogin {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// `Authorization: Bearer <token>` required for the dashboard, its API, recordings and
    /// `/metrics` (the probes stay open); required unless `listen` is a loopback address.
    pub token: Option<Secret>,
}

/// Where calls' media may flow.
#[derive(Debug, Default)]
pub struct MediaConfig {
    /// Addresses to offer host candidates on; empty: every non-loopback interface plus 127.0.0.1.
    pub addresses: Vec<IpAddr>,
    pub ice_servers: Vec<IceServerConfig>,
    /// Media engine threads; 0: one per core (or one per port of `ports`).
    pub threads: usize,
    /// The UDP ports the engine threads serve calls on, one per thread; `None`: chosen by the OS.
    pub ports: Option<PortRange>,
    /// Offer only candidates relayed by the TURN servers of `ice_servers`.
    pub relay_only: bool,
    /// Not from the file: `callbot run --engine` picks the first engine to compare with.
    pub engine: EngineKind,
}

/// A STUN or TURN server.
#[derive(Debug)]
pub struct IceServerConfig {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<Secret>,
}

impl MediaConfig {
    /// The settings media legs are built with.
    pub fn network_settings(&self) -> NetworkSettings {
        NetworkSettings {
            addresses: self.addresses.clone(),
            ice_servers: self
                .ice_servers
                .iter()
                .map(|server| IceServer {
                    urls: server.urls.clone(),
                    username: server.username.clone().unwrap_or_default(),
                    credential: server.credential.clone().unwrap_or_default(),
                })
                .collect(),
            threads: self.threads,
            ports: self.ports,
            relay_only: self.relay_only,
            engine: self.engine,
            ..NetworkSettings::default()
        }
    }
}

/// Whether and how a bot's calls are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordMode {
    Off,
    Mono,
    Stereo,
}

/// One bot: one extension, one websocket, one script.
#[derive(Debug)]
pub struct BotConfig {
    /// Unique; names the bot in logs and its recordings folder.
    pub name: String,
    /// The PBX extension the bot registers as; unique.
    pub extension: String,
    /// For legacy password login, when the config has no `pbx.admin`.
    pub password: Option<Secret>,
    pub script: PathBuf,
    pub prompts: PathBuf,
    pub recordings: PathBuf,
    /// Ringing calls beyond this many get 486 Busy Here.
    pub max_calls: u32,
    /// Outbound calls per second at most (scripts and campaigns alike), so a runaway script
    /// cannot flood the PBX.
    pub max_cps: f64,
    /// Bytes the script may keep between handler runs (`bot.set`, `call.set`, timers).
    pub script_memory: usize,
    pub record: RecordMode,
    /// Answering-machine detection started on each outbound call when it is answered (a
    /// script's `call.detect_machine` replaces it).
    pub detect_machine: Option<crate::amd::AmdSettings>,
    pub allow_dial: DialPolicy,
    /// Visible to the script as `bot.vars`.
    pub vars: BTreeMap<String, String>,
    pub stream: StreamConfig,
}

/// A bot's `stream:` section: what its voice-agent streams send and whom they trust.
#[derive(Debug, Default)]
pub struct StreamConfig {
    /// Sent with every stream's WebSocket upgrade (e.g. `Authorization`).
    pub headers: Vec<(String, Secret)>,
    /// Added to every stream's `customParameters`.
    pub params: BTreeMap<String, Secret>,
    /// How `wss://` agents are checked; `None`: as `pbx.tls`.
    pub tls: Option<TlsSetting>,
    /// `ws://` (no TLS) to hosts other than this machine.
    pub allow_ws: bool,
}

impl Config {
    /// Reads and validates `path`, taking `${VAR}`s from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let whole_file = |problem| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                position: None,
                key: String::new(),
                problem,
            }])
        };
        let bytes =
            crate::input_file::read(path).map_err(|e| whole_file(Problem::Unreadable(e)))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| whole_file(Problem::Yaml("the file is not UTF-8 text".into())))?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Validates config `text` as if read from `file` (relative paths are resolved against its
    /// directory), taking `${VAR}`s from `env`.
    pub fn parse(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw = raw::read_raw(text, file)?;
        resolve::resolve(raw, file, env)
    }
}
