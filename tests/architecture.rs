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
/// call machine, digit collection, the action queue and the prompt player.
#[test]
fn sans_io_cores_do_no_io() {
    let cores = [
        "src/protocol",
        "src/call/machine.rs",
        "src/call/machine_tests.rs",
        "src/call/gather.rs",
        "src/call/actions.rs",
        "src/media/player.rs",
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
