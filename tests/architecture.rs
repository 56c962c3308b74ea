//! Structural rules the design depends on (docs/architecture.md, "Sans-IO cores").
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

use std::path::Path;

/// What sans-IO code must not touch: an async runtime, sockets, files, threads or clocks.
const IO: &[&str] = &[
    "tokio",
    "std::net",
    "std::fs",
    "std::io",
    "std::thread",
    "UdpSocket",
    "TcpStream",
    "Instant::now",
    "SystemTime::now",
];

/// The parts that are plain values fed inputs (frames, commands, digits, the time) and polled
/// for outputs, so they are tested with plain values and reused wherever they are needed
/// (docs/architecture.md, "Sans-IO cores"): the protocol (bots and the emulator share it), the
/// call machine, the call's logic (what its actor decides; its tests pick a starting instant),
/// a call's detection bookkeeping, digit collection, the action queue, the prompt player, the
/// emulator's call machine, answering-machine detection and the campaign's schedule.
#[test]
fn sans_io_cores_do_no_io() {
    let cores = [
        "src/protocol",
        "src/call/machine.rs",
        "src/call/machine_tests.rs",
        "src/call/logic.rs",
        "src/call/detection.rs",
        "src/call/gather.rs",
        "src/call/actions.rs",
        "src/media/player.rs",
        "src/pbx/call/machine.rs",
        "src/pbx/call/machine",
        "src/amd/frames.rs",
        "src/amd/greeting.rs",
        "src/amd/listener.rs",
        "src/amd/settings.rs",
        "src/amd/tone.rs",
        "src/campaign/schedule.rs",
    ];
    for core in cores {
        let files = sources(core);
        assert!(!files.is_empty(), "{core} is gone: update this list");
        for (path, source) in files {
            for word in IO {
                assert!(
                    !source.contains(word),
                    "{} uses {word}: keep I/O out of the sans-IO cores",
                    path.display()
                );
            }
        }
    }
}

/// Every Rust file at or below `path` (relative to the crate), with its text.
fn sources(path: &str) -> Vec<(std::path::PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if root.is_file() {
        let text = std::fs::read_to_string(&root).unwrap();
        return vec![(root, text)];
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path, text));
            }
        }
    }
    found
}

/// A dependency nothing uses only costs build time (and audits): each one in Cargo.toml is
/// named somewhere in the code.
#[test]
fn every_dependency_is_used() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let code: Vec<String> = ["src", "tests", "benches"]
        .iter()
        .flat_map(|dir| sources(dir))
        .map(|(_, text)| text)
        .collect();
    let section = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap();
    let mut checked = 0;
    for line in section.lines() {
        let Some((name, _)) = line.split_once(" = ") else {
            continue;
        };
        let crate_name = name.trim().replace('-', "_");
        let used = code.iter().any(|text| {
            text.contains(&format!("{crate_name}::")) || text.contains(&format!("use {crate_name}"))
        });
        assert!(
            used,
            "dependency {name} is not used: remove it from Cargo.toml"
        );
        checked += 1;
    }
    assert!(checked > 10, "only {checked} dependencies found");
}

/// Where the code points a reader (`docs/protocol.md §6`, `docs/scripting.md "Events"`), the
/// page and the section exist: the documents ship with the code and move with it.
#[test]
fn every_docs_reference_in_the_code_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<(std::path::PathBuf, String)> = ["src", "tests", "benches"]
        .iter()
        .flat_map(|dir| sources(dir))
        .collect();
    for other in [
        "README.md",
        "src/pbx/web/app.js",
        "bench/peers/aiortc_bot.py",
    ] {
        texts.push((
            root.join(other),
            std::fs::read_to_string(root.join(other)).unwrap(),
        ));
    }
    let mut checked = 0;
    for (path, text) in &texts {
        for (offset, _) in text.match_indices("docs/") {
            let rest = &text[offset + "docs/".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                .collect();
            // A reference at the end of a sentence.
            let name = name.trim_end_matches('.');
            if !(name.ends_with(".md") || name.ends_with(".png")) {
                continue;
            }
            let place = format!("{}: docs/{name}", path.display());
            let doc = root.join("docs").join(name);
            let page = std::fs::read_to_string(&doc).unwrap_or_else(|_| {
                assert!(doc.is_file(), "{place} does not exist");
                String::new()
            });
            let after = rest[name.len()..].trim_start_matches(',').trim_start();
            if let Some(number) = after.strip_prefix('§') {
                let number: String = number.chars().take_while(char::is_ascii_digit).collect();
                assert!(
                    page.lines()
                        .any(|l| l.starts_with(&format!("## {number}. "))),
                    "{place} has no section §{number}"
                );
            }
            let quoted = after
                .trim_start_matches('§')
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start_matches(',')
                .trim_start();
            if let Some(section) = quoted
                .strip_prefix('"')
                .and_then(|q| q.split_once('"'))
                .map(|(section, _)| section)
            {
                let heading = page
                    .lines()
                    .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == section);
                let lead = page.contains(&format!("**{section}.**"));
                assert!(heading || lead, "{place} has no section \"{section}\"");
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} references to docs/ found");
}
