//! The example config as a new user runs it: `callbot run -c bots.example.yaml` against the
//! emulator, a caller dials the IVR (500), presses 1 and is put through to the test line,
//! which it hears announce itself and then echo.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::Path;

use callbot::protocol::Dialect;
use common::binary::{self, daemon, emulator, phone};
use common::ivr;

/// Copies the files of `folder` (scripts, prompts) from the repository into `dir`.
fn copy_folder(folder: &str, dir: &Path) {
    let to = dir.join(folder);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(binary::repo(folder)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// bots.example.yaml beside copies of scripts/ and prompts/ in `dir`, changed only where a
/// test must: the emulator's URL and an OS-chosen metrics port.
fn example_config(dir: &Path, pbx_url: &str) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(binary::repo("bots.example.yaml")).unwrap();
    for (example, here) in [
        ("url: https://127.0.0.1:8443", format!("url: {pbx_url}")),
        ("listen: 127.0.0.1:9100", "listen: 127.0.0.1:0".to_owned()),
    ] {
        assert_eq!(text.matches(example).count(), 1, "{example} in the example");
        text = text.replace(example, &here);
    }
    copy_folder("scripts", dir);
    copy_folder("prompts", dir);
    let config = dir.join("bots.example.yaml");
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_ivr_puts_key_1_through_to_the_test_line() {
    let dir = tempfile::tempdir().unwrap();
    let pbx = emulator(dir.path(), Dialect::Modern);
    let config = example_config(dir.path(), &pbx.url);
    let _daemon = daemon(&config, 2);
    let caller = phone(&pbx, "502", dir.path()).await;
    ivr::press_1_and_hear_the_test_line(&pbx, &caller, &dir.path().join("caller.wav")).await;
}
