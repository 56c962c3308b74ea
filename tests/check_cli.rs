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
