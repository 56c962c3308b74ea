//! Lengths the emulator accepts for the short fields of a client frame. A frame may be up to a
//! MiB (an SDP is long), but a call id, a number or a name of that size is an attack on what
//! the emulator keeps (call tables, the journal, presence lists): such a frame is refused whole,
//! with a logged reason, before anything is done with it.

use serde_json::Value;

use crate::protocol::ClientFrame;

/// Call ids (`callid`, `id`, `id2`).
pub const MAX_ID_BYTES: usize = 128;
/// Extension and phone numbers (`to`, `from`, `add`, `remove`, `number`).
pub const MAX_NUMBER_BYTES: usize = 64;
/// An ICE candidate line.
const MAX_CANDIDATE_BYTES: usize = 1024;
/// Any other text (names, a user agent, a `cseq`, keys of unknown frames).
pub const MAX_TEXT_BYTES: usize = 256;

fn cap(key: &str) -> Option<usize> {
    match key {
        // The SDP is bounded by the frame size alone.
        "sdp" => None,
        "candidate" => Some(MAX_CANDIDATE_BYTES),
        "callid" | "id" | "id2" => Some(MAX_ID_BYTES),
        "to" | "from" | "add" | "remove" | "number" => Some(MAX_NUMBER_BYTES),
        _ => Some(MAX_TEXT_BYTES),
    }
}

/// Why `frame` is refused: the first field longer than its cap, with both lengths.
pub fn oversized(frame: &ClientFrame) -> Option<String> {
    find(&frame.to_json(), "")
}

fn find(value: &Value, key: &str) -> Option<String> {
    match value {
        Value::String(text) => cap(key)
            .filter(|&max| text.len() > max)
            .map(|max| format!("field `{key}` has {} bytes (at most {max})", text.len())),
        Value::Array(items) => items.iter().find_map(|item| find(item, key)),
        Value::Object(map) => map.iter().find_map(|(name, value)| {
            if name.len() > MAX_TEXT_BYTES {
                return Some(format!("a field name has {} bytes", name.len()));
            }
            // The key is the frame's own for a bare SDP object's fields.
            find(value, if key == "sdp" { key } else { name })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CallId;

    #[test]
    fn short_fields_pass_and_long_ones_are_named() {
        let ok = ClientFrame::SdpPacket {
            to: "501".into(),
            callid: CallId::random(),
            offer: "v=0\r\n".repeat(10_000),
        };
        assert_eq!(oversized(&ok), None, "a long SDP is fine");
        let long_id = ClientFrame::SipAck {
            callid: CallId::new("x".repeat(1 << 20)).unwrap(),
        };
        assert_eq!(
            oversized(&long_id).unwrap(),
            format!(
                "field `callid` has {} bytes (at most {MAX_ID_BYTES})",
                1 << 20
            )
        );
        let long_number = ClientFrame::Blf {
            add: vec!["500".into(), "9".repeat(100)],
            remove: vec![],
        };
        assert!(oversized(&long_number).unwrap().contains("`add`"));
        let unknown = ClientFrame::decode(&format!(r#"{{"x": "{}"}}"#, "y".repeat(300))).unwrap();
        assert!(oversized(&unknown).unwrap().contains("`x`"));
    }
}
