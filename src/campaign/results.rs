//! The results file: one CSV row per contact (its last outcome), written whole and renamed
//! into place so a reader never sees half a file.

use std::path::Path;

use super::contacts::Skipped;
use super::journal::Entry;
use super::outcome::Outcome;

const HEADER: [&str; 13] = [
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
    "amd",
    "beep_ms",
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

/// A cell as a spreadsheet may show it: one that starts like a formula (`=`, `+`, `-`, `@`,
/// a tab or a carriage return) gets a leading `'`, which spreadsheets hide and read as
/// "text". A cell that starts with `'` gets one more, so [`unescape`] gives back every value.
fn escape(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn unescape(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// Writes `rows` (sorted by line) to `path`; text cells are [`escape`]d.
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
            escape(&row.number).into_owned(),
            row.attempts.to_string(),
            escape(&o.state).into_owned(),
            escape(&o.reason).into_owned(),
            o.code.map(|c| c.to_string()).unwrap_or_default(),
            escape(o.answered_at.as_deref().unwrap_or_default()).into_owned(),
            o.duration_ms.to_string(),
            escape(&o.digits).into_owned(),
            escape(&o.result).into_owned(),
            escape(&o.call_id).into_owned(),
            escape(&o.amd).into_owned(),
            o.beep_ms.map(|ms| ms.to_string()).unwrap_or_default(),
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
        let field = |i: usize| unescape(r.get(i).unwrap_or_default()).to_owned();
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
                amd: field(11),
                beep_ms: field(12).parse().ok(),
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
                amd: "MACHINE".into(),
                beep_ms: Some(4210),
                ..Outcome::default()
            },
        };
        write(&path, &mut [row(3, "BUSY"), row(2, "COMPLETED")]).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, vec![row(2, "COMPLETED"), row(3, "BUSY")]);
        assert!(!path.with_extension("csv.partial").exists());
    }

    #[test]
    fn formula_cells_are_written_as_text_and_read_back_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let row = Row {
            line: 2,
            number: "+4930123".into(),
            attempts: 1,
            outcome: Outcome {
                state: "COMPLETED".into(),
                result: "=HYPERLINK(\"http://x\")".into(),
                reason: "@SUM(A1)".into(),
                digits: "-1".into(),
                call_id: "'quoted".into(),
                answered_at: Some("\tx".into()),
                ..Outcome::default()
            },
        };
        write(&path, &mut [row.clone()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let cells: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
        for cell in cells {
            let bare = cell.trim_start_matches('"');
            assert!(
                !bare.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell} in {text}"
            );
        }
        assert!(text.contains("'=HYPERLINK"), "{text}");
        assert!(text.contains("''quoted"), "{text}");
        assert_eq!(read(&path).unwrap(), vec![row]);
    }
}
