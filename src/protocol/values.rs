//! Small value types that appear inside many frames: call ids, `cseq`, SIP codes and SDP bodies.

use std::fmt;

use serde_json::{Value, json};

/// A call id as it appears on the wire.
///
/// Ours are 32 lower-hex characters (docs/protocol.md §4), but the PBX may use any string for its
/// own calls (the modern dialect adopts the PBX's id, §6), so decoding accepts any non-empty
/// string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(String);

impl CallId {
    /// A fresh id for a call we place: 128 random bits as 32 lower-hex characters.
    pub fn random() -> Self {
        Self::from_bits(rand::random::<u128>())
    }

    /// The id whose hex form is `bits`; lets tests and seeded tools make ids deterministically.
    pub fn from_bits(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    /// Wraps an id received from the PBX (or a test); `None` if it is empty.
    pub fn new(id: impl Into<String>) -> Option<Self> {
        let id = id.into();
        (!id.is_empty()).then_some(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `cseq` value. The PBX sends numbers or strings; we must echo it in the form received (§3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cseq {
    Number(u64),
    Text(String),
}

impl Cseq {
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Cseq::Number(n) => json!(n),
            Cseq::Text(s) => json!(s),
        }
    }

    pub(crate) fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_u64().map(Cseq::Number),
            Value::String(s) => Some(Cseq::Text(s.clone())),
            _ => None,
        }
    }
}

/// A SIP status code as carried by `sdp`, `bye` and `sip-busy` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipCode(pub u16);

impl SipCode {
    pub const RINGING: SipCode = SipCode(180);
    pub const SESSION_PROGRESS: SipCode = SipCode(183);
    pub const OK: SipCode = SipCode(200);
    pub const NOT_FOUND: SipCode = SipCode(404);
    pub const UNSUPPORTED_MEDIA_TYPE: SipCode = SipCode(415);
    pub const TEMPORARILY_UNAVAILABLE: SipCode = SipCode(480);
    pub const BUSY_HERE: SipCode = SipCode(486);
    pub const REQUEST_TERMINATED: SipCode = SipCode(487);
    pub const NOT_ACCEPTABLE_HERE: SipCode = SipCode(488);
    pub const SERVER_ERROR: SipCode = SipCode(500);
    pub const BUSY_EVERYWHERE: SipCode = SipCode(600);
    pub const DECLINE: SipCode = SipCode(603);

    /// 2xx: the call was answered.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl fmt::Display for SipCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which side of the offer/answer exchange an SDP body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

impl SdpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        }
    }
}

/// An SDP body. The wire carries either the bare text or `{"type":…,"sdp":…}` (§3); the bare form
/// says nothing about its kind, so `kind` is only known when the sender gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp {
    pub kind: Option<SdpKind>,
    pub text: String,
}

impl Sdp {
    pub fn offer(text: impl Into<String>) -> Self {
        Self {
            kind: Some(SdpKind::Offer),
            text: text.into(),
        }
    }

    pub fn answer(text: impl Into<String>) -> Self {
        Self {
            kind: Some(SdpKind::Answer),
            text: text.into(),
        }
    }

    /// The object form, which is what we always send (§3).
    pub(crate) fn to_json(&self) -> Value {
        match self.kind {
            Some(kind) => json!({ "type": kind.as_str(), "sdp": self.text }),
            None => json!({ "sdp": self.text }),
        }
    }

    pub(crate) fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::String(text) => Some(Self {
                kind: None,
                text: text.clone(),
            }),
            Value::Object(map) => {
                let text = map.get("sdp")?.as_str()?.to_owned();
                let kind = match map.get("type").and_then(Value::as_str) {
                    Some("offer") => Some(SdpKind::Offer),
                    Some("answer") => Some(SdpKind::Answer),
                    _ => None,
                };
                Some(Self { kind, text })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_call_ids_are_32_lower_hex_and_distinct() {
        let a = CallId::random();
        let b = CallId::random();
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn call_id_from_small_bits_keeps_leading_zeros() {
        assert_eq!(CallId::from_bits(0xab).as_str(), format!("{:0>32}", "ab"));
    }

    #[test]
    fn empty_call_id_is_refused() {
        assert_eq!(CallId::new(""), None);
    }

    #[test]
    fn cseq_keeps_its_wire_form() {
        assert_eq!(Cseq::from_json(&json!(7)), Some(Cseq::Number(7)));
        assert_eq!(Cseq::from_json(&json!("7")), Some(Cseq::Text("7".into())));
        assert_eq!(Cseq::Number(7).to_json(), json!(7));
        assert_eq!(Cseq::Text("7".into()).to_json(), json!("7"));
        assert_eq!(Cseq::from_json(&json!(-1)), None);
        assert_eq!(Cseq::from_json(&json!([1])), None);
    }

    #[test]
    fn sdp_accepts_string_and_object_and_sends_object() {
        let bare = Sdp::from_json(&json!("v=0")).unwrap();
        assert_eq!(bare.kind, None);
        let obj = Sdp::from_json(&json!({"type": "answer", "sdp": "v=0"})).unwrap();
        assert_eq!(obj, Sdp::answer("v=0"));
        assert_eq!(obj.to_json(), json!({"type": "answer", "sdp": "v=0"}));
        assert_eq!(Sdp::from_json(&json!({"type": "offer"})), None);
        assert_eq!(Sdp::from_json(&json!(3)), None);
    }

    #[test]
    fn sip_code_classes() {
        assert!(SipCode::OK.is_success());
        assert!(!SipCode::SESSION_PROGRESS.is_success());
        assert!(!SipCode::BUSY_HERE.is_success());
    }
}
