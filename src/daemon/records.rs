//! What stays on disk after a call: one JSON line per finished call in `cdr.jsonl`, and a JSON
//! sidecar next to each recording (docs/architecture.md "Recordings").

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, Local, SecondsFormat};
use serde_json::{Value, json};

use crate::call::CallInfo;

fn time(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, |t| {
        json!(DateTime::<Local>::from(t).to_rfc3339_opts(SecondsFormat::Millis, false))
    })
}

/// The call as a JSON object (CDR line and sidecar share it).
pub fn call_record(bot: &str, info: &CallInfo) -> Value {
    let end = info.end;
    json!({
        "bot": bot,
        "call_id": info.id.as_str(),
        "direction": info.direction.as_str(),
        "from": info.from,
        "from_name": info.from_name,
        "to": info.to,
        "start": time(Some(info.started)),
        "answer": time(info.answered),
        "end": time(info.ended),
        "duration_ms": info.duration().as_millis() as u64,
        "state": info.state.map(|s| s.as_str()),
        "reason": end.map(|e| e.reason.as_str()),
        "code": end.and_then(|e| e.code).map(|c| c.0),
        "digits": info.digits,
        "result": info.result,
        "vars": info.vars,
        "recordings": info.recordings,
        "recording_error": info.recording_error,
        "setup_ms": info.setup_time.map(|d| d.as_secs_f64() * 1000.0),
        "amd": info.machine,
        "beep": info.beep,
        "connect_ms": info.stats.connect_time.map(|d| d.as_secs_f64() * 1000.0),
        "first_audio_ms": info.stats.first_audio.map(|d| d.as_secs_f64() * 1000.0),
        "packets_sent": info.stats.packets_sent,
        "packets_received": info.stats.packets_received,
        "packets_lost": info.stats.packets_lost,
        "jitter_ms": info.stats.jitter_ms,
    })
}

/// Where a call's recording goes: `<root>/<bot>/<YYYY-MM-DD>/<id>-<suffix>.wav`. The call id
/// comes from the PBX, so only a safe stem of it names the file, and a random suffix of ours
/// keeps two calls with one id apart (the recorder creates the file new, never over another).
/// The day folder is created here and must resolve inside `root`: one that leads out (a
/// symlink) is refused, and the recording goes to `root` itself.
pub fn recording_path(root: &Path, bot: &str, call_id: &str) -> PathBuf {
    let name = crate::untrusted::unique_file_name(call_id, "wav");
    let day = Local::now().format("%Y-%m-%d").to_string();
    let folder = root.join(crate::untrusted::file_stem(bot)).join(day);
    if std::fs::create_dir_all(&folder).is_err() {
        // The recorder reports the error if the call is recorded.
        return folder.join(name);
    }
    match (folder.canonicalize(), root.canonicalize()) {
        (Ok(real), Ok(root)) if !real.starts_with(&root) => {
            tracing::error!(
                "recording folder {} leads out of {}; recording into {} instead",
                folder.display(),
                root.display(),
                root.display()
            );
            root.join(name)
        }
        _ => folder.join(name),
    }
}

/// Writes `record` as `<recording>.json` beside each recording: to a temporary name first (made
/// new), then linked into place, so a crash or a full disk never leaves half a sidecar and an
/// existing file is never replaced.
pub fn write_sidecars(info: &CallInfo, record: &Value) {
    let text = serde_json::to_string_pretty(record).unwrap_or_default();
    for wav in &info.recordings {
        let path = wav.with_extension("json");
        if let Err(e) = write_new(&path, text.as_bytes()) {
            tracing::error!("sidecar {}: {e}", path.display());
        }
    }
}

/// Writes a file that must not exist yet: whole or not at all.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("json.partial");
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| match std::fs::hard_link(&partial, path) {
            // A file system without hard links: a rename, if nothing is there.
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
                std::fs::rename(&partial, path)
            }
            linked => linked,
        });
    let _ = std::fs::remove_file(&partial);
    written
}

/// `cdr.jsonl`: one line per call, written with a single `write` so a crash never leaves half
/// a line behind a complete one.
pub struct CdrLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl CdrLog {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, record: &Value) {
        let mut line = record.to_string();
        line.push('\n');
        let mut file = crate::lock::lock(&self.file);
        if file.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(opened) => *file = Some(opened),
                Err(e) => {
                    tracing::error!("CDR log {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if let Some(open) = file.as_mut()
            && let Err(e) = open.write_all(line.as_bytes())
        {
            tracing::error!(
                "CDR log {}: {e}; the record was: {}",
                self.path.display(),
                line.trim_end()
            );
            *file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    #[test]
    fn recordings_stay_in_their_day_folder_whatever_the_call_id() {
        let root = tempfile::tempdir().unwrap();
        let day = Local::now().format("%Y-%m-%d").to_string();
        let folder = root.path().join("ivr").join(&day);
        for id in ["../../../../tmp/x", "/etc/passwd", "a\nb", "..", ""] {
            let path = recording_path(root.path(), "ivr", id);
            assert_eq!(path.parent(), Some(folder.as_path()), "{id:?} → {path:?}");
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(name.ends_with(".wav") && !name.starts_with('.'), "{name}");
            assert!(
                path.strip_prefix(root.path())
                    .unwrap()
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
            );
        }
        assert_ne!(
            recording_path(root.path(), "ivr", "same"),
            recording_path(root.path(), "ivr", "same"),
            "one id, two calls: two files"
        );
    }

    #[test]
    fn a_day_folder_that_leads_out_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let day = Local::now().format("%Y-%m-%d").to_string();
        std::fs::create_dir(root.path().join("ivr")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("ivr").join(day)).unwrap();
        let path = recording_path(root.path(), "ivr", "abc");
        assert_eq!(
            path.parent(),
            Some(root.path().canonicalize().unwrap().as_path())
        );
    }

    #[test]
    fn the_answering_machine_verdict_and_the_beep_are_recorded() {
        use crate::amd::{AmdReason, AmdResult, Beep, BeepKind, Verdict};
        let mut info = CallInfo::new(
            crate::protocol::CallId::from_bits(7),
            crate::call::Direction::Outbound,
            ("602", ""),
            "706",
            Default::default(),
        );
        assert!(call_record("c", &info)["amd"].is_null());
        info.machine = Some(Verdict {
            result: AmdResult::Machine,
            reason: AmdReason::LongGreeting,
            ms: 2112,
        });
        info.beep = Some(Beep {
            how: BeepKind::Tone,
            ms: 6384,
        });
        let record = call_record("c", &info);
        assert_eq!(
            record["amd"],
            json!({ "result": "MACHINE", "reason": "long_greeting", "ms": 2112 })
        );
        assert_eq!(record["beep"], json!({ "how": "tone", "ms": 6384 }));
    }

    #[test]
    fn sidecars_never_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_new(&path, b"first").unwrap();
        assert!(write_new(&path, b"second").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(!dir.path().join("x.json.partial").exists());
    }
}
