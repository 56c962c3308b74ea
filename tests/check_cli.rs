//! `callbot check` through the real binary: exit codes and messages a user sees.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fixture_dir as fixtures;

fn check(config: &Path, envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(common::binary::binary());
    command
        .args(["check", "-c"])
        .arg(config)
        .env_remove("PBX_ADMIN_PASSWORD")
        .env_remove("CALLBOT_FIXTURE_UNSET_PASSWORD");
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().expect("run callbot")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `# expect-error: line=N key=K (…)` header of an error fixture.
fn expectation(path: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let header = text.lines().next()?.strip_prefix("# expect-error: ")?;
    let mut fields = header.split_whitespace();
    let line = fields.next()?.strip_prefix("line=")?.parse().ok()?;
    let key = fields.next()?.strip_prefix("key=")?.to_owned();
    Some((line, key))
}

#[test]
fn every_bad_fixture_exits_2_naming_file_line_and_key() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let Some((line, key)) = expectation(&path) else {
            continue;
        };
        let output = check(&path, &[]);
        let message = stderr(&output);
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert!(
            message.contains(&format!("{name}:{line}:")),
            "{name}: expected line {line} in: {message}"
        );
        assert!(
            message.contains(&format!(": {key}: ")),
            "{name}: expected key {key} in: {message}"
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} error fixtures found");
}

