//! The do-not-call list (`--dnc list.csv`): numbers a campaign never dials. One number per line
//! in the first column, under an optional `number` header; other columns are ignored, and so
//! are spaces, dashes, dots and brackets within a number. A contact whose number is on it is
//! skipped with its line, like any other refused row.

use std::collections::HashMap;
use std::path::Path;

use super::row_cap::{MAX_ROW_BYTES, RowCap};

/// The most numbers a list may hold (about 1 GiB of memory at most).
const MAX_NUMBERS: usize = 10_000_000;

/// Numbers not to call, with the line each is on.
#[derive(Debug, Default)]
pub struct DoNotCall {
    /// The file, for messages.
    pub file: String,
    numbers: HashMap<String, u64>,
    /// Lines that hold no phone number (reported, not fatal).
    pub unreadable: Vec<u64>,
}

/// `+49 (30) 123-45.6` → `+4930123456`: digits, and a leading `+`.
pub fn normalize(number: &str) -> String {
    let mut out = String::with_capacity(number.len());
    for (i, c) in number.trim().chars().enumerate() {
        match c {
            '+' if i == 0 => out.push(c),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            // Anything else makes it no number at all.
            _ => return String::new(),
        }
    }
    if out.trim_start_matches('+').is_empty() {
        String::new()
    } else {
        out
    }
}

impl DoNotCall {
    /// Reads `path` (a regular file); an unreadable file is an error, so a campaign never runs
    /// without the list it was given.
    pub fn load(path: &Path) -> Result<Self, String> {
        let file = crate::input_file::open_regular(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut list =
            Self::parse(file).map_err(|e| format!("{} (do-not-call list): {e}", path.display()))?;
        list.file = path.display().to_string();
        Ok(list)
    }

    /// [`DoNotCall::load`] on any reader.
    pub fn parse(reader: impl std::io::Read) -> Result<Self, String> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(RowCap::new(reader, MAX_ROW_BYTES));
        let mut list = Self::default();
        let mut record = csv::StringRecord::new();
        loop {
            let read = csv.read_record(&mut record);
            let line = csv.get_mut().next_line().unwrap_or(0);
            match read {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if e.is_io_error() => return Err(e.to_string()),
                Err(_) => {
                    list.unreadable.push(line);
                    continue;
                }
            }
            let cell = record.get(0).unwrap_or_default().trim();
            if cell.is_empty() || (line == 1 && cell.eq_ignore_ascii_case("number")) {
                continue;
            }
            let number = normalize(cell);
            if number.is_empty() {
                list.unreadable.push(line);
                continue;
            }
            if list.numbers.len() >= MAX_NUMBERS {
                return Err(format!(
                    "more than {MAX_NUMBERS} numbers; split the list or filter the contacts first"
                ));
            }
            list.numbers.entry(number).or_insert(line);
        }
        list.unreadable.extend(csv.get_ref().skipped());
        list.unreadable.sort_unstable();
        Ok(list)
    }

    /// The line `number` is listed on, if it is.
    pub fn line_of(&self, number: &str) -> Option<u64> {
        self.numbers.get(&normalize(number)).copied()
    }

    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_however_they_are_written() {
        let list = DoNotCall::parse(
            "number,note\n+49 (30) 123-45.6,moved\n\n700\nnot a number\n701,\"a,b\"\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.line_of("+4930123456"), Some(2));
        assert_eq!(list.line_of("700"), Some(4));
        assert_eq!(list.line_of("701"), Some(6));
        assert_eq!(list.line_of("702"), None);
        assert_eq!(list.unreadable, vec![5]);
    }

    #[test]
    fn a_list_without_header_works_too() {
        let list = DoNotCall::parse("700\n701\n".as_bytes()).unwrap();
        assert_eq!(list.line_of("700"), Some(1));
        assert_eq!(list.line_of("701"), Some(2));
    }

    #[test]
    fn normalize_keeps_digits_and_a_leading_plus() {
        assert_eq!(normalize(" +1 (555) 010-99 "), "+155501099");
        assert_eq!(normalize("55+5"), "");
        assert_eq!(normalize("12a"), "");
        assert_eq!(normalize("+"), "");
    }
}
