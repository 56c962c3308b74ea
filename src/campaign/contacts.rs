//! The contact list: a CSV file whose first column is `number` and whose other columns become
//! the call's `vars`; a `tz` column (an IANA time zone such as `America/New_York`) puts the
//! contact's calling window in its own local time. Bad rows, and numbers on the do-not-call
//! list, are reported with their line and never dialled.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::dnc::DoNotCall;
use super::row_cap::{MAX_ROW_BYTES, RowCap};
use crate::config::DialPolicy;

/// The column that names a contact's time zone.
pub const TZ_COLUMN: &str = "tz";

/// One contact to call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    /// The line of the CSV file it came from (the header is line 1).
    pub line: u64,
    pub number: String,
    pub vars: BTreeMap<String, String>,
}

impl Contact {
    /// The contact's own time zone (`tz` column), when it has one; otherwise the machine's
    /// local time applies. Checked when the list is read.
    pub fn time_zone(&self) -> Option<chrono_tz::Tz> {
        self.vars
            .get(TZ_COLUMN)
            .filter(|tz| !tz.is_empty())
            .and_then(|tz| tz.parse().ok())
    }
}

/// A row that will not be dialled, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub line: u64,
    pub number: String,
    pub problem: String,
}

/// The list, split into what will be dialled and what was refused.
#[derive(Debug, Default)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
    pub skipped: Vec<Skipped>,
}

/// A phone number: digits, optionally after one leading `+`.
fn valid_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty() && digits.len() <= 32 && digits.chars().all(|c| c.is_ascii_digit())
}

/// A CSV error without the reader's position (the row's own line is reported with it).
fn describe(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} field(s), the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_owned(),
        _ => error.to_string(),
    }
}

/// What keeps a row from being dialled besides its own faults: the bot's `allow_dial` and the
/// do-not-call list.
#[derive(Clone, Copy)]
pub struct Screen<'a> {
    pub allow: &'a DialPolicy,
    pub dnc: Option<&'a DoNotCall>,
}

