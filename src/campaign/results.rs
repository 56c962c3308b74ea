//! The results file: one CSV row per contact (its last outcome), written whole and renamed
//! into place so a reader never sees half a file.

use std::path::Path;

use super::contacts::Skipped;
use super::journal::Entry;
use super::outcome::Outcome;

const HEADER: [&str; 11] = [
    "line",
    "number",
    "attempts",
    "state",
    "reason",
    "code",
    "answered_at",
    "duration_ms",
    "digits",
    "result",
    "call_id",
];

/// One row of the results (also the message a queue worker publishes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub line: u64,
    pub number: String,
    pub attempts: u32,
    pub outcome: Outcome,
}

impl Row {
    pub fn from_entry(entry: &Entry) -> Self {
        Self {
            line: entry.contact.line,
            number: entry.contact.number.clone(),
            attempts: entry.attempts,
            outcome: entry.outcome.clone().unwrap_or_else(|| Outcome {
                state: "PENDING".into(),
                ..Outcome::default()
            }),
        }
    }

    pub fn from_skipped(skipped: &Skipped) -> Self {
        Self {
            line: skipped.line,
            number: skipped.number.clone(),
            attempts: 0,
            outcome: Outcome::skipped(&skipped.problem),
        }
    }
}

/// Writes `rows` (sorted by line) to `path`.
pub fn write(path: &Path, rows: &mut [Row]) -> Result<(), String> {
    rows.sort_by_key(|r| r.line);
    let shown = path.display().to_string();
    let temporary = path.with_extension("csv.partial");
    let mut csv = csv::Writer::from_path(&temporary).map_err(|e| format!("{shown}: {e}"))?;
    csv.write_record(HEADER)
        .map_err(|e| format!("{shown}: {e}"))?;
    for row in rows.iter() {
        let o = &row.outcome;
        let record = [
            row.line.to_string(),
            row.number.clone(),
            row.attempts.to_string(),
            o.state.clone(),
            o.reason.clone(),
            o.code.map(|c| c.to_string()).unwrap_or_default(),
            o.answered_at.clone().unwrap_or_default(),
            o.duration_ms.to_string(),
            o.digits.clone(),
            o.result.clone(),
            o.call_id.clone(),
        ];
        csv.write_record(&record)
            .map_err(|e| format!("{shown}: {e}"))?;
    }
    csv.flush().map_err(|e| format!("{shown}: {e}"))?;
    drop(csv);
    std::fs::rename(&temporary, path).map_err(|e| format!("{shown}: {e}"))
}

/// Reads a results file back (tests and `campaign results` merge them).
pub fn read(path: &Path) -> Result<Vec<Row>, String> {
    let shown = path.display().to_string();
    let mut csv = csv::Reader::from_path(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut rows = Vec::new();
    for record in csv.records() {
        let r = record.map_err(|e| format!("{shown}: {e}"))?;
        let field = |i: usize| r.get(i).unwrap_or_default().to_owned();
        rows.push(Row {
            line: field(0).parse().unwrap_or(0),
            number: field(1),
            attempts: field(2).parse().unwrap_or(0),
            outcome: Outcome {
                state: field(3),
                reason: field(4),
                code: field(5).parse().ok(),
                answered_at: Some(field(6)).filter(|s| !s.is_empty()),
                duration_ms: field(7).parse().unwrap_or(0),
                digits: field(8),
                result: field(9),
                call_id: field(10),
            },
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let row = |line: u64, state: &str| Row {
            line,
            number: format!("7{line:02}"),
            attempts: 1,
            outcome: Outcome {
                state: state.into(),
                result: "confirmed, \"yes\"".into(),
                ..Outcome::default()
            },
        };
        write(&path, &mut [row(3, "BUSY"), row(2, "COMPLETED")]).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, vec![row(2, "COMPLETED"), row(3, "BUSY")]);
        assert!(!path.with_extension("csv.partial").exists());
    }
}
