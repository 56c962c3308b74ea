//! From the raw YAML shape to a validated [`Config`], collecting every error with its position.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};
use url::Url;

use super::dial::{DialPattern, DialPolicy};
use super::env::expand;
use super::error::{ConfigError, ConfigErrors, Problem, position_of};
use super::raw::{
    RawBot, RawConfig, RawDefaults, RawMedia, RawPbx, RawRecord, RawStream, RawTls, Text,
};
use super::secret::Secret;
use super::{
    AdminLogin, BotConfig, Config, DialectSetting, HttpConfig, IceServerConfig, MediaConfig,
    PbxConfig, RecordMode, StreamConfig, TlsSetting,
};
use crate::media::transport::PortRange;

const DEFAULT_MAX_CALLS: u32 = 10;
/// The most a bot's `script_memory_mb` may be.
const MAX_SCRIPT_MEMORY_MB: u32 = 4096;
/// Media engine threads at most (each is a core's worth of calls).
const MAX_MEDIA_THREADS: u32 = 256;
/// The shortest `http.token` accepted: long enough that guessing it over HTTP is hopeless.
const MIN_TOKEN_LENGTH: usize = 16;
/// Outbound calls per second a bot may place unless its config says otherwise.
const DEFAULT_MAX_CPS: f64 = 10.0;

/// Turns the raw shape into a [`Config`], or every problem found on the way.
pub(super) fn resolve(
    raw: RawConfig,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let base = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut r = Resolver {
        file,
        base,
        env,
        errors: Vec::new(),
    };
    let pbx = r.pbx(&raw.pbx);
    let defaults = r.defaults(&raw.defaults);
    let http = match &raw.http {
        None => Some(None),
        Some(http) => r.http(http).map(Some),
    };
    let media = r.media(&raw.media);
    if raw.bots.value.is_empty() {
        r.report(
            raw.bots.referenced,
            "bots",
            Problem::Invalid("no bots: add at least one".into()),
        );
    }
    let bots: Vec<Option<BotConfig>> = raw
        .bots
        .value
        .iter()
        .enumerate()
        .map(|(i, bot)| r.bot(i, bot, &defaults, &raw.pbx))
        .collect();
    r.unique(&raw.bots.value, "bot name", "name", |bot| &bot.name);
    r.unique(&raw.bots.value, "extension", "extension", |bot| {
        &bot.extension
    });

    let bots: Option<Vec<BotConfig>> = bots.into_iter().collect();
    let recordings = defaults.recordings.clone();
    match (pbx, http, bots, recordings) {
        (Some(pbx), Some(http), Some(bots), Some(recordings)) if r.errors.is_empty() => {
            Ok(Config {
                file: file.to_owned(),
                pbx,
                recordings,
                http,
                media,
                bots,
            })
        }
        _ => {
            r.errors.sort_by_key(|error| error.position);
            Err(ConfigErrors(r.errors))
        }
    }
}

/// Values every bot inherits unless it sets its own.
struct Defaults {
    prompts: DefaultPrompts,
    recordings: Option<PathBuf>,
    record: RecordMode,
}

/// Where bots without `prompts:` find their prompts.
enum DefaultPrompts {
    /// `defaults.prompts`, already checked; `None` if it was wrong (and reported).
    Given(Option<PathBuf>),
    /// The built-in `prompts` folder, checked where a bot relies on it.
    Builtin(PathBuf),
}

enum Kind {
    File,
    Dir,
}

