use std::fmt;
use std::path::PathBuf;

use serde_saphyr::Location;
use thiserror::Error;

use super::dial::PatternError;
use super::env::EnvError;

/// What is wrong with one config value.
#[derive(Debug, Error)]
pub enum Problem {
    #[error("cannot read the file: {0}")]
    Unreadable(std::io::Error),
    /// YAML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("{0}")]
    Yaml(String),
    #[error("{0}")]
    Env(#[from] EnvError),
    #[error("{what} {path} does not exist")]
    Missing { what: &'static str, path: PathBuf },
    #[error("{what} {path} is not a {expected}")]
    WrongKind {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("duplicate {what} {value:?} (first used at line {first_line})")]
    Duplicate {
        what: &'static str,
        value: String,
        first_line: u32,
    },
    #[error("invalid allow_dial pattern {pattern:?}: {error}")]
    Pattern {
        pattern: String,
        error: PatternError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One error, pointing at the file, line, column and key it is about.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column; `None` when the error is about the file as a whole.
    pub position: Option<(u32, u32)>,
    /// Dotted path of the key, such as `bots[1].extension`; empty for the document itself.
    pub key: String,
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Every error found in a config file; loading reports them all at once so a user can fix the
/// file in one pass.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A YAML location as (line, column), or `None` when the parser did not know it.
pub(super) fn position_of(location: Location) -> Option<(u32, u32)> {
    let line = u32::try_from(location.line()).ok()?;
    let column = u32::try_from(location.column()).unwrap_or(u32::MAX);
    (line > 0).then_some((line, column))
}
