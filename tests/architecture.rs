//! Structural rules the design depends on (../shared/DESIGN.md: "sans-IO").

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
