//! The latest finished calls, read from the end of `cdr.jsonl` (however long the file has
//! grown, at most [`TAIL_BYTES`] of it are read).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

/// How much of the end of the file is read: a few hundred calls' worth.
const TAIL_BYTES: u64 = 512 * 1024;

/// Up to `limit` records, newest first. Lines that are not JSON objects (a line cut by the read
/// window, a foreign line) are skipped; a missing file has no calls.
pub fn read(path: &Path, limit: usize) -> Vec<Value> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let start = length.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The window began inside a line.
        lines.remove(0);
    }
    lines
        .iter()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn newest_first_skipping_what_is_not_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.jsonl");
        let mut file = File::create(&path).unwrap();
        for i in 0..5 {
            writeln!(file, "{{\"n\":{i}}}").unwrap();
        }
        writeln!(file, "not json").unwrap();
        write!(file, "{{\"n\":99").unwrap();
        let records = read(&path, 3);
        let numbers: Vec<i64> = records.iter().map(|r| r["n"].as_i64().unwrap()).collect();
        assert_eq!(numbers, [4, 3, 2]);
        assert!(read(&dir.path().join("missing"), 3).is_empty());
    }

    #[test]
    fn a_long_file_is_read_from_its_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.jsonl");
        let mut file = File::create(&path).unwrap();
        let padding = "x".repeat(1000);
        for i in 0..2000 {
            writeln!(file, "{{\"n\":{i},\"pad\":\"{padding}\"}}").unwrap();
        }
        let records = read(&path, 1000);
        assert!(records.len() < 600, "{}", records.len());
        assert_eq!(records[0]["n"], 1999);
    }
}
