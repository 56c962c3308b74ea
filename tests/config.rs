//! Loading bots.yaml through the library: what a valid file resolves to, and what is refused.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

use std::path::{Path, PathBuf};

use callbot::config::{Config, ConfigErrors, DialectSetting, RecordMode, TlsSetting};
use callbot::media::transport::PortRange;
use callbot::protocol::Dialect;

/// A folder with a script and a prompt folder, as a real deployment has.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bot.rhai"), "fn on_start() {}\n").unwrap();
        std::fs::create_dir(dir.path().join("prompts")).unwrap();
        Self { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("bots.yaml")
    }

    fn parse(&self, yaml: &str) -> Result<Config, ConfigErrors> {
        Config::parse(yaml, &self.file(), &env)
    }

    fn errors(&self, yaml: &str) -> Vec<String> {
        match self.parse(yaml) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "ADMIN_PW" => Some("admin-secret-41".into()),
        "EXT_PW" => Some("ext-secret-42".into()),
        "QUEUE" => Some("700".into()),
        _ => None,
    }
}

const PBX: &str = "pbx:\n  url: https://pbx.example.com:8443\n  admin: { user: admin, password: \"${ADMIN_PW}\" }\n";

fn with_bots(bots: &str) -> String {
    format!("{PBX}bots:\n{bots}")
}

const ONE_BOT: &str = "  - name: ivr\n    extension: \"500\"\n    script: bot.rhai\n";

#[test]
fn a_minimal_config_gets_sensible_defaults() {
    let d = Deployment::new();
    let config = d.parse(&with_bots(ONE_BOT)).unwrap();
    assert_eq!(config.pbx.domain, "pbx.example.com");
    assert_eq!(config.pbx.dialect, DialectSetting::Auto);
    assert_eq!(config.pbx.tls, TlsSetting::PublicRoots);
    assert!(config.http.is_none());
    let bot = &config.bots[0];
    assert_eq!(bot.script, d.dir.path().join("bot.rhai"));
    assert_eq!(bot.prompts, d.dir.path().join("prompts"));
    assert_eq!(bot.recordings, d.dir.path().join("recordings"));
    assert_eq!(bot.record, RecordMode::Off);
    assert_eq!(bot.max_calls, 10);
    assert!(
        !bot.allow_dial.allows("501"),
        "no allow_dial means no dialling"
    );
}

