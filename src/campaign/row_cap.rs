//! A contact list is read one CSV record at a time, but a CSV reader buffers a whole record:
//! one row of hundreds of megabytes would be held in memory before anything could refuse it.
//! [`RowCap`] sits between the file and the CSV reader and drops every record larger than a
//! cap as it streams by; the dropped records' lines are kept for the report. It also tells the
//! line each record it passes starts on (the CSV reader's own positions count blank lines
//! before a record as part of it).

use std::collections::VecDeque;
use std::io::{self, Read};

/// The largest CSV record (row) read.
pub const MAX_ROW_BYTES: usize = 64 << 10;

/// Where the scanner is within a record, quoting as CSV readers do (RFC 4180: a field that
/// starts with `"` runs to the next lone `"`; `""` inside it is a quote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: the end of the field, or the first half of `""`.
    QuoteInQuoted,
}

/// A reader that passes CSV records of at most `max` bytes and blanks the rest.
pub struct RowCap<R> {
    inner: R,
    max: usize,
    quoting: Quoting,
    /// The record being read (up to `max` bytes).
    record: Vec<u8>,
    /// The record outgrew `max`: the rest of it is skipped.
    dropping: bool,
    /// The line the current record started on, and the line being read (1-based).
    record_line: u64,
    line: u64,
    /// Bytes ready for the CSV reader, and how many of them it has taken.
    ready: Vec<u8>,
    taken: usize,
    at_end: bool,
    skipped: Vec<u64>,
    /// Where the records passed on and not yet claimed with [`RowCap::next_line`] start.
    lines: VecDeque<u64>,
}

impl<R: Read> RowCap<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            quoting: Quoting::FieldStart,
            record: Vec::new(),
            dropping: false,
            record_line: 1,
            line: 1,
            ready: Vec::new(),
            taken: 0,
            at_end: false,
            skipped: Vec::new(),
            lines: VecDeque::new(),
        }
    }

    /// The line the next record the CSV reader gets starts on (call once per record read,
    /// the header included).
    pub fn next_line(&mut self) -> Option<u64> {
        self.lines.pop_front()
    }

    /// The lines where the records that were too large started.
    pub fn skipped(&self) -> &[u64] {
        &self.skipped
    }

    fn push(&mut self, byte: u8) {
        if !self.dropping && self.record.len() >= self.max {
            self.dropping = true;
            self.record = Vec::new();
        }
        if !self.dropping {
            self.record.push(byte);
        }
    }

    /// The record ended (at a line break outside quotes, or at the end of the file).
    fn end_record(&mut self) {
        if self.dropping {
            self.dropping = false;
            self.skipped.push(self.record_line);
        } else {
            // A line break alone is no record to a CSV reader.
            if !matches!(self.record.as_slice(), [] | [b'\n' | b'\r']) {
                self.lines.push_back(self.record_line);
            }
            self.ready.append(&mut self.record);
        }
        self.quoting = Quoting::FieldStart;
        self.record_line = self.line;
    }

    fn scan(&mut self, byte: u8) {
        if self.quoting == Quoting::QuoteInQuoted {
            if byte == b'"' {
                self.quoting = Quoting::Quoted;
                self.push(byte);
                return;
            }
            self.quoting = Quoting::Unquoted;
        }
        self.push(byte);
        if byte == b'\n' {
            self.line += 1;
        }
        match (self.quoting, byte) {
            (Quoting::Quoted, b'"') => self.quoting = Quoting::QuoteInQuoted,
            (Quoting::Quoted, _) => {}
            (_, b'\n' | b'\r') => self.end_record(),
            (_, b',') => self.quoting = Quoting::FieldStart,
            (Quoting::FieldStart, b'"') => self.quoting = Quoting::Quoted,
            _ => self.quoting = Quoting::Unquoted,
        }
    }

    /// Reads from the file until some bytes are ready or the file ends.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        while self.taken == self.ready.len() && !self.at_end {
            self.ready.clear();
            self.taken = 0;
            let read = match self.inner.read(&mut chunk) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if read == 0 {
                self.at_end = true;
                if !self.record.is_empty() || self.dropping {
                    self.end_record();
                }
            }
            for &byte in &chunk[..read] {
                self.scan(byte);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for RowCap<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.fill()?;
        let ready = &self.ready[self.taken..];
        let n = ready.len().min(out.len());
        out[..n].copy_from_slice(&ready[..n]);
        self.taken += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What passes, the records' lines, the dropped records' lines.
    fn capped(text: &str, max: usize) -> (String, Vec<u64>, Vec<u64>) {
        let mut reader = RowCap::new(text.as_bytes(), max);
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        let lines = std::iter::from_fn(|| reader.next_line()).collect();
        (out, lines, reader.skipped().to_vec())
    }

    #[test]
    fn small_records_pass_unchanged_with_their_lines() {
        let text = "number,name\n\n700,\"Ann, \"\"A\"\"\nSmith\"\r\n701,Bob";
        assert_eq!(capped(text, 100), (text.to_owned(), vec![1, 3, 5], vec![]));
    }

    #[test]
    fn large_records_are_dropped() {
        let big = "x".repeat(50);
        let text = format!("number,name\n700,{big}\n701,\"{big}\n{big}\"\n702,ok\n");
        let (out, lines, skipped) = capped(&text, 20);
        assert_eq!(out, "number,name\n702,ok\n");
        assert_eq!(lines, [1, 5]);
        assert_eq!(skipped, [2, 3]);
    }

    #[test]
    fn a_large_last_record_without_a_line_break_is_dropped() {
        let (out, _, skipped) = capped(&format!("number\n{}", "9".repeat(100)), 20);
        assert_eq!(out, "number\n");
        assert_eq!(skipped, [2]);
    }

    #[test]
    fn memory_stays_bounded_for_a_huge_record() {
        let huge = std::io::repeat(b'7').take(50 << 20);
        let mut reader = RowCap::new(b"number\n".chain(huge), MAX_ROW_BYTES);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"number\n");
        assert_eq!(reader.skipped(), [2]);
        assert!(reader.record.capacity() <= 2 * MAX_ROW_BYTES);
    }
}
