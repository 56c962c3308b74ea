//! The shape of bots.yaml as written, before `${VAR}` substitution and validation. Every scalar
//! keeps its position so that later checks can point at the line that is wrong.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(super) type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub pbx: RawPbx,
    #[serde(default)]
    pub defaults: RawDefaults,
    pub http: Option<RawHttp>,
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
    pub listen: Text,
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
    pub record: Option<Spanned<RawRecord>>,
    #[serde(default)]
    pub allow_dial: Vec<Text>,
    #[serde(default)]
    pub vars: BTreeMap<String, Text>,
}

/// `record:` is `false`, `true`, `mono` or `stereo`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRecord {
    Flag(bool),
    Mode(String),
}