struct Resolver<'a> {
    file: &'a Path,
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    fn report(&mut self, at: Location, key: impl Into<String>, problem: Problem) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            position: position_of(at),
            key: key.into(),
            problem,
        });
    }

    /// The value with `${VAR}`s substituted.
    fn text(&mut self, value: &Text, key: &str) -> Option<String> {
        match expand(&value.value, self.env) {
            Ok(text) => Some(text),
            Err(e) => {
                self.report(value.referenced, key, e.into());
                None
            }
        }
    }

    /// A non-empty value. Messages quote the value as written, never the substituted one,
    /// which may be a secret.
    fn non_empty(&mut self, value: &Text, key: &str) -> Option<String> {
        let text = self.text(value, key)?;
        if text.is_empty() {
            self.report(
                value.referenced,
                key,
                Problem::Invalid("must not be empty".into()),
            );
            return None;
        }
        Some(text)
    }

    fn parsed<T: std::str::FromStr>(
        &mut self,
        value: &Text,
        key: &str,
        expected: &str,
    ) -> Option<T> {
        let text = self.text(value, key)?;
        let parsed = text.parse().ok();
        if parsed.is_none() {
            let message = format!("{:?} is not {expected}", value.value);
            self.report(value.referenced, key, Problem::Invalid(message));
        }
        parsed
    }

    /// A name made of letters, digits and `extra`: safe in file names and log fields.
    fn identifier(&mut self, value: &Text, key: &str, extra: &[char]) -> Option<String> {
        let text = self.non_empty(value, key)?;
        let valid = text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c));
        if !valid {
            let allowed: Vec<String> = extra.iter().map(|c| format!("`{c}`")).collect();
            let message = format!(
                "{:?} must be at most 64 characters: letters, digits, {}",
                value.value,
                allowed.join(", ")
            );
            self.report(value.referenced, key, Problem::Invalid(message));
            return None;
        }
        Some(text)
    }

    fn path(&mut self, value: &Text, key: &str) -> Option<PathBuf> {
        let text = self.non_empty(value, key)?;
        Some(self.base.join(text))
    }

    /// A path that must exist and be a file or a folder.
    fn existing(
        &mut self,
        value: &Text,
        key: &str,
        what: &'static str,
        kind: Kind,
    ) -> Option<PathBuf> {
        let path = self.path(value, key)?;
        self.check_exists(&path, value.referenced, key, what, kind)
            .then_some(path)
    }

    fn check_exists(
        &mut self,
        path: &Path,
        at: Location,
        key: &str,
        what: &'static str,
        kind: Kind,
    ) -> bool {
        let (ok, expected) = match kind {
            Kind::File => (path.is_file(), "file"),
            Kind::Dir => (path.is_dir(), "folder"),
        };
        if !ok {
            let path = path.to_owned();
            let problem = if path.exists() {
                Problem::WrongKind {
                    what,
                    path,
                    expected,
                }
            } else {
                Problem::Missing { what, path }
            };
            self.report(at, key, problem);
        }
        ok
    }

    fn pbx(&mut self, raw: &RawPbx) -> Option<PbxConfig> {
        let url = self.url(&raw.url);
        let domain = match &raw.domain {
            Some(domain) => self.non_empty(domain, "pbx.domain"),
            None => url.as_ref().and_then(|u| u.host_str().map(str::to_owned)),
        };
        let dialect = match &raw.dialect {
            None => Some(DialectSetting::Auto),
            Some(value) => self.dialect(value),
        };
        let tls = match &raw.tls {
            None => Some(TlsSetting::PublicRoots),
            Some(tls) => self.tls(tls, "pbx.tls"),
        };
        let admin = match &raw.admin {
            None => Some(None),
            Some(admin) => {
                let user = self.non_empty(&admin.user, "pbx.admin.user");
                let password = self.non_empty(&admin.password, "pbx.admin.password");
                user.zip(password).map(|(user, password)| {
                    Some(AdminLogin {
                        user,
                        password: Secret::new(password),
                    })
                })
            }
        };
        Some(PbxConfig {
            url: url?,
            domain: domain?,
            dialect: dialect?,
            tls: tls?,
            admin: admin?,
        })
    }

    fn tls(&mut self, tls: &Spanned<RawTls>, key: &str) -> Option<TlsSetting> {
        match (&tls.value.ca_file, tls.value.insecure) {
            (Some(_), true) => {
                self.report(
                    tls.referenced,
                    key,
                    Problem::Invalid("set either ca_file or insecure, not both".into()),
                );
                None
            }
            (Some(ca), false) => self
                .existing(ca, &format!("{key}.ca_file"), "CA file", Kind::File)
                .map(TlsSetting::CaFile),
            (None, true) => Some(TlsSetting::Insecure),
            (None, false) => Some(TlsSetting::PublicRoots),
        }
    }

    /// A bot's `stream:`: header names and values must be sendable, and the upgrade's own
    /// headers are ours to set.
    fn stream(&mut self, index: usize, raw: &RawStream) -> Option<StreamConfig> {
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        const RESERVED: &[&str] = &["host", "connection", "upgrade"];
        let key = |field: &str| format!("bots[{index}].stream.{field}");
        let mut headers = Vec::new();
        let mut valid = true;
        for (name, value) in &raw.headers {
            let header_key = key(&format!("headers.{name}"));
            let lower = name.to_ascii_lowercase();
            if HeaderName::from_bytes(name.as_bytes()).is_err()
                || RESERVED.contains(&lower.as_str())
                || lower.starts_with("sec-websocket-")
            {
                let message = format!("{name:?} is not a header a stream may set");
                self.report(value.referenced, header_key, Problem::Invalid(message));
                valid = false;
                continue;
            }
            let Some(text) = self.non_empty(value, &header_key) else {
                valid = false;
                continue;
            };
            if HeaderValue::from_str(&text).is_err() {
                let message = format!("{:?} is not a valid header value", value.value);
                self.report(value.referenced, header_key, Problem::Invalid(message));
                valid = false;
                continue;
            }
            headers.push((name.clone(), Secret::new(text)));
        }
        let mut params = std::collections::BTreeMap::new();
        for (name, value) in &raw.params {
            match self.text(value, &key(&format!("params.{name}"))) {
                Some(text) => {
                    params.insert(name.clone(), Secret::new(text));
                }
                None => valid = false,
            }
        }
        let tls = match &raw.tls {
            None => Some(None),
            Some(tls) => self.tls(tls, &key("tls")).map(Some),
        };
        let tls = tls?;
        valid.then_some(StreamConfig {
            headers,
            params,
            tls,
            allow_ws: raw.allow_ws,
        })
    }

    fn dialect(&mut self, value: &Text) -> Option<DialectSetting> {
        let text = self.text(value, "pbx.dialect")?;
        match text.parse::<DialectSetting>() {
            Ok(setting) => Some(setting),
            Err(message) => {
                self.report(value.referenced, "pbx.dialect", Problem::Invalid(message));
                None
            }
        }
    }

    fn url(&mut self, value: &Text) -> Option<Url> {
        let text = self.text(value, "pbx.url")?;
        let problem = match Url::parse(&text) {
            Ok(url) if !matches!(url.scheme(), "https" | "http") => "must start with https://",
            Ok(url) if url.host_str().is_none() => "has no host",
            Ok(url) => return Some(url),
            Err(_) => "is not a URL such as https://pbx.example.com",
        };
        let message = format!("{:?} {problem}", value.value);
        self.report(value.referenced, "pbx.url", Problem::Invalid(message));
        None
    }

    /// `http:`: where the dashboard, `/metrics` and the probes are served, and the bearer
    /// token that guards them (needed unless only this machine can connect).
    fn http(&mut self, raw: &super::raw::RawHttp) -> Option<HttpConfig> {
        let listen = self.parsed::<SocketAddr>(
            &raw.listen,
            "http.listen",
            "an address such as 127.0.0.1:9100",
        );
        let token = match &raw.token {
            Some(token) => {
                let text = self.text(token, "http.token")?;
                if text.len() < MIN_TOKEN_LENGTH {
                    let message = format!(
                        "must be at least {MIN_TOKEN_LENGTH} characters (for example from \
                         `openssl rand -hex 16`)"
                    );
                    self.report(token.referenced, "http.token", Problem::Invalid(message));
                    return None;
                }
                Some(Secret::new(text))
            }
            None => None,
        };
        let listen = listen?;
        if token.is_none() && !listen.ip().is_loopback() {
            let message = format!(
                "{listen} is reachable from other machines: set http.token (\
                 token: \"${{CALLBOT_HTTP_TOKEN}}\"), or listen on 127.0.0.1"
            );
            self.report(
                raw.listen.referenced,
                "http.listen",
                Problem::Invalid(message),
            );
            return None;
        }
        Some(HttpConfig { listen, token })
    }

    /// Problems here are reported; what is valid is kept, so other sections are still checked.
    fn media(&mut self, raw: &RawMedia) -> MediaConfig {
        let addresses = raw
            .addresses
            .iter()
            .enumerate()
            .filter_map(|(i, address)| {
                let key = format!("media.addresses[{i}]");
                self.parsed::<std::net::IpAddr>(address, &key, "an IP address")
            })
            .collect();
        let ice_servers: Vec<IceServerConfig> = raw
            .ice_servers
            .iter()
            .enumerate()
            .filter_map(|(i, server)| self.ice_server(i, server))
            .collect();
        let threads = match &raw.threads {
            Some(value) if !(1..=MAX_MEDIA_THREADS).contains(&value.value) => {
                let message = format!("must be 1 to {MAX_MEDIA_THREADS}");
                self.report(value.referenced, "media.threads", Problem::Invalid(message));
                None
            }
            Some(value) => Some(value.value as usize),
            None => None,
        };
        let ports = raw.ports.as_ref().and_then(|value| self.port_range(value));
        if let (Some(threads), Some(ports), Some(value)) = (threads, ports, &raw.threads)
            && threads != ports.count()
        {
            let message = format!(
                "{threads} thread(s) need as many ports; media.ports gives {}",
                ports.count()
            );
            self.report(value.referenced, "media.threads", Problem::Invalid(message));
        }
        // The engine relays through `turn:` over UDP only (no `turns:`, no `?transport=tcp`).
        let has_udp_turn = ice_servers
            .iter()
            .flat_map(|server| &server.urls)
            .any(|url| url.starts_with("turn:") && !url.contains("transport=tcp"));
        let relay_only = raw.relay_only.as_ref().is_some_and(|value| {
            if value.value && !has_udp_turn {
                let message =
                    "relaying needs a turn: server over UDP in media.ice_servers".to_owned();
                self.report(
                    value.referenced,
                    "media.relay_only",
                    Problem::Invalid(message),
                );
            }
            value.value
        });
        MediaConfig {
            addresses,
            ice_servers,
            threads: threads.unwrap_or(0),
            ports,
            relay_only,
            engine: Default::default(),
        }
    }

    /// `5000` or `5000-5003`: one UDP port per media thread.
    fn port_range(&mut self, value: &Text) -> Option<PortRange> {
        let text = self.text(value, "media.ports")?;
        let (first, last) = text.split_once('-').unwrap_or((&text, &text));
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|&p| p > 0);
        match (port(first), port(last)) {
            (Some(first), Some(last))
                if first <= last && usize::from(last - first) < MAX_MEDIA_THREADS as usize =>
            {
                Some(PortRange { first, last })
            }
            _ => {
                let message = format!(
                    "{:?} is not a UDP port or a range of at most {MAX_MEDIA_THREADS} such as 40000-40003",
                    value.value
                );
                self.report(value.referenced, "media.ports", Problem::Invalid(message));
                None
            }
        }
    }

    fn ice_server(
        &mut self,
        index: usize,
        server: &Spanned<super::raw::RawIceServer>,
    ) -> Option<IceServerConfig> {
        let key = format!("media.ice_servers[{index}]");
        let mut urls = Vec::new();
        let mut turn = false;
        for (i, url) in server.value.urls.iter().enumerate() {
            let url_key = format!("{key}.urls[{i}]");
            let text = self.non_empty(url, &url_key)?;
            let scheme = text.split(':').next().unwrap_or_default();
            if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
                let message = format!(
                    "{:?} must start with stun:, stuns:, turn: or turns:",
                    url.value
                );
                self.report(url.referenced, url_key, Problem::Invalid(message));
                return None;
            }
            turn |= scheme.starts_with("turn");
            urls.push(text);
        }
        if urls.is_empty() {
            let problem = Problem::Invalid("urls: give at least one stun: or turn: URL".into());
            self.report(server.referenced, key, problem);
            return None;
        }
        let username = match &server.value.username {
            Some(value) => Some(self.non_empty(value, &format!("{key}.username"))?),
            None => None,
        };
        let credential = match &server.value.credential {
            Some(value) => Some(Secret::new(
                self.non_empty(value, &format!("{key}.credential"))?,
            )),
            None => None,
        };
        if turn && (username.is_none() || credential.is_none()) {
            let problem = Problem::Invalid("a TURN server needs username and credential".into());
            self.report(server.referenced, key, problem);
            return None;
        }
        Some(IceServerConfig {
            urls,
            username,
            credential,
        })
    }

    fn record(&mut self, value: &Spanned<RawRecord>, key: &str) -> Option<RecordMode> {
        match &value.value {
            RawRecord::Flag(false) => Some(RecordMode::Off),
            RawRecord::Flag(true) => Some(RecordMode::Stereo),
            RawRecord::Mode(mode) => match mode.as_str() {
                "mono" => Some(RecordMode::Mono),
                "stereo" => Some(RecordMode::Stereo),
                "off" | "false" => Some(RecordMode::Off),
                _ => {
                    let message = format!("{mode:?} is not false, mono or stereo");
                    self.report(value.referenced, key, Problem::Invalid(message));
                    None
                }
            },
        }
    }

    fn defaults(&mut self, raw: &RawDefaults) -> Defaults {
        let prompts = match &raw.prompts {
            Some(value) => DefaultPrompts::Given(self.existing(
                value,
                "defaults.prompts",
                "prompt folder",
                Kind::Dir,
            )),
            None => DefaultPrompts::Builtin(self.base.join("prompts")),
        };
        let recordings = match &raw.recordings {
            Some(value) => self.path(value, "defaults.recordings"),
            None => Some(self.base.join("recordings")),
        };
        let record = match &raw.record {
            Some(value) => self
                .record(value, "defaults.record")
                .unwrap_or(RecordMode::Off),
            None => RecordMode::Off,
        };
        Defaults {
            prompts,
            recordings,
            record,
        }
    }

    fn bot(
        &mut self,
        index: usize,
        entry: &Spanned<RawBot>,
        defaults: &Defaults,
        pbx: &RawPbx,
    ) -> Option<BotConfig> {
        let bot = &entry.value;
        let key = |field: &str| format!("bots[{index}].{field}");
        let name = self.identifier(&bot.name, &key("name"), &['-', '_']);
        let extension = self.identifier(&bot.extension, &key("extension"), &['-', '_', '.']);
        let password = match &bot.password {
            Some(password) => self
                .non_empty(password, &key("password"))
                .map(|p| Some(Secret::new(p))),
            None => Some(None),
        };
        if bot.password.is_none() && pbx.admin.is_none() {
            let message = format!(
                "this bot cannot log in: set pbx.admin (third-party login) or bots[{index}].password"
            );
            self.report(
                entry.referenced,
                format!("bots[{index}]"),
                Problem::Invalid(message),
            );
        }
        let script = self.existing(&bot.script, &key("script"), "script", Kind::File);
        let prompts = match &bot.prompts {
            Some(value) => self.existing(value, &key("prompts"), "prompt folder", Kind::Dir),
            None => match &defaults.prompts {
                DefaultPrompts::Given(folder) => folder.clone(),
                DefaultPrompts::Builtin(folder) => self
                    .check_exists(
                        folder,
                        entry.referenced,
                        &key("prompts"),
                        "default prompt folder",
                        Kind::Dir,
                    )
                    .then(|| folder.clone()),
            },
        };
        let recordings = match &bot.recordings {
            Some(value) => self.path(value, &key("recordings")),
            None => defaults.recordings.clone(),
        };
        let max_calls = match &bot.max_calls {
            None => Some(DEFAULT_MAX_CALLS),
            Some(value) if value.value == 0 => {
                let problem = Problem::Invalid("must be at least 1".into());
                self.report(value.referenced, key("max_calls"), problem);
                None
            }
            Some(value) => Some(value.value),
        };
        let max_cps = match &bot.max_cps {
            None => Some(DEFAULT_MAX_CPS),
            Some(value) if !super::CPS_RANGE.contains(&value.value) => {
                let problem = Problem::Invalid(super::cps_range_text());
                self.report(value.referenced, key("max_cps"), problem);
                None
            }
            Some(value) => Some(value.value),
        };
        let script_memory = match &bot.script_memory_mb {
            None => Some(crate::script::DEFAULT_MEMORY_BYTES),
            Some(value) if !(1..=MAX_SCRIPT_MEMORY_MB).contains(&value.value) => {
                let problem = Problem::Invalid(format!(
                    "must be a whole number of MiB from 1 to {MAX_SCRIPT_MEMORY_MB}"
                ));
                self.report(value.referenced, key("script_memory_mb"), problem);
                None
            }
            Some(value) => Some((value.value as usize) << 20),
        };
        let record = match &bot.record {
            Some(value) => self.record(value, &key("record")),
            None => Some(defaults.record),
        };
        let detect_machine = match &bot.detect_machine {
            None => Some(None),
            Some(value) => match value.value.validate() {
                Ok(()) => Some(Some(value.value)),
                Err(problem) => {
                    self.report(
                        value.referenced,
                        key("detect_machine"),
                        Problem::Invalid(problem),
                    );
                    None
                }
            },
        };
        let allow_dial = self.allow_dial(index, &bot.allow_dial);
        let vars = bot
            .vars
            .iter()
            .map(|(name, value)| {
                let value = self.text(value, &key(&format!("vars.{name}")))?;
                Some((name.clone(), value))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Option<_>>();
        let stream = match &bot.stream {
            Some(raw) => self.stream(index, raw),
            None => Some(StreamConfig::default()),
        };
        Some(BotConfig {
            name: name?,
            extension: extension?,
            password: password?,
            script: script?,
            prompts: prompts?,
            recordings: recordings?,
            max_calls: max_calls?,
            max_cps: max_cps?,
            script_memory: script_memory?,
            record: record?,
            detect_machine: detect_machine?,
            allow_dial: allow_dial?,
            vars: vars?,
            stream: stream?,
        })
    }

    fn allow_dial(&mut self, index: usize, patterns: &[Text]) -> Option<DialPolicy> {
        let parsed: Vec<Option<DialPattern>> = patterns
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let key = format!("bots[{index}].allow_dial[{i}]");
                let text = self.text(value, &key)?;
                DialPattern::parse(&text)
                    .map_err(|error| {
                        let problem = Problem::Pattern {
                            pattern: value.value.clone(),
                            error,
                        };
                        self.report(value.referenced, key, problem);
                    })
                    .ok()
            })
            .collect();
        parsed
            .into_iter()
            .collect::<Option<_>>()
            .map(DialPolicy::new)
    }

    /// Reports each bot whose `field` repeats an earlier bot's (compared after substitution).
    fn unique(
        &mut self,
        bots: &[Spanned<RawBot>],
        what: &'static str,
        field: &str,
        get: impl Fn(&RawBot) -> &Text,
    ) {
        let mut first_seen: HashMap<String, u32> = HashMap::new();
        for (index, bot) in bots.iter().enumerate() {
            let value = get(&bot.value);
            let Ok(text) = expand(&value.value, self.env) else {
                continue; // already reported
            };
            let line = position_of(value.referenced).map_or(0, |(line, _)| line);
            match first_seen.get(&text) {
                Some(&first_line) => {
                    let problem = Problem::Duplicate {
                        what,
                        value: value.value.clone(),
                        first_line,
                    };
                    self.report(value.referenced, format!("bots[{index}].{field}"), problem);
                }
                None => {
                    first_seen.insert(text, line);
                }
            }
        }
    }
}
