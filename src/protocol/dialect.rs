//! The two dialects of the protocol (docs/protocol.md §1, §6) and how to tell them apart.

use std::fmt;
use std::str::FromStr;

/// How outbound calls are set up: modern PBXs (v69 and later) answer our `sdp-packet` with their
/// own offer under their own call id; legacy ones answer our offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dialect {
    Modern,
    Legacy,
}

/// The first major version that speaks the modern dialect.
const FIRST_MODERN_MAJOR: u32 = 69;

impl Dialect {
    /// Detects the dialect from an HTTP `Server` header such as `PBX/70.1` or
    /// `PBX/67.0.5 (Debian64)`; `None` when the header does not name a PBX version.
    pub fn from_server_header(server: &str) -> Option<Self> {
        let start = server.to_ascii_lowercase().find("pbx/")? + "pbx/".len();
        let digits: String = server[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let major: u32 = digits.parse().ok()?;
        Some(if major >= FIRST_MODERN_MAJOR {
            Dialect::Modern
        } else {
            Dialect::Legacy
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Modern => "modern",
            Dialect::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Dialect::Modern, Dialect::Legacy]
            .into_iter()
            .find(|dialect| dialect.as_str() == s)
            .ok_or_else(|| format!("unknown dialect {s:?} (expected modern or legacy)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_header_versions() {
        assert_eq!(
            Dialect::from_server_header("PBX/70.1"),
            Some(Dialect::Modern)
        );
        assert_eq!(
            Dialect::from_server_header("PBX/69.0"),
            Some(Dialect::Modern)
        );
        assert_eq!(
            Dialect::from_server_header("PBX/68.0.12"),
            Some(Dialect::Legacy)
        );
        assert_eq!(
            Dialect::from_server_header("PBX/67.0.5 (Debian64)"),
            Some(Dialect::Legacy)
        );
        assert_eq!(
            Dialect::from_server_header("Vodia-PBX/70.0"),
            Some(Dialect::Modern)
        );
    }

    #[test]
    fn headers_without_a_version_are_not_guessed() {
        for header in ["", "nginx/1.25", "PBX/", "PBX/x1", "pbx/99999999999999"] {
            assert_eq!(Dialect::from_server_header(header), None, "{header}");
        }
    }

    #[test]
    fn parses_config_names() {
        assert_eq!("modern".parse::<Dialect>(), Ok(Dialect::Modern));
        assert_eq!("legacy".parse::<Dialect>(), Ok(Dialect::Legacy));
        assert!("auto".parse::<Dialect>().is_err());
    }

    #[test]
    fn command_line_names_are_the_config_names() {
        use clap::ValueEnum;
        for dialect in Dialect::value_variants() {
            let name = dialect.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(name.as_deref(), Some(dialect.as_str()));
        }
    }
}
