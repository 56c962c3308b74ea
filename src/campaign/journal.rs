//! The campaign journal: an SQLite file that records every attempt before it is dialled and its
//! outcome after, so a campaign killed at any moment resumes where it stopped and never calls
//! anyone twice.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use thiserror::Error;

use super::contacts::Contact;
use super::outcome::Outcome;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("journal {0} belongs to another contact list; give another --journal or the same list")]
    OtherList(String),
}

/// A contact as the journal knows it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub contact: Contact,
    pub attempts: u32,
    /// Unix milliseconds before which it must not be dialled (retries).
    pub next_at: u64,
    /// The last attempt's outcome, once it has one.
    pub outcome: Option<Outcome>,
    pub done: bool,
}

pub struct Journal {
    path: String,
    db: Connection,
}

/// SQLite stores integers as i64; lines and times fit.
fn sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS contacts (
        line INTEGER PRIMARY KEY,
        number TEXT NOT NULL,
        vars TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'dialling', 'done')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL DEFAULT 0,
        outcome TEXT
    );
    CREATE TABLE IF NOT EXISTS attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line INTEGER NOT NULL,
        number TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        outcome TEXT
    );
";

impl Journal {
    /// Opens (or creates) the journal for `contacts`, identified by `fingerprint`. Attempts
    /// left in progress by a killed run are closed as INTERRUPTED; returns how many.
    pub fn open(
        path: &Path,
        contacts: &[Contact],
        fingerprint: &str,
    ) -> Result<(Self, usize), JournalError> {
        let shown = path.display().to_string();
        let sqlite = |source| JournalError::Sqlite {
            path: shown.clone(),
            source,
        };
        let mut db = Connection::open(path).map_err(sqlite)?;
        db.execute_batch(SCHEMA).map_err(sqlite)?;
        let known: Option<String> = db
            .query_row("SELECT value FROM meta WHERE key = 'list'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sqlite)?;
        match known {
            Some(known) if known != fingerprint => return Err(JournalError::OtherList(shown)),
            Some(_) => {}
            None => {
                let tx = db.transaction().map_err(sqlite)?;
                tx.execute("INSERT INTO meta VALUES ('list', ?1)", [fingerprint])
                    .map_err(sqlite)?;
                for contact in contacts {
                    let vars = serde_json::to_string(&contact.vars).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO contacts (line, number, vars, status) VALUES (?1, ?2, ?3, 'pending')",
                        params![sql(contact.line), contact.number, vars],
                    )
                    .map_err(sqlite)?;
                }
                tx.commit().map_err(sqlite)?;
            }
        }
        let journal = Self { path: shown, db };
        let recovered = journal.recover()?;
        Ok((journal, recovered))
    }

