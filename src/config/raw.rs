//! The shape of bots.yaml as written, before `${VAR}` substitution and validation, and how it is
//! read. Every scalar keeps its position so that later checks can point at the line that is wrong.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::{ConfigError, ConfigErrors, Problem, position_of};

pub(super) type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub pbx: RawPbx,
    #[serde(default)]
    pub defaults: RawDefaults,
    pub http: Option<RawHttp>,
    #[serde(default)]
    pub media: RawMedia,
    pub bots: Spanned<Vec<Spanned<RawBot>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPbx {
    pub url: Text,
    pub domain: Option<Text>,
    pub dialect: Option<Text>,
    pub tls: Option<Spanned<RawTls>>,
    pub admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_file: Option<Text>,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub user: Text,
    pub password: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub prompts: Option<Text>,
    pub recordings: Option<Text>,
    pub record: Option<Spanned<RawRecord>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Spanned<String>,
    pub token: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMedia {
    #[serde(default)]
    pub addresses: Vec<Text>,
    pub threads: Option<Spanned<u32>>,
    pub ports: Option<Text>,
    #[serde(default)]
    pub ice_servers: Vec<Spanned<RawIceServer>>,
    pub relay_only: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIceServer {
    pub urls: Vec<Text>,
    pub username: Option<Text>,
    pub credential: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBot {
    pub name: Text,
    pub extension: Text,
    pub password: Option<Text>,
    pub script: Text,
    pub prompts: Option<Text>,
    pub recordings: Option<Text>,
    pub max_calls: Option<Spanned<u32>>,
    pub max_cps: Option<Spanned<f64>>,
    pub script_memory_mb: Option<Spanned<u32>>,
    pub record: Option<Spanned<RawRecord>>,
    /// Answering-machine detection on every outbound call (`{}` for the defaults).
    pub detect_machine: Option<Spanned<crate::amd::AmdSettings>>,
    #[serde(default)]
    pub allow_dial: Vec<Text>,
    #[serde(default)]
    pub vars: BTreeMap<String, Text>,
    pub stream: Option<RawStream>,
}

/// `stream:` of a bot: how its `call.stream(url)` reaches voice agents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    #[serde(default)]
    pub params: BTreeMap<String, Text>,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub allow_ws: bool,
}

/// `record:` is `false`, `true`, `mono` or `stereo`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRecord {
    Flag(bool),
    Mode(String),
}

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
