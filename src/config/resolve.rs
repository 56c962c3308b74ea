//! From the raw YAML shape to a validated [`Config`], collecting every error with its position.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};
use url::Url;

use super::dial::{DialPattern, DialPolicy};
use super::env::expand;
use super::error::{ConfigError, ConfigErrors, Problem};
use super::raw::{RawBot, RawConfig, RawDefaults, RawPbx, RawRecord, Text};
use super::secret::Secret;
use super::{
    AdminLogin, BotConfig, Config, DialectSetting, HttpConfig, PbxConfig, RecordMode, TlsSetting,
};
use crate::protocol::Dialect;

const DEFAULT_MAX_CALLS: u32 = 10;

/// Deserializes the raw shape; a syntax error, unknown key or wrong type is one error.
pub(super) fn read_raw(text: &str, file: &Path) -> Result<RawConfig, ConfigErrors> {
    let mut key = String::new();
    serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key = key_of(e.path());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let position = e.location().and_then(position_of);
        let mut message = e
            .render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            })
            .trim()
            .to_owned();
        if let Some((line, column)) = position {
            let suffix = format!(" at line {line}, column {column}");
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        if message.contains("flow") && line_has_variable(text, position) {
            message.push_str(FLOW_VARIABLE_HINT);
        }
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            position,
            key,
            problem: Problem::Yaml(message),
        }])
    })
}

/// `{` and `}` end a plain value inside `{ … }` or `[ … ]`, so `{ password: ${PW} }` is a YAML
/// syntax error; say how to write it.
const FLOW_VARIABLE_HINT: &str = " (inside { } or [ ], put ${VAR} in quotes: password: \"${VAR}\")";

fn line_has_variable(text: &str, position: Option<(u32, u32)>) -> bool {
    position
        .and_then(|(line, _)| text.lines().nth(line.saturating_sub(1) as usize))
        .is_some_and(|line| line.contains("${"))
}

/// The dotted key of a serde path, such as `bots[1].extension`, without the `value` steps that
/// `Spanned` wrappers add. No raw field is called `value`; a `vars` entry may be, so a `value`
/// right after `vars` is kept.
fn key_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    let mut previous = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if name == "value" && previous != "vars" {
                    continue;
                }
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
                previous.clone_from(name);
            }
            Segment::Unknown => {}
        }
    }
    key
}

fn position_of(location: Location) -> Option<(u32, u32)> {
    let line = u32::try_from(location.line()).ok()?;
    let column = u32::try_from(location.column()).unwrap_or(u32::MAX);
    (line > 0).then_some((line, column))
}

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
        Some(http) => r
            .parsed::<SocketAddr>(
                &http.listen,
                "http.listen",
                "an address such as 127.0.0.1:9100",
            )
            .map(|listen| Some(HttpConfig { listen })),
    };
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
    match (pbx, http, bots) {
        (Some(pbx), Some(http), Some(bots)) if r.errors.is_empty() => Ok(Config {
            file: file.to_owned(),
            pbx,
            http,
            bots,
        }),
        _ => {
            r.errors.sort_by_key(|error| error.position);
            Err(ConfigErrors(r.errors))
        }
    }
}

/// Values every bot inherits unless it sets its own.
struct Defaults {
    /// `None` when `defaults.prompts` was given but is not a folder (already reported).
    prompts: Option<PathBuf>,
    /// Whether `defaults.prompts` was given (and so checked) rather than the built-in `prompts`.
    prompts_given: bool,
    recordings: Option<PathBuf>,
    record: RecordMode,
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
            Some(tls) => match (&tls.value.ca_file, tls.value.insecure) {
                (Some(_), true) => {
                    self.report(
                        tls.referenced,
                        "pbx.tls",
                        Problem::Invalid("set either ca_file or insecure, not both".into()),
                    );
                    None
                }
                (Some(ca), false) => self
                    .existing(ca, "pbx.tls.ca_file", "CA file", Kind::File)
                    .map(TlsSetting::CaFile),
                (None, true) => Some(TlsSetting::Insecure),
                (None, false) => Some(TlsSetting::PublicRoots),
            },
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

    fn dialect(&mut self, value: &Text) -> Option<DialectSetting> {
        let text = self.text(value, "pbx.dialect")?;
        if text == "auto" {
            return Some(DialectSetting::Auto);
        }
        match text.parse::<Dialect>() {
            Ok(dialect) => Some(DialectSetting::Fixed(dialect)),
            Err(_) => {
                let message = format!("{:?} is not auto, modern or legacy", value.value);
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
            Some(value) => self.existing(value, "defaults.prompts", "prompt folder", Kind::Dir),
            None => Some(self.base.join("prompts")),
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
            prompts_given: raw.prompts.is_some(),
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
            None if defaults.prompts_given => defaults.prompts.clone(),
            None => {
                // The built-in default: check it here, where a bot relies on it.
                let folder = defaults.prompts.clone()?;
                self.check_exists(
                    &folder,
                    entry.referenced,
                    &key("prompts"),
                    "default prompt folder",
                    Kind::Dir,
                )
                .then_some(folder)
            }
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
        let record = match &bot.record {
            Some(value) => self.record(value, &key("record")),
            None => Some(defaults.record),
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
        Some(BotConfig {
            name: name?,
            extension: extension?,
            password: password?,
            script: script?,
            prompts: prompts?,
            recordings: recordings?,
            max_calls: max_calls?,
            record: record?,
            allow_dial: allow_dial?,
            vars: vars?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key_at(yaml: &str) -> String {
        match read_raw(yaml, Path::new("t.yaml")) {
            Err(errors) => errors.0[0].key.clone(),
            Ok(_) => String::from("<no error>"),
        }
    }

    #[test]
    fn keys_of_yaml_errors_leave_out_spanned_wrappers() {
        let head =
            "pbx: { url: https://x }\nbots:\n  - name: a\n    extension: '1'\n    script: s\n";
        assert_eq!(key_at(&format!("{head}    bogus: 1\n")), "bots[0].bogus");
        assert_eq!(
            key_at(&format!("{head}    max_calls: x\n")),
            "bots[0].max_calls"
        );
        assert_eq!(
            key_at(&format!("{head}    vars: {{ value: [1] }}\n")),
            "bots[0].vars.value"
        );
        assert_eq!(key_at("pbx: [\n"), "pbx");
    }
}
