//! What stays on disk after a call: one JSON line per finished call in `cdr.jsonl`, and a JSON
//! sidecar next to each recording (DESIGN.md "Recording").

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
        "connect_ms": info.stats.connect_time.map(|d| d.as_secs_f64() * 1000.0),
        "first_audio_ms": info.stats.first_audio.map(|d| d.as_secs_f64() * 1000.0),
        "packets_sent": info.stats.packets_sent,
        "packets_received": info.stats.packets_received,
        "packets_lost": info.stats.packets_lost,
        "jitter_ms": info.stats.jitter_ms,
    })
}

/// Where a call's recording goes: `<folder>/<YYYY-MM-DD>/<call-id>.wav`.
pub fn recording_path(folder: &Path, call_id: &str) -> PathBuf {
    let day = Local::now().format("%Y-%m-%d").to_string();
    folder.join(day).join(format!("{call_id}.wav"))
}

/// Writes `record` as `<recording>.json` beside each recording: to a temporary name first, then
/// renamed, so a crash or a full disk never leaves half a sidecar.
pub fn write_sidecars(info: &CallInfo, record: &Value) {
    let text = serde_json::to_string_pretty(record).unwrap_or_default();
    for wav in &info.recordings {
        let path = wav.with_extension("json");
        let partial = wav.with_extension("json.partial");
        let written =
            std::fs::write(&partial, &text).and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            tracing::error!("sidecar {}: {e}", path.display());
        }
    }
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
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
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
                "CDR log {}: {e}; the record was: {line}",
                self.path.display()
            );
            *file = None;
        }
    }
}
