//! Reading typed fields out of a decoded JSON object, with the leniency docs/protocol.md §3 asks
//! for (numbers or strings for `cseq` and codes, `"true"` strings for flags, SDP as text or
//! object).

use serde_json::{Map, Value};

use super::error::DecodeError;
use super::values::{CallId, Cseq, Sdp, SipCode};

/// Parses one text frame; every frame is a JSON object (§2).
pub(crate) fn parse_object(text: &str) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_str(text)? {
        Value::Object(map) => Ok(map),
        _ => Err(DecodeError::NotAnObject),
    }
}

/// Whether a reserved key "counts" (§3): present with a value that is not null, false, `"false"`
/// or empty. PBXs often send the string `"true"`, and some send `false` for keys that do not apply.
pub(crate) fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !(s.is_empty() || s == "false"),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// The fields of one frame, named so that every error says which frame and field were wrong.
pub(crate) struct Fields<'a> {
    frame: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(frame: &'static str, map: &'a Map<String, Value>) -> Self {
        Self { frame, map }
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn missing(&self, field: &'static str) -> DecodeError {
        DecodeError::Missing {
            frame: self.frame,
            field,
        }
    }

    fn invalid(&self, field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::Invalid {
            frame: self.frame,
            field,
            expected,
        }
    }

    pub(crate) fn opt_string(&self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // Extensions and numbers are sometimes sent as JSON numbers.
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(self.invalid(field, "a string")),
        }
    }

    pub(crate) fn string(&self, field: &'static str) -> Result<String, DecodeError> {
        self.opt_string(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn opt_call_id(&self, field: &'static str) -> Result<Option<CallId>, DecodeError> {
        match self.opt_string(field)? {
            None => Ok(None),
            Some(id) => CallId::new(id)
                .map(Some)
                .ok_or_else(|| self.invalid(field, "a non-empty call id")),
        }
    }

    pub(crate) fn call_id(&self, field: &'static str) -> Result<CallId, DecodeError> {
        self.opt_call_id(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn opt_cseq(&self, field: &'static str) -> Result<Option<Cseq>, DecodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => Cseq::from_json(v)
                .map(Some)
                .ok_or_else(|| self.invalid(field, "a non-negative number or a string")),
        }
    }

    pub(crate) fn cseq(&self, field: &'static str) -> Result<Cseq, DecodeError> {
        self.opt_cseq(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn opt_number<T: TryFrom<u64>>(
        &self,
        field: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        let number = match self.get(field) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        number
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| self.invalid(field, "a number in range"))
    }

    pub(crate) fn opt_code(&self, field: &'static str) -> Result<Option<SipCode>, DecodeError> {
        Ok(self.opt_number::<u16>(field)?.map(SipCode))
    }

    /// A boolean that may arrive as `true`/`false` or `"true"`/`"false"`; absent means false.
    pub(crate) fn flag(&self, field: &'static str) -> Result<bool, DecodeError> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" => Ok(true),
            Some(Value::String(s)) if s == "false" || s.is_empty() => Ok(false),
            Some(_) => Err(self.invalid(field, "true or false")),
        }
    }

    /// A string field that must be one of `options`; `expected` lists them for the error.
    pub(crate) fn choice<T: Copy>(
        &self,
        field: &'static str,
        options: &[(&str, T)],
        expected: &'static str,
    ) -> Result<T, DecodeError> {
        let value = self.string(field)?;
        options
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, choice)| *choice)
            .ok_or_else(|| self.invalid(field, expected))
    }

    pub(crate) fn sdp(&self, field: &'static str) -> Result<Sdp, DecodeError> {
        let value = self.get(field).ok_or_else(|| self.missing(field))?;
        Sdp::from_json(value).ok_or_else(|| self.invalid(field, "SDP text or {type, sdp}"))
    }

    /// A list of strings; absent means empty.
    pub(crate) fn string_list(&self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(self.invalid(field, "a list of strings")),
                })
                .collect(),
            Some(_) => Err(self.invalid(field, "a list of strings")),
        }
    }

    /// A list of objects, each read with `read`; absent means empty.
    pub(crate) fn object_list<T>(
        &self,
        field: &'static str,
        read: impl Fn(Fields<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => read(Fields::new(self.frame, map)),
                    _ => Err(self.invalid(field, "a list of objects")),
                })
                .collect(),
            Some(_) => Err(self.invalid(field, "a list of objects")),
        }
    }

    /// An object field, read with `read`.
    pub(crate) fn object<T>(
        &self,
        field: &'static str,
        read: impl Fn(Fields<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Object(map)) => read(Fields::new(self.frame, map)),
            Some(_) => Err(self.invalid(field, "an object")),
        }
    }

    pub(crate) fn raw(&self, field: &str) -> Option<&'a Value> {
        self.get(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn reserved_key_truthiness() {
        assert!(is_set(Some(&json!("true"))));
        assert!(is_set(Some(&json!(true))));
        assert!(is_set(Some(&json!("v=0"))));
        assert!(is_set(Some(&json!({"sdp": "v=0"}))));
        assert!(!is_set(None));
        assert!(!is_set(Some(&json!(null))));
        assert!(!is_set(Some(&json!(false))));
        assert!(!is_set(Some(&json!("false"))));
        assert!(!is_set(Some(&json!(""))));
        assert!(!is_set(Some(&json!({}))));
    }

    #[test]
    fn codes_accept_numbers_and_numeric_strings() {
        let m = map(json!({"a": 486, "b": "183", "c": "x", "d": 70000}));
        let f = Fields::new("sdp", &m);
        assert_eq!(f.opt_code("a").unwrap(), Some(SipCode::BUSY_HERE));
        assert_eq!(f.opt_code("b").unwrap(), Some(SipCode::SESSION_PROGRESS));
        assert!(f.opt_code("c").is_err());
        assert!(f.opt_code("d").is_err());
        assert_eq!(f.opt_code("zz").unwrap(), None);
    }

    #[test]
    fn flags_accept_strings_and_booleans() {
        let m = map(json!({"a": "true", "b": false, "c": "false", "d": 1}));
        let f = Fields::new("x", &m);
        assert!(f.flag("a").unwrap());
        assert!(!f.flag("b").unwrap());
        assert!(!f.flag("c").unwrap());
        assert!(!f.flag("missing").unwrap());
        assert!(f.flag("d").is_err());
    }

    #[test]
    fn errors_name_frame_and_field() {
        let m = map(json!({"callid": [1]}));
        let f = Fields::new("bye", &m);
        let err = f.string("cseq").unwrap_err().to_string();
        assert!(err.contains("bye") && err.contains("cseq"), "{err}");
        let err = f.call_id("callid").unwrap_err().to_string();
        assert!(err.contains("callid"), "{err}");
    }
}
