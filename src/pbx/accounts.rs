//! Who may log in to the emulator: the admin (for third-party logins) and the extensions, from
//! `--accounts accounts.yaml` or built-in defaults.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::config::Secret;

/// One extension of the emulated domain.
#[derive(Clone, Debug)]
pub struct Extension {
    pub number: String,
    pub name: String,
    pub password: Secret,
    /// Answered by the emulator itself, as configured (test extensions for campaigns).
    pub auto: Option<AutoAnswer>,
}

/// How a test extension hosted by the emulator treats a call.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoAnswer {
    pub action: AutoAction,
    /// Digits to press once answered (RFC 4733), after `after_ms`: answer and person.
    #[serde(default)]
    pub press: Option<String>,
    #[serde(default = "default_after_ms")]
    pub after_ms: u32,
    /// Hang up this long after answering.
    #[serde(default = "default_hangup_ms")]
    pub hangup_ms: u32,
}

fn default_after_ms() -> u32 {
    1000
}

fn default_hangup_ms() -> u32 {
    30_000
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoAction {
    /// Answers and stays silent.
    Answer,
    /// Answers with a short "Hello?", then waits, recording what it hears.
    Person,
    /// An answering machine: a long greeting, a beep, then records what follows.
    Machine,
    /// 486 Busy Here.
    Busy,
    /// 603 Decline.
    Reject,
    /// Rings until the caller or the ring timeout gives up.
    NoAnswer,
}

/// The admin and the extensions, by number.
#[derive(Clone, Debug)]
pub struct Accounts {
    pub admin_user: String,
    pub admin_password: Secret,
    pub extensions: BTreeMap<String, Extension>,
}

#[derive(Debug, Error)]
pub enum AccountsError {
    #[error("{file}: {problem}")]
    File { file: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    admin: RawAdmin,
    extensions: Vec<RawExtension>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtension {
    number: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auto: Option<AutoAnswer>,
}

/// Names of the default extensions: the demo's bots and some desks for people and browsers.
fn default_name(number: u32) -> String {
    match number {
        500 => "IVR".into(),
        501 => "Test line".into(),
        600 => "Greeter A".into(),
        601 => "Greeter B".into(),
        n if n < 600 => format!("Desk {n}"),
        n => format!("Bot {n}"),
    }
}

/// The default test extensions 700–707, for campaigns against the emulator: a person who
/// says hello and presses 1, a silent answer, busy, no answer, a decline, a person who presses
/// 2, an answering machine, a person who says hello and waits.
fn default_auto(number: u32) -> (String, AutoAnswer) {
    let answer = |action, press: Option<&str>| AutoAnswer {
        action,
        press: press.map(str::to_owned),
        after_ms: 4000,
        hangup_ms: 30_000,
    };
    let only = |action| AutoAnswer {
        action,
        press: None,
        after_ms: default_after_ms(),
        hangup_ms: default_hangup_ms(),
    };
    match number {
        700 => (
            "Says hello, presses 1".into(),
            answer(AutoAction::Person, Some("1")),
        ),
        701 => ("Answers, silent".into(), answer(AutoAction::Answer, None)),
        702 => ("Always busy".into(), only(AutoAction::Busy)),
        703 => ("Never answers".into(), only(AutoAction::NoAnswer)),
        704 => ("Declines".into(), only(AutoAction::Reject)),
        705 => (
            "Says hello, presses 2".into(),
            answer(AutoAction::Person, Some("2")),
        ),
        706 => ("Answering machine".into(), only(AutoAction::Machine)),
        _ => ("Says hello, waits".into(), answer(AutoAction::Person, None)),
    }
}

impl Accounts {
    /// The built-in accounts: admin (with `admin_password`), extensions 500–509 and 600–609,
    /// each with its number as password (a lab emulator, never a real PBX), and the test
    /// extensions 700–707 that the emulator answers itself.
    pub fn defaults(admin_password: Secret) -> Self {
        let people = (500..510).chain(600..610).map(|n: u32| Extension {
            number: n.to_string(),
            name: default_name(n),
            password: Secret::new(n.to_string()),
            auto: None,
        });
        let tests = (700..708).map(|n: u32| {
            let (name, auto) = default_auto(n);
            Extension {
                number: n.to_string(),
                name,
                password: Secret::new(n.to_string()),
                auto: Some(auto),
            }
        });
        let extensions = people.chain(tests).map(|e| (e.number.clone(), e)).collect();
        Self {
            admin_user: "admin".into(),
            admin_password,
            extensions,
        }
    }

    /// Reads an accounts file:
    /// `admin: {user, password}` and `extensions: [{number, name, password}]`.
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let file = path.display().to_string();
        let error = |problem: String| AccountsError::File {
            file: file.clone(),
            problem,
        };
        let text = crate::input_file::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let raw: RawAccounts = serde_saphyr::from_str(&text).map_err(|e| error(e.to_string()))?;
        let mut extensions = BTreeMap::new();
        for ext in raw.extensions {
            if ext.number.is_empty() || !ext.number.chars().all(|c| c.is_ascii_digit()) {
                return Err(error(format!(
                    "extension number {:?} must be digits",
                    ext.number
                )));
            }
            if ext.password.is_none() && ext.auto.is_none() {
                return Err(error(format!(
                    "extension {} needs a password (or `auto:` to be answered by the emulator)",
                    ext.number
                )));
            }
            let extension = Extension {
                name: ext
                    .name
                    .unwrap_or_else(|| format!("Extension {}", ext.number)),
                number: ext.number.clone(),
                password: Secret::new(ext.password.unwrap_or_default()),
                auto: ext.auto,
            };
            if extensions.insert(ext.number.clone(), extension).is_some() {
                return Err(error(format!("extension {} is listed twice", ext.number)));
            }
        }
        Ok(Self {
            admin_user: raw.admin.user,
            admin_password: Secret::new(raw.admin.password),
            extensions,
        })
    }

    pub fn extension(&self, number: &str) -> Option<&Extension> {
        self.extensions.get(number)
    }

    /// The display name of extension `number`; empty when it has none or does not exist.
    pub fn display_name(&self, number: &str) -> String {
        self.extension(number)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    pub fn is_admin(&self, user: &str, password: &str) -> bool {
        user == self.admin_user && password == self.admin_password.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_have_the_demo_extensions() {
        let accounts = Accounts::defaults(Secret::new("pw"));
        assert_eq!(accounts.extensions.len(), 28);
        assert_eq!(
            accounts
                .extension("702")
                .unwrap()
                .auto
                .as_ref()
                .unwrap()
                .action,
            AutoAction::Busy
        );
        assert_eq!(accounts.extension("500").unwrap().name, "IVR");
        assert_eq!(accounts.extension("609").unwrap().password.expose(), "609");
        assert!(accounts.extension("510").is_none());
        assert!(accounts.is_admin("admin", "pw"));
        assert!(!accounts.is_admin("admin", "nope"));
    }

    #[test]
    fn file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.yaml");
        std::fs::write(
            &path,
            "admin: { user: root, password: x }\nextensions:\n  - { number: \"700\", password: a }\n",
        )
        .unwrap();
        let accounts = Accounts::load(&path).unwrap();
        assert_eq!(accounts.extension("700").unwrap().name, "Extension 700");
        std::fs::write(
            &path,
            "admin: { user: root, password: x }\nextensions:\n  - { number: \"7a\", password: a }\n",
        )
        .unwrap();
        let error = Accounts::load(&path).unwrap_err().to_string();
        assert!(error.contains("must be digits"), "{error}");
    }
}