#[test]
fn a_full_config_resolves_every_field() {
    let d = Deployment::new();
    std::fs::create_dir(d.dir.path().join("menu")).unwrap();
    std::fs::write(d.dir.path().join("ca.pem"), "").unwrap();
    let yaml = "pbx:
  url: https://pbx.example.com
  domain: tenant.example.com
  dialect: legacy
  tls: { ca_file: ca.pem }
defaults: { prompts: menu, recordings: /var/rec, record: mono }
http: { listen: \"127.0.0.1:9100\" }
bots:
  - name: ivr
    extension: \"500\"
    password: ${EXT_PW}
    script: bot.rhai
    max_calls: 20
    record: stereo
    allow_dial: [\"5??\", \"1800*\"]
    vars: { support_queue: \"${QUEUE}\", retries: 3 }
";
    let config = d.parse(yaml).unwrap();
    assert_eq!(config.pbx.domain, "tenant.example.com");
    assert_eq!(config.pbx.dialect, DialectSetting::Fixed(Dialect::Legacy));
    assert_eq!(
        config.pbx.tls,
        TlsSetting::CaFile(d.dir.path().join("ca.pem"))
    );
    assert!(config.pbx.admin.is_none());
    assert_eq!(config.http.unwrap().listen.port(), 9100);
    let bot = &config.bots[0];
    assert_eq!(bot.password.as_ref().unwrap().expose(), "ext-secret-42");
    assert_eq!(bot.prompts, d.dir.path().join("menu"));
    assert_eq!(bot.recordings, Path::new("/var/rec"));
    assert_eq!(bot.record, RecordMode::Stereo);
    assert_eq!(bot.max_calls, 20);
    assert!(bot.allow_dial.allows("599") && bot.allow_dial.allows("18005550100"));
    assert!(!bot.allow_dial.allows("911"));
    assert_eq!(bot.vars["support_queue"], "700");
    assert_eq!(bot.vars["retries"], "3");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let d = Deployment::new();
    let yaml = with_bots(&format!("{ONE_BOT}    password: ${{EXT_PW}}\n"));
    let config = d.parse(&yaml).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("admin-secret-41") && !debug.contains("ext-secret-42"));
    assert!(debug.contains("***"));
}

#[test]
fn record_accepts_booleans_and_modes() {
    let d = Deployment::new();
    for (value, mode) in [
        ("false", RecordMode::Off),
        ("true", RecordMode::Stereo),
        ("mono", RecordMode::Mono),
        ("stereo", RecordMode::Stereo),
    ] {
        let config = d
            .parse(&with_bots(&format!("{ONE_BOT}    record: {value}\n")))
            .unwrap();
        assert_eq!(config.bots[0].record, mode, "record: {value}");
    }
    let errors = d.errors(&with_bots(&format!("{ONE_BOT}    record: loud\n")));
    assert!(errors[0].contains("bots[0].record") && errors[0].contains("loud"));
}

#[test]
fn invalid_values_are_refused_with_their_key() {
    let d = Deployment::new();
    let cases = [
        (
            format!("{ONE_BOT}    max_calls: 0\n"),
            "bots[0].max_calls: must be at least 1",
        ),
        (
            ONE_BOT.replace("\"500\"", "\"\""),
            "bots[0].extension: must not be empty",
        ),
        (
            ONE_BOT.replace("\"500\"", "\"5 0\""),
            "bots[0].extension: \"5 0\"",
        ),
        (ONE_BOT.replace("ivr", "../etc"), "bots[0].name: \"../etc\""),
    ];
    for (bots, expected) in cases {
        let errors = d.errors(&with_bots(&bots));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn pbx_section_errors() {
    let d = Deployment::new();
    let bots = format!("bots:\n{ONE_BOT}");
    let cases = [
        ("pbx:\n  url: pbx.example.com\n", "pbx.url"),
        (
            "pbx:\n  url: https://x\n  dialect: v70\n",
            "pbx.dialect: \"v70\" is not auto",
        ),
        (
            "pbx:\n  url: https://x\n  tls: { ca_file: ca.pem, insecure: true }\n",
            "pbx.tls: set either ca_file or insecure",
        ),
        (
            "pbx:\n  url: https://x\n  tls: { ca_file: nope.pem }\n",
            "pbx.tls.ca_file: CA file",
        ),
        (
            "pbx:\n  url: https://x\n",
            "bots[0]: this bot cannot log in",
        ),
        (
            "pbx:\n  url: https://x\n  admin: { user: admin, password: \"\" }\n",
            "pbx.admin.password: must not be empty",
        ),
    ];
    for (pbx, expected) in cases {
        let errors = d.errors(&format!("{pbx}{bots}"));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn other_sections_errors() {
    let d = Deployment::new();
    let errors = d.errors(&format!("{PBX}bots: []\n"));
    assert!(errors[0].contains("bots: no bots"), "{errors:?}");
    let errors = d.errors(&format!(
        "{PBX}http: {{ listen: nowhere }}\nbots:\n{ONE_BOT}"
    ));
    assert!(errors[0].contains("http.listen"), "{errors:?}");
    let errors = d.errors(&format!(
        "{PBX}defaults: {{ prompts: nope }}\nbots:\n{ONE_BOT}"
    ));
    assert!(
        errors[0].contains("defaults.prompts: prompt folder"),
        "{errors:?}"
    );
    let errors = d.errors("");
    assert!(errors[0].contains("bots.yaml"), "{errors:?}");
}

#[test]
fn prompt_folder_must_be_a_folder() {
    let d = Deployment::new();
    let errors = d.errors(&with_bots(&format!("{ONE_BOT}    prompts: bot.rhai\n")));
    assert!(errors[0].contains("is not a folder"), "{errors:?}");
}

#[test]
fn duplicates_compare_values_after_substitution() {
    let d = Deployment::new();
    let bots = format!(
        "{ONE_BOT}  - name: other\n    extension: \"${{QUEUE}}\"\n    script: bot.rhai\n\
         \x20 - name: third\n    extension: \"700\"\n    script: bot.rhai\n"
    );
    let errors = d.errors(&with_bots(&bots));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("bots[2].extension: duplicate extension"));
}

#[test]
fn unknown_keys_anywhere_are_errors() {
    let d = Deployment::new();
    for yaml in [
        format!("{PBX}  colour: blue\nbots:\n{ONE_BOT}"),
        format!("{PBX}defaults: {{ volume: 3 }}\nbots:\n{ONE_BOT}"),
        format!("{PBX}bots:\n{ONE_BOT}extra: 1\n"),
    ] {
        let errors = d.errors(&yaml);
        assert!(errors[0].contains("unknown field"), "{errors:?}");
    }
}

#[test]
fn media_section_gives_addresses_and_ice_servers() {
    let d = Deployment::new();
    let yaml = format!(
        "{PBX}media:\n  addresses: [127.0.0.1, \"::1\"]\n  ice_servers:\n\
         \x20   - {{ urls: [\"stun:stun.example.com:3478\"] }}\n\
         \x20   - {{ urls: [\"turn:turn.example.com:3478\"], username: bot, credential: \"${{EXT_PW}}\" }}\n\
         bots:\n{ONE_BOT}"
    );
    let config = d.parse(&yaml).unwrap();
    let network = config.media.network_settings();
    assert_eq!(network.addresses.len(), 2);
    assert_eq!(network.ice_servers[1].credential.expose(), "ext-secret-42");
    assert!(!format!("{:?}", config.media).contains("ext-secret-42"));
    let default = d.parse(&with_bots(ONE_BOT)).unwrap();
    assert!(default.media.network_settings().addresses.is_empty());
}

#[test]
fn media_threads_and_ports() {
    let d = Deployment::new();
    let parse = |media: &str| {
        d.parse(&format!("{PBX}media:\n{media}bots:\n{ONE_BOT}"))
            .unwrap()
            .media
            .network_settings()
    };
    let range = parse("  ports: 40000-40003\n");
    assert_eq!(range.threads, 0, "as many as ports");
    assert_eq!(
        range.ports,
        Some(PortRange {
            first: 40000,
            last: 40003
        })
    );
    assert_eq!(range.ports.unwrap().count(), 4);
    let one = parse("  threads: 1\n  ports: 5004\n");
    assert_eq!((one.threads, one.ports.map(PortRange::count)), (1, Some(1)));
    let threads = parse("  threads: 3\n");
    assert_eq!((threads.threads, threads.ports), (3, None));
    let default = d
        .parse(&with_bots(ONE_BOT))
        .unwrap()
        .media
        .network_settings();
    assert_eq!((default.threads, default.ports), (0, None));
    assert!(!default.relay_only);
    let relayed = parse(
        "  relay_only: true\n  ice_servers:\n    - { urls: [\"turn:192.0.2.1:3478\"], username: u, credential: c }\n",
    );
    assert!(relayed.relay_only);
}

#[test]
fn media_section_errors() {
    let d = Deployment::new();
    let cases = [
        (
            "media:\n  addresses: [localhost]\n",
            "media.addresses[0]: \"localhost\" is not an IP address",
        ),
        (
            "media:\n  ice_servers:\n    - { urls: [\"http://x\"] }\n",
            "media.ice_servers[0].urls[0]",
        ),
        (
            "media:\n  ice_servers:\n    - { urls: [\"turn:x:3478\"] }\n",
            "media.ice_servers[0]: a TURN server needs username and credential",
        ),
        (
            "media:\n  ice_servers:\n    - { urls: [] }\n",
            "media.ice_servers[0]: urls",
        ),
        ("media:\n  threads: 0\n", "media.threads: must be 1 to 256"),
        (
            "media:\n  ports: 0\n",
            "media.ports: \"0\" is not a UDP port",
        ),
        ("media:\n  ports: 5003-5000\n", "media.ports: \"5003-5000\""),
        ("media:\n  ports: 1000-2000\n", "a range of at most 256"),
        ("media:\n  ports: http\n", "media.ports: \"http\""),
        (
            "media:\n  relay_only: true\n  ice_servers:\n    - { urls: [\"stun:x:3478\"] }\n",
            "media.relay_only: relaying needs a turn: server over UDP in media.ice_servers",
        ),
        (
            "media:\n  relay_only: true\n  ice_servers:\n    - { urls: [\"turn:x:3478?transport=tcp\"], username: u, credential: c }\n",
            "media.relay_only: relaying needs a turn: server over UDP in media.ice_servers",
        ),
        (
            "media:\n  threads: 3\n  ports: 5000-5001\n",
            "media.threads: 3 thread(s) need as many ports; media.ports gives 2",
        ),
    ];
    for (media, expected) in cases {
        let errors = d.errors(&format!("{PBX}{media}bots:\n{ONE_BOT}"));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn http_needs_a_token_unless_it_listens_on_loopback() {
    let d = Deployment::new();
    let http = |section: &str| format!("{PBX}http: {section}\nbots:\n{ONE_BOT}");
    let open = d.parse(&http("{ listen: \"127.0.0.1:9100\" }")).unwrap();
    assert!(open.http.unwrap().token.is_none());
    let errors = d.errors(&http("{ listen: \"0.0.0.0:9100\" }"));
    assert!(
        errors[0].contains("http.listen") && errors[0].contains("set http.token"),
        "{errors:?}"
    );
    let errors = d.errors(&http("{ listen: \"0.0.0.0:9100\", token: short }"));
    assert!(
        errors[0].contains("http.token") && errors[0].contains("at least 16"),
        "{errors:?}"
    );
    let guarded = d
        .parse(&http(
            "{ listen: \"0.0.0.0:9100\", token: \"${ADMIN_PW}-and-more\" }",
        ))
        .unwrap();
    let token = guarded.http.unwrap().token.unwrap();
    assert_eq!(token.expose(), "admin-secret-41-and-more");
    assert!(!format!("{token:?}").contains("admin-secret"), "a secret");
}

#[test]
fn a_bots_stream_section_resolves_with_its_secrets() {
    let d = Deployment::new();
    let bot = format!(
        "{ONE_BOT}    stream:\n      headers: {{ Authorization: \"Bearer ${{EXT_PW}}\" }}\n      \
         params: {{ key: \"${{ADMIN_PW}}\" }}\n      tls: {{ insecure: true }}\n      allow_ws: true\n"
    );
    let config = d.parse(&with_bots(&bot)).unwrap();
    let stream = &config.bots[0].stream;
    assert_eq!(stream.headers.len(), 1);
    assert_eq!(stream.headers[0].0, "Authorization");
    assert_eq!(stream.headers[0].1.expose(), "Bearer ext-secret-42");
    assert_eq!(stream.params["key"].expose(), "admin-secret-41");
    assert_eq!(stream.tls, Some(TlsSetting::Insecure));
    assert!(stream.allow_ws);
    assert!(!format!("{config:?}").contains("secret-4"), "{config:?}");
    let plain = d.parse(&with_bots(ONE_BOT)).unwrap();
    assert!(plain.bots[0].stream.headers.is_empty());
    assert_eq!(plain.bots[0].stream.tls, None, "as pbx.tls");
    assert!(!plain.bots[0].stream.allow_ws);
}

#[test]
fn stream_section_errors() {
    let d = Deployment::new();
    let cases = [
        (
            "headers: { \"Bad Name\": x }",
            "bots[0].stream.headers.Bad Name: \"Bad Name\" is not a header a stream may set",
        ),
        (
            "headers: { Sec-WebSocket-Key: x }",
            "is not a header a stream may set",
        ),
        ("headers: { Host: x }", "is not a header a stream may set"),
        (
            "headers: { X-Token: \"a\\nb\" }",
            "bots[0].stream.headers.X-Token: \"a\\nb\" is not a valid header value",
        ),
        (
            "headers: { X-Token: \"${UNSET_TOKEN}\" }",
            "bots[0].stream.headers.X-Token",
        ),
        (
            "tls: { insecure: true, ca_file: x.pem }",
            "bots[0].stream.tls: set either ca_file or insecure",
        ),
        (
            "tls: { ca_file: missing.pem }",
            "bots[0].stream.tls.ca_file",
        ),
        ("allow_ws: maybe", "bots[0].stream.allow_ws"),
        ("url: ws://x", "unknown field `url`"),
    ];
    for (stream, expected) in cases {
        let errors = d.errors(&with_bots(&format!(
            "{ONE_BOT}    stream: {{ {stream} }}\n"
        )));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}