    fn error(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// A killed run may have been in a call: those contacts are done (never redialled).
    fn recover(&self) -> Result<usize, JournalError> {
        let interrupted = serde_json::to_string(&Outcome::interrupted()).unwrap_or_default();
        let now = now_ms();
        let count = self
            .db
            .execute(
                "UPDATE contacts SET status = 'done', outcome = ?1 WHERE status = 'dialling'",
                [&interrupted],
            )
            .map_err(|e| self.error(e))?;
        self.db
            .execute(
                "UPDATE attempts SET ended_at = ?1, outcome = ?2 WHERE ended_at IS NULL",
                params![sql(now), interrupted],
            )
            .map_err(|e| self.error(e))?;
        Ok(count)
    }

    /// Every contact, in list order.
    pub fn entries(&self) -> Result<Vec<Entry>, JournalError> {
        let mut statement = self
            .db
            .prepare("SELECT line, number, vars, status, attempts, next_at, outcome FROM contacts ORDER BY line")
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                let vars: String = row.get(2)?;
                let status: String = row.get(3)?;
                let outcome: Option<String> = row.get(6)?;
                Ok(Entry {
                    contact: Contact {
                        line: unsql(row.get(0)?),
                        number: row.get(1)?,
                        vars: serde_json::from_str(&vars).unwrap_or_default(),
                    },
                    attempts: row.get(4)?,
                    next_at: unsql(row.get(5)?),
                    outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
                    done: status == "done",
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Records that `line` is about to be dialled, an attempt started at `started_at` (unix
    /// ms); returns the attempt's id. Written (and synced) before the call goes out.
    pub fn start(&mut self, line: u64, started_at: u64) -> Result<i64, JournalError> {
        let path = self.path.clone();
        let sqlite = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(sqlite)?;
        tx.execute(
            "UPDATE contacts SET status = 'dialling', attempts = attempts + 1 WHERE line = ?1",
            [sql(line)],
        )
        .map_err(sqlite)?;
        tx.execute(
            "INSERT INTO attempts (line, number, started_at) SELECT line, number, ?2 FROM contacts WHERE line = ?1",
            params![sql(line), sql(started_at)],
        )
        .map_err(sqlite)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sqlite)?;
        Ok(id)
    }

    /// Records how attempt `id` of `line` ended; `retry_at` (unix ms) puts the contact back in
    /// the queue, otherwise it is done.
    pub fn finish(
        &mut self,
        id: i64,
        line: u64,
        outcome: &Outcome,
        retry_at: Option<u64>,
    ) -> Result<(), JournalError> {
        let path = self.path.clone();
        let sqlite = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string(outcome).unwrap_or_default();
        let tx = self.db.transaction().map_err(sqlite)?;
        tx.execute(
            "UPDATE attempts SET ended_at = ?1, outcome = ?2 WHERE id = ?3",
            params![sql(now_ms()), text, id],
        )
        .map_err(sqlite)?;
        match retry_at {
            Some(at) => tx.execute(
                "UPDATE contacts SET status = 'pending', next_at = ?1, outcome = ?2 WHERE line = ?3",
                params![sql(at), text, sql(line)],
            ),
            None => tx.execute(
                "UPDATE contacts SET status = 'done', outcome = ?1 WHERE line = ?2",
                params![text, sql(line)],
            ),
        }
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)
    }

    /// When each contact (by line) was dialled, unix ms: what a daily cap counts.
    pub fn attempt_starts(&self) -> Result<HashMap<u64, Vec<u64>>, JournalError> {
        let mut statement = self
            .db
            .prepare("SELECT line, started_at FROM attempts ORDER BY id")
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| Ok((unsql(row.get(0)?), unsql(row.get(1)?))))
            .map_err(|e| self.error(e))?;
        let mut starts: HashMap<u64, Vec<u64>> = HashMap::new();
        for row in rows {
            let (line, at) = row.map_err(|e| self.error(e))?;
            starts.entry(line).or_default().push(at);
        }
        Ok(starts)
    }

    /// Every attempt's number, in order (for reports).
    pub fn attempted_numbers(&self) -> Result<Vec<String>, JournalError> {
        let mut statement = self
            .db
            .prepare("SELECT number FROM attempts ORDER BY id")
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| row.get(0))
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contacts() -> Vec<Contact> {
        (0..3)
            .map(|i| Contact {
                line: i + 2,
                number: format!("70{i}"),
                vars: [("name".to_owned(), format!("n{i}"))].into(),
            })
            .collect()
    }

    #[test]
    fn attempts_are_recorded_and_a_killed_run_is_recovered_without_redialling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        {
            let (mut journal, recovered) = Journal::open(&path, &contacts(), "list-1").unwrap();
            assert_eq!(recovered, 0);
            let first = journal.start(2, now_ms()).unwrap();
            let done = Outcome {
                state: "COMPLETED".into(),
                ..Outcome::default()
            };
            journal.finish(first, 2, &done, None).unwrap();
            journal.start(3, now_ms()).unwrap(); // killed during this call
        }
        let (journal, recovered) = Journal::open(&path, &contacts(), "list-1").unwrap();
        assert_eq!(recovered, 1);
        let entries = journal.entries().unwrap();
        assert!(entries[0].done && entries[1].done && !entries[2].done);
        assert_eq!(entries[1].outcome.as_ref().unwrap().state, "INTERRUPTED");
        assert_eq!(entries[2].contact.vars["name"], "n2");
        assert_eq!(journal.attempted_numbers().unwrap(), ["700", "701"]);
        let starts = journal.attempt_starts().unwrap();
        assert_eq!((starts[&2].len(), starts[&3].len()), (1, 1));
        assert!(!starts.contains_key(&4));
    }

    #[test]
    fn retries_go_back_to_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(&dir.path().join("j"), &contacts(), "x").unwrap();
        let id = journal.start(4, now_ms()).unwrap();
        let busy = Outcome {
            state: "BUSY".into(),
            ..Outcome::default()
        };
        journal.finish(id, 4, &busy, Some(12345)).unwrap();
        let entry = journal
            .entries()
            .unwrap()
            .into_iter()
            .find(|e| e.contact.line == 4)
            .unwrap();
        assert!(!entry.done);
        assert_eq!((entry.attempts, entry.next_at), (1, 12345));
    }

    #[test]
    fn another_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        Journal::open(&path, &contacts(), "a").unwrap();
        assert!(matches!(
            Journal::open(&path, &contacts(), "b"),
            Err(JournalError::OtherList(_))
        ));
    }
}
