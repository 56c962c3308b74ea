//! Text from the wire, a file or a script on its way into a file name or a log line. A PBX
//! chooses its call ids and a contact list its names: such text never becomes a path or log
//! syntax as it is. File names keep a safe, short stem and get a suffix of our own; log lines
//! show escaped, shortened values, and the log writer escapes whatever slips through.

use std::fmt;
use std::io::{self, Write};

/// The longest stem a file name takes from outside text.
pub const MAX_STEM_BYTES: usize = 64;
/// The most characters of an outside value a log line shows.
const MAX_LOGGED_CHARS: usize = 96;

/// A file-name stem made from `raw`: ASCII letters, digits, `-` and `_` kept, every other
/// character (`/`, `.`, NUL, newlines …) made `_`, at most [`MAX_STEM_BYTES`], never empty.
/// It is one plain path component whatever `raw` holds, and cannot name `.` or `..`.
pub fn file_stem(raw: &str) -> String {
    let stem: String = raw
        .chars()
        .take(MAX_STEM_BYTES)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "_".to_owned()
    } else {
        stem
    }
}

/// `<stem>-<8 random hex digits>.<extension>`: a name no outside party can predict or repeat,
/// so two calls with one id never share a file. Callers still create it with create-new
/// semantics; the suffix only makes a clash unlikely, not harmless.
pub fn unique_file_name(raw: &str, extension: &str) -> String {
    format!(
        "{}-{:08x}.{extension}",
        file_stem(raw),
        rand::random::<u32>()
    )
}

/// An outside value as a log line may show it: control characters and quotes escaped (as
/// `{:?}` does), cut after [`MAX_LOGGED_CHARS`] characters with the full length noted. Use it
/// wherever a call id, a number or a name from the wire is logged.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(MAX_LOGGED_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "…(+{} bytes)", self.0.len() - at)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Shorthand for [`Escaped`].
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// A log writer that keeps one record on one line: every control character inside a record
/// (a newline or carriage return from an error message or a value nobody escaped) is written
/// as an escape; only the record's final newline stays. With `keep_ansi` (a terminal) the
/// escape character passes, so the formatter's colours still work.
pub struct OneLineWriter<W> {
    inner: W,
    keep_ansi: bool,
}

impl<W: Write> OneLineWriter<W> {
    pub fn new(inner: W, keep_ansi: bool) -> Self {
        Self { inner, keep_ansi }
    }
}

impl<W: Write> Write for OneLineWriter<W> {
    /// The formatter hands over one whole record per call, ending in `\n`.
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        let (body, end) = match record.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (record, &b""[..]),
        };
        let mut line = Vec::with_capacity(record.len() + 8);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b'\t' => line.push(b'\t'),
                0x1b if self.keep_ansi => line.push(byte),
                0x00..=0x1f | 0x7f => line.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
                _ => line.push(byte),
            }
        }
        line.extend_from_slice(end);
        self.inner.write_all(&line)?;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Component, Path};

    #[test]
    fn stems_are_one_plain_component() {
        for raw in [
            "../../etc/x",
            "/abs/path",
            "..",
            ".",
            "",
            "a\nb",
            "nul\0byte",
            "ü",
        ] {
            let stem = file_stem(raw);
            let components: Vec<_> = Path::new(&stem).components().collect();
            assert_eq!(components.len(), 1, "{raw:?} → {stem:?}");
            assert!(matches!(components[0], Component::Normal(_)), "{raw:?}");
            assert!(!stem.starts_with('.'), "{raw:?} → {stem:?}");
        }
        assert_eq!(file_stem("3f2a-Bc_9"), "3f2a-Bc_9");
        assert_eq!(file_stem(&"x".repeat(1 << 20)).len(), MAX_STEM_BYTES);
    }

    #[test]
    fn unique_names_differ_for_one_id() {
        let a = unique_file_name("../id", "wav");
        let b = unique_file_name("../id", "wav");
        assert_ne!(a, b);
        assert!(a.starts_with("___id-") && a.ends_with(".wav"), "{a}");
    }

    #[test]
    fn escaped_values_have_no_control_characters_and_are_short() {
        let shown = escaped("abc\nERROR forged\r\u{1b}[31m").to_string();
        assert_eq!(shown, "abc\\nERROR forged\\r\\u{1b}[31m");
        let long = escaped(&"y".repeat(1000)).to_string();
        assert!(long.starts_with(&"y".repeat(MAX_LOGGED_CHARS)), "{long}");
        assert!(long.ends_with("…(+904 bytes)"), "{long}");
    }

    #[test]
    fn the_writer_keeps_a_record_on_one_line() {
        let mut out = Vec::new();
        let mut writer = OneLineWriter::new(&mut out, false);
        writer
            .write_all(b"INFO call a\nERROR forged\r\x1b[0m\n")
            .unwrap();
        assert_eq!(out, b"INFO call a\\nERROR forged\\r\\x1b[0m\n");
        let mut coloured = Vec::new();
        OneLineWriter::new(&mut coloured, true)
            .write_all(b"\x1b[32mINFO\x1b[0m x\ny\n")
            .unwrap();
        assert_eq!(coloured, b"\x1b[32mINFO\x1b[0m x\\ny\n");
    }
}
