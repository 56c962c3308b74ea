//! Structural rules the design depends on (../shared/DESIGN.md: "sans-IO").
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

use std::path::Path;

/// `src/protocol` must stay pure: no async runtime, sockets, files, threads or clocks, so it can
/// be tested with plain values and reused by both the bots and the emulator.
#[test]
fn protocol_module_does_no_io() {
    let forbidden = [
        "tokio",
        "std::net",
        "std::fs",
        "std::io",
        "std::thread",
        "Instant::now",
        "SystemTime::now",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(
                !source.contains(word),
                "{} uses {word}: keep I/O out of the protocol module",
                path.display()
            );
        }
        files += 1;
    }
    assert!(files > 0);
}

/// Every source file below `dir` (relative to the crate), with its text.
fn sources(dir: &str) -> Vec<(std::path::PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
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