#[test]
fn valid_fixture_passes() {
    let output = check(&fixtures().join("valid.yaml"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("OK") && stdout.contains("ivr") && stdout.contains("test-line"));
}

#[test]
fn example_config_passes_with_its_secret_set_and_never_prints_it() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots.example.yaml");
    let secret = "example-secret-9f3a";
    let output = check(&example, &[("PBX_ADMIN_PASSWORD", secret)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert!(!all.contains(secret));

    let output = check(&example, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("PBX_ADMIN_PASSWORD is not set"));
}

#[test]
fn all_errors_are_reported_at_once_without_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bots.yaml");
    std::fs::write(
        &config,
        "pbx:\n  url: ftp://${PBX_HOST}\n  admin: { user: admin, password: \"${ADMIN_PW}\" }\n\
         bots:\n  - name: a b\n    extension: \"500\"\n    script: nope.rhai\n    allow_dial: [\"x\"]\n",
    )
    .unwrap();
    let output = check(
        &config,
        &[("PBX_HOST", "host.example"), ("ADMIN_PW", "pw-7c1e")],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2));
    for expected in [
        "bots.yaml:2:8: pbx.url:",
        "bots.yaml:5:5: bots[0].prompts: default prompt folder",
        "bots.yaml:5:11: bots[0].name:",
        "bots.yaml:7:13: bots[0].script:",
        "bots.yaml:8:18: bots[0].allow_dial[0]:",
        "5 error(s)",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    assert!(!message.contains("pw-7c1e"));
}

#[test]
fn unquoted_variable_in_a_flow_mapping_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bots.yaml");
    std::fs::write(
        &config,
        "pbx:\n  url: https://pbx\n  admin: { user: admin, password: ${ADMIN_PW} }\nbots: []\n",
    )
    .unwrap();
    let output = check(&config, &[("ADMIN_PW", "x")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("bots.yaml:3:"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("put ${VAR} in quotes"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreadable_and_non_yaml_files_are_errors_not_crashes() {
    let output = check(Path::new("/nonexistent/bots.yaml"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/bots.yaml: cannot read the file"));

    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("bots.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let output = check(&binary, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not UTF-8"));
}

#[test]
fn help_is_the_manual() {
    let output = Command::new(common::binary::binary())
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        help.contains("--config") && help.contains("Exits 0"),
        "{help}"
    );
}

#[test]
fn check_compiles_scripts_and_names_the_line_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prompts")).unwrap();
    std::fs::write(
        dir.path().join("broken.rhai"),
        "fn on_incoming_call(call) {\n    call.answer();\n    call.play(\"a.wav\"\n}\n",
    )
    .unwrap();
    let config = dir.path().join("bots.yaml");
    std::fs::write(
        &config,
        "pbx: { url: \"https://pbx.example.com\", admin: { user: admin, password: x } }\n\
         bots:\n  - { name: broken, extension: \"500\", script: broken.rhai }\n",
    )
    .unwrap();
    let output = check(&config, &[]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("broken.rhai:4:"),
        "the script's file and line: {message}"
    );
}

/// A bot (extension 500, allow_dial 5??, vars test_line) running `script`, with a prompt
/// folder that holds welcome.wav; returns the config's path.
fn script_fixture(dir: &Path, script: &str) -> std::path::PathBuf {
    std::fs::create_dir(dir.join("prompts")).unwrap();
    std::fs::copy(
        common::binary::repo("prompts/welcome.wav"),
        dir.join("prompts/welcome.wav"),
    )
    .unwrap();
    std::fs::write(dir.join("bot.rhai"), script).unwrap();
    let config = dir.join("bots.yaml");
    std::fs::write(
        &config,
        "pbx: { url: \"https://pbx.example.com\", admin: { user: admin, password: x } }\n\
         bots:\n  - name: menu\n    extension: \"500\"\n    script: bot.rhai\n    \
         allow_dial: [\"5??\"]\n    vars: { test_line: \"501\" }\n",
    )
    .unwrap();
    config
}

/// One script per rule of `callbot check`, each broken once: the exit status, and the
/// message's file:line (and what it must say).
#[test]
fn check_holds_scripts_to_the_contract_and_the_config() {
    let cases: &[(&str, &str, i32, &str, &[&str])] = &[
        (
            "a misspelt handler",
            "fn on_incomming_call(call) {\n    call.answer();\n}\n",
            2,
            "bot.rhai:1: error:",
            &[
                "on_incomming_call is not a handler",
                "did you mean on_incoming_call?",
            ],
        ),
        (
            "no on_incoming_call",
            "fn on_call_state(call, state) {\n    call.log(state);\n}\n",
            0,
            "bot.rhai: warning:",
            &["no on_incoming_call", "rejected with 480"],
        ),
        (
            "a method the API does not have",
            "fn on_incoming_call(call) {\n    call.answer();\n    call.ecco(true);\n}\n",
            2,
            "bot.rhai:3:10: error:",
            &["call has no method ecco", "did you mean echo?"],
        ),
        (
            "a method the API does not have, on a call parameter named otherwise",
            "fn on_incoming_call(c) {\n    c.answer();\n    c.hangup(1);\n}\n",
            2,
            "bot.rhai:3:7: error:",
            &["call.hangup takes 0 argument(s), not 1"],
        ),
        (
            "an undefined variable",
            "fn on_incoming_call(call) {\n    call.answer();\n    call.play(greeting);\n}\n",
            2,
            "bot.rhai:3:15: error:",
            &["greeting"],
        ),
        (
            "a prompt that is not in the prompt folder",
            "fn on_incoming_call(call) {\n    call.answer();\n    call.play(\"welcom.wav\");\n}\n",
            2,
            "bot.rhai:3:15: error:",
            &[
                "prompt \"welcom.wav\" is not in bot menu's prompt folder",
                "did you mean welcome.wav?",
            ],
        ),
        (
            "a transfer outside allow_dial",
            "fn on_incoming_call(call) {\n    call.answer();\n}\n\
             fn on_digits(call, digits) {\n    call.transfer(\"0900123456\");\n}\n",
            2,
            "bot.rhai:5:19: error:",
            &["transfer to \"0900123456\" is refused: not in allow_dial of bot menu"],
        ),
    ];
    for (rule, script, status, place, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = script_fixture(dir.path(), script);
        let output = check(&config, &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(*status), "{rule}: {message}");
        let line = message
            .lines()
            .find(|line| line.contains(place))
            .unwrap_or_else(|| panic!("{rule}: no {place:?} in:\n{message}"));
        for said in *says {
            assert!(line.contains(said), "{rule}: {said:?} not in {line:?}");
        }
    }
}

#[test]
fn a_script_that_keeps_the_contract_passes_without_findings() {
    let dir = tempfile::tempdir().unwrap();
    let config = script_fixture(
        dir.path(),
        "fn on_incoming_call(c) {\n    c.answer();\n    c.play(\"welcome.wav\");\n    \
         c.gather(#{ max: 2, prompt: \"welcome.wav\" });\n    c.set(\"n\", twice(1));\n}\n\
         fn twice(x) { x * 2 }\n\
         fn on_digits(call, digits) {\n    let f = |d| d.len();\n    if f.call(digits) > 1 && \"1\" in digits {\n        \
         call.transfer(bot.vars.test_line);\n    }\n    for key in digits.split(\"\") { bot.log(`${key}`); }\n    \
         bot.dial(\"502\", #{ why: digits.to_upper() });\n}\n",
    );
    let output = check(&config, &[]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{message}");
    assert!(message.is_empty(), "no findings expected:\n{message}");
}

#[test]
fn every_example_config_passes() {
    for example in ["bots.example.yaml", "campaign.example.yaml"] {
        let output = check(
            &common::binary::repo(example),
            &[("PBX_ADMIN_PASSWORD", "example-secret")],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{example}: {message}");
        assert!(!message.contains("error"), "{example}: {message}");
    }
}