/// Reads `path` (a regular file); rows with a malformed line, a bad number, a number already
/// listed, one the bot may not dial or one on the do-not-call list, an unknown time zone, and
/// rows over 64 KiB, are skipped with their line.
pub fn load(path: &Path, screen: Screen<'_>) -> Result<ContactList, String> {
    let file =
        crate::input_file::open_regular(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(file, screen).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`load`] on any reader.
pub fn parse(reader: impl std::io::Read, screen: Screen<'_>) -> Result<ContactList, String> {
    parse_capped(reader, screen, MAX_ROW_BYTES)
}

fn parse_capped(
    reader: impl std::io::Read,
    screen: Screen<'_>,
    max_row: usize,
) -> Result<ContactList, String> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(RowCap::new(reader, max_row));
    let headers = csv.headers().map_err(|e| format!("header: {e}"))?.clone();
    let header_line = csv.get_mut().next_line().unwrap_or(u64::MAX);
    if csv
        .get_ref()
        .skipped()
        .first()
        .is_some_and(|&line| line < header_line)
    {
        return Err(format!("the header is larger than {max_row} bytes"));
    }
    if headers.get(0) != Some("number") {
        return Err("the first column must be `number`".into());
    }
    let mut list = ContactList::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        let read = csv.read_record(&mut record);
        let line = csv.get_mut().next_line().unwrap_or(0);
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if e.is_io_error() => return Err(e.to_string()),
            Err(e) => {
                list.skipped.push(Skipped {
                    line,
                    number: String::new(),
                    problem: format!("malformed line: {}", describe(&e)),
                });
                continue;
            }
        }
        let number = record.get(0).unwrap_or_default().to_owned();
        let skip = |problem: String| Skipped {
            line,
            number: number.clone(),
            problem,
        };
        if !valid_number(&number) {
            list.skipped
                .push(skip(format!("{number:?} is not a phone number")));
            continue;
        }
        if let Some(first) = seen.get(&number) {
            list.skipped.push(skip(format!(
                "duplicate of line {first}: dialled once only"
            )));
            continue;
        }
        if !screen.allow.allows(&number) {
            list.skipped
                .push(skip("not in the bot's allow_dial list".into()));
            continue;
        }
        if let Some(dnc) = screen.dnc
            && let Some(listed) = dnc.line_of(&number)
        {
            list.skipped.push(skip(format!(
                "on the do-not-call list ({}:{listed}): never dialled",
                dnc.file
            )));
            continue;
        }
        seen.insert(number.clone(), line);
        let vars: BTreeMap<String, String> = headers
            .iter()
            .zip(record.iter())
            .skip(1)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if let Some(tz) = vars.get(TZ_COLUMN).filter(|tz| !tz.is_empty())
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            list.skipped.push(skip(format!(
                "unknown time zone {tz:?} (an IANA name such as Europe/Berlin)"
            )));
            continue;
        }
        list.contacts.push(Contact { line, number, vars });
    }
    for &line in csv.get_ref().skipped() {
        list.skipped.push(Skipped {
            line,
            number: String::new(),
            problem: format!("row larger than {max_row} bytes: skipped"),
        });
    }
    list.skipped.sort_by_key(|s| s.line);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DialPattern;

    fn policy() -> DialPolicy {
        DialPolicy::new(vec![DialPattern::parse("7??").unwrap()])
    }

    fn parse(text: &str) -> Result<ContactList, String> {
        parse_capped_with(text, None, MAX_ROW_BYTES)
    }

    fn parse_capped_with(
        text: &str,
        dnc: Option<&DoNotCall>,
        max_row: usize,
    ) -> Result<ContactList, String> {
        let allow = policy();
        parse_capped(text.as_bytes(), Screen { allow: &allow, dnc }, max_row)
    }

    #[test]
    fn good_rows_become_contacts_with_vars() {
        let list = parse("number,name\n700,Ann\n701,Bob\n").unwrap();
        assert!(list.skipped.is_empty());
        assert_eq!(list.contacts.len(), 2);
        assert_eq!(list.contacts[0].line, 2);
        assert_eq!(list.contacts[1].vars["name"], "Bob");
    }

    #[test]
    fn bad_rows_are_skipped_with_their_line() {
        let text = "number,name\n700,Ann\n701\nabc,Cy\n700,Again\n900,Dee\n702,Eve\n";
        let list = parse(text).unwrap();
        let numbers: Vec<&str> = list.contacts.iter().map(|c| c.number.as_str()).collect();
        assert_eq!(numbers, ["700", "702"]);
        let problems: Vec<(u64, &str)> = list
            .skipped
            .iter()
            .map(|s| (s.line, s.problem.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            problems,
            [
                (3, "malformed line"),
                (4, "\"abc\" is not a phone number"),
                (5, "duplicate of line 2"),
                (6, "not in the bot's allow_dial list"),
            ]
        );
    }

    #[test]
    fn oversized_rows_are_skipped_with_their_line() {
        let big = "x".repeat(300);
        let text = format!("number,name\n700,Ann\n701,{big}\n702,\"{big}\n{big}\"\n703,Dee\n");
        let list = parse_capped_with(&text, None, 256).unwrap();
        let numbers: Vec<&str> = list.contacts.iter().map(|c| c.number.as_str()).collect();
        assert_eq!(numbers, ["700", "703"]);
        assert_eq!(list.contacts[1].line, 6, "lines count as in the file");
        let skipped: Vec<(u64, &str)> = list
            .skipped
            .iter()
            .map(|s| (s.line, s.problem.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (3, "row larger than 256 bytes: skipped"),
                (4, "row larger than 256 bytes: skipped")
            ]
        );
        let header = parse_capped_with(&format!("number,{big}\n700\n"), None, 256);
        assert!(header.unwrap_err().contains("header"));
    }

    #[test]
    fn the_first_column_must_be_number() {
        assert!(parse("phone\n700\n").is_err());
    }

    #[test]
    fn do_not_call_numbers_and_unknown_zones_are_skipped_with_their_line() {
        let mut dnc = DoNotCall::parse("number\n701\n703\n".as_bytes()).unwrap();
        dnc.file = "dnc.csv".into();
        let text = "number,name,tz\n700,Ann,Europe/Berlin\n701,Bob,\n702,Cy,Mars/Base\n704,Dee,\n";
        let list = parse_capped_with(text, Some(&dnc), MAX_ROW_BYTES).unwrap();
        let numbers: Vec<&str> = list.contacts.iter().map(|c| c.number.as_str()).collect();
        assert_eq!(numbers, ["700", "704"]);
        assert_eq!(
            list.contacts[0].time_zone(),
            Some(chrono_tz::Europe::Berlin)
        );
        assert_eq!(list.contacts[1].time_zone(), None, "no zone: local time");
        let skipped: Vec<(u64, &str)> = list
            .skipped
            .iter()
            .map(|s| (s.line, s.problem.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (3, "on the do-not-call list (dnc.csv:2): never dialled"),
                (
                    4,
                    "unknown time zone \"Mars/Base\" (an IANA name such as Europe/Berlin)"
                ),
            ]
        );
    }
}
