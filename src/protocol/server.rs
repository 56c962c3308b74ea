//! Frames the PBX sends to a client: docs/protocol.md §5, decoded with the precedence of §3.
//!
//! Bots decode them; the emulator encodes them.

use serde_json::{Map, Value, json};

use super::candidate::{CandidateAddress, RemoteCandidate};
use super::error::DecodeError;
use super::fields::{Fields, is_set, parse_object};
use super::values::{CallId, Cseq, Sdp, SipCode};

/// Reserved keys of flat frames, in the order a decoder must test them (§3).
pub const RESERVED_KEYS: [&str; 10] = [
    "sdp",
    "invitesdp",
    "candidate",
    "bye",
    "ringtones",
    "response",
    "cancel",
    "cancelresponse",
    "info",
    "change",
];

/// SDP for a call we placed: the answer (legacy dialect) or the PBX's own offer (modern), §6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdpFrame {
    pub callid: CallId,
    pub cseq: Option<Cseq>,
    /// 180/183 early, 200 final, ≥ 400 failure.
    pub code: Option<SipCode>,
    pub reason: Option<String>,
    pub sdp: Sdp,
}

/// An incoming call with the caller's offer (choice: the offer is the value of `invitesdp`,
/// which the §3 precedence implies, since an `sdp` key would make it an `sdp` frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    pub callid: CallId,
    pub cseq: Cseq,
    pub from: String,
    pub to: String,
    pub from_user: Option<String>,
    pub from_display: Option<String>,
    pub sdp: Sdp,
}

/// The remote side hung up, or the PBX aborted the call (`code` 415: media never negotiated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bye {
    pub callid: CallId,
    pub cseq: Option<Cseq>,
    pub code: Option<SipCode>,
    pub reason: Option<String>,
}

/// A frame that only names a call: `cancel` and `cancelresponse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRef {
    pub callid: CallId,
    pub cseq: Option<Cseq>,
}

/// A call's state as the PBX reports it in `call-state` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PbxCallState {
    Alerting,
    Ringback,
    Connected,
    OnHold,
    Holding,
    Other(String),
}

impl PbxCallState {
    fn parse(state: &str) -> Self {
        match state {
            "alerting" => Self::Alerting,
            "ringback" => Self::Ringback,
            "connected" => Self::Connected,
            "onhold" => Self::OnHold,
            "holding" => Self::Holding,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Alerting => "alerting",
            Self::Ringback => "ringback",
            Self::Connected => "connected",
            Self::OnHold => "onhold",
            Self::Holding => "holding",
            Self::Other(other) => other,
        }
    }
}

/// One entry of a `call-state` list. The vendor's page names `id`, `from`, `to` and
/// `callstate`; public clients also read the `-number`/`-name` keys and the times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    pub id: String,
    /// Sent as `callstate` (the vendor's key); `state` is accepted too.
    pub state: PbxCallState,
    /// Who made the call and whom it was made to, as the PBX shows them.
    pub from: Option<String>,
    pub to: Option<String>,
    pub from_number: Option<String>,
    pub from_name: Option<String>,
    pub to_number: Option<String>,
    pub to_name: Option<String>,
    /// Start and connect times as the PBX gives them (numbers; anything else is dropped).
    pub start: Option<u64>,
    pub connect: Option<u64>,
}

/// Presence of one extension, from `user-state`, `domain-state` entries and `blf`
/// (choice: a server `blf` frame carries the same fields as `user-state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub account: String,
    /// The account's domain (the vendor's `user-state` carries it).
    pub domain: Option<String>,
    pub name: Option<String>,
    pub registered: bool,
    pub dnd: bool,
    pub chatstatus: Option<String>,
    pub kind: Option<String>,
}

/// One server→client frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Sdp(SdpFrame),
    InviteSdp(Invite),
    Candidate(RemoteCandidate),
    Bye(Bye),
    /// Undocumented payloads (§5), kept whole so they can be logged.
    Ringtones(Map<String, Value>),
    Response(Map<String, Value>),
    Cancel(CallRef),
    CancelResponse(CallRef),
    Info(Map<String, Value>),
    Change(Map<String, Value>),
    CallState(Vec<CallInfo>),
    UserState(Presence),
    /// Every account of the domain, and (when the PBX includes them) the domain's calls.
    DomainState {
        accounts: Vec<Presence>,
        calls: Option<Vec<CallInfo>>,
    },
    Blf(Presence),
    /// Reply to our `sip-register`: the socket is now an endpoint, refresh before `expires` runs out.
    SipRegister {
        added: bool,
        expires: Option<u32>,
    },
    CallerId {
        callid: CallId,
        name: Option<String>,
        number: Option<String>,
    },
    RecStart {
        callid: Option<CallId>,
    },
    RecStop {
        callid: Option<CallId>,
    },
    /// Neither a reserved key nor a known action: log and ignore.
    Unknown(Map<String, Value>),
}

fn insert_opt(frame: &mut Value, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        frame[key] = value;
    }
}

fn presence_json(action: Option<&str>, p: &Presence) -> Value {
    let mut frame = json!({});
    insert_opt(&mut frame, "action", action.map(|a| json!(a)));
    frame["account"] = json!(p.account);
    insert_opt(&mut frame, "domain", p.domain.as_ref().map(|d| json!(d)));
    insert_opt(&mut frame, "name", p.name.as_ref().map(|n| json!(n)));
    frame["registered"] = json!(p.registered);
    frame["dnd"] = json!(p.dnd);
    insert_opt(
        &mut frame,
        "chatstatus",
        p.chatstatus.as_ref().map(|c| json!(c)),
    );
    insert_opt(&mut frame, "type", p.kind.as_ref().map(|k| json!(k)));
    frame
}

fn call_info_json(call: &CallInfo) -> Value {
    let mut info = json!({ "id": call.id, "callstate": call.state.as_str() });
    for (key, value) in [
        ("from", &call.from),
        ("to", &call.to),
        ("from-number", &call.from_number),
        ("from-name", &call.from_name),
        ("to-number", &call.to_number),
        ("to-name", &call.to_name),
    ] {
        insert_opt(&mut info, key, value.as_ref().map(|v| json!(v)));
    }
    insert_opt(&mut info, "start", call.start.map(|s| json!(s)));
    insert_opt(&mut info, "connect", call.connect.map(|c| json!(c)));
    info
}

fn call_ref_json(key: &str, call: &CallRef) -> Value {
    let mut frame = json!({ key: "true", "callid": call.callid.as_str() });
    insert_opt(&mut frame, "cseq", call.cseq.as_ref().map(Cseq::to_json));
    frame
}

impl ServerFrame {
    /// The JSON object for this frame: flat frames carry their reserved key, others `action`.
    pub fn to_json(&self) -> Value {
        match self {
            // The PBX sends SDP as bare text (§3), whatever form it was decoded from.
            ServerFrame::Sdp(f) => {
                let mut frame = json!({ "sdp": f.sdp.text, "callid": f.callid.as_str() });
                insert_opt(&mut frame, "cseq", f.cseq.as_ref().map(Cseq::to_json));
                insert_opt(&mut frame, "code", f.code.map(|c| json!(c.0)));
                insert_opt(&mut frame, "reason", f.reason.as_ref().map(|r| json!(r)));
                frame
            }
            ServerFrame::InviteSdp(i) => {
                let mut frame = json!({
                    "invitesdp": i.sdp.text, "callid": i.callid.as_str(),
                    "cseq": i.cseq.to_json(), "from": i.from, "to": i.to,
                });
                insert_opt(
                    &mut frame,
                    "from-user",
                    i.from_user.as_ref().map(|u| json!(u)),
                );
                insert_opt(
                    &mut frame,
                    "from-display",
                    i.from_display.as_ref().map(|d| json!(d)),
                );
                frame
            }
            ServerFrame::Candidate(c) => {
                let mut frame = json!({ "candidate": c.candidate });
                insert_opt(
                    &mut frame,
                    "callid",
                    c.callid.as_ref().map(|id| json!(id.as_str())),
                );
                if !c.addresses.is_empty() {
                    let pairs: Vec<Value> =
                        c.addresses.iter().map(|a| json!([a.ip, a.port])).collect();
                    frame["adr"] = Value::Array(pairs);
                }
                frame
            }
            ServerFrame::Bye(b) => {
                let mut frame = json!({ "bye": "true", "callid": b.callid.as_str() });
                insert_opt(&mut frame, "cseq", b.cseq.as_ref().map(Cseq::to_json));
                insert_opt(&mut frame, "code", b.code.map(|c| json!(c.0)));
                insert_opt(&mut frame, "reason", b.reason.as_ref().map(|r| json!(r)));
                frame
            }
            ServerFrame::Ringtones(raw)
            | ServerFrame::Response(raw)
            | ServerFrame::Info(raw)
            | ServerFrame::Change(raw)
            | ServerFrame::Unknown(raw) => Value::Object(raw.clone()),
            ServerFrame::Cancel(c) => call_ref_json("cancel", c),
            ServerFrame::CancelResponse(c) => call_ref_json("cancelresponse", c),
            ServerFrame::CallState(calls) => json!({
                "action": "call-state",
                "calls": calls.iter().map(call_info_json).collect::<Vec<_>>(),
            }),
            ServerFrame::UserState(p) => presence_json(Some("user-state"), p),
            ServerFrame::DomainState { accounts, calls } => {
                let mut frame = json!({
                    "action": "domain-state",
                    "accounts": accounts.iter().map(|p| presence_json(None, p)).collect::<Vec<_>>(),
                });
                insert_opt(
                    &mut frame,
                    "calls",
                    calls
                        .as_ref()
                        .map(|c| c.iter().map(call_info_json).collect::<Vec<_>>().into()),
                );
                frame
            }
            ServerFrame::Blf(p) => presence_json(Some("blf"), p),
            ServerFrame::SipRegister { added, expires } => {
                let mut frame = json!({ "action": "sip-register", "add": added });
                insert_opt(&mut frame, "expires", expires.map(|e| json!(e)));
                frame
            }
            ServerFrame::CallerId {
                callid,
                name,
                number,
            } => {
                let mut frame = json!({ "action": "callerid", "callid": callid.as_str() });
                insert_opt(&mut frame, "name", name.as_ref().map(|n| json!(n)));
                insert_opt(&mut frame, "number", number.as_ref().map(|n| json!(n)));
                frame
            }
            ServerFrame::RecStart { callid } => rec_json("rec-start", callid.as_ref()),
            ServerFrame::RecStop { callid } => rec_json("rec-stop", callid.as_ref()),
        }
    }

    /// The text frame to put on the socket.
    pub fn encode(&self) -> String {
        self.to_json().to_string()
    }

    /// Decodes a text frame received from the PBX, reserved keys first, then `action` (§3).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        Self::from_map(parse_object(text)?)
    }

    fn from_map(map: Map<String, Value>) -> Result<Self, DecodeError> {
        let flat_key = RESERVED_KEYS
            .into_iter()
            .find(|key| counts(key, map.get(*key)));
        if let Some(key) = flat_key {
            return Self::flat(key, map);
        }
        let Some(action) = map.get("action").and_then(Value::as_str) else {
            return Ok(ServerFrame::Unknown(map));
        };
        let fields = |name| Fields::new(name, &map);
        let frame = match action {
            "call-state" => ServerFrame::CallState(call_list(&fields("call-state"))?),
            "user-state" => ServerFrame::UserState(presence(fields("user-state"))?),
            "domain-state" => {
                let f = fields("domain-state");
                ServerFrame::DomainState {
                    accounts: f.object_list("accounts", presence)?,
                    calls: match f.raw("calls") {
                        None => None,
                        Some(_) => Some(call_list(&f)?),
                    },
                }
            }
            "blf" => ServerFrame::Blf(presence(fields("blf"))?),
            "sip-register" => {
                let f = fields("sip-register");
                ServerFrame::SipRegister {
                    added: is_set(f.raw("add")),
                    expires: f.opt_number("expires")?,
                }
            }
            "callerid" => {
                let f = fields("callerid");
                ServerFrame::CallerId {
                    callid: f.call_id("callid")?,
                    name: f.opt_string("name")?,
                    number: f.opt_string("number")?,
                }
            }
            "rec-start" => ServerFrame::RecStart {
                callid: rec_call_id(&fields("rec-start"))?,
            },
            "rec-stop" => ServerFrame::RecStop {
                callid: rec_call_id(&fields("rec-stop"))?,
            },
            _ => return Ok(ServerFrame::Unknown(map)),
        };
        Ok(frame)
    }

    fn flat(key: &'static str, map: Map<String, Value>) -> Result<Self, DecodeError> {
        let f = Fields::new(key, &map);
        let frame = match key {
            "sdp" => ServerFrame::Sdp(SdpFrame {
                callid: f.call_id("callid")?,
                cseq: f.opt_cseq("cseq")?,
                code: f.opt_code("code")?,
                reason: f.opt_string("reason")?,
                sdp: f.sdp("sdp")?,
            }),
            "invitesdp" => ServerFrame::InviteSdp(Invite {
                callid: f.call_id("callid")?,
                cseq: f.cseq("cseq")?,
                from: f.opt_string("from")?.unwrap_or_default(),
                to: f.opt_string("to")?.unwrap_or_default(),
                from_user: f.opt_string("from-user")?,
                from_display: f.opt_string("from-display")?,
                sdp: f.sdp("invitesdp")?,
            }),
            "candidate" => ServerFrame::Candidate(remote_candidate(&f)?),
            "bye" => ServerFrame::Bye(Bye {
                callid: f.call_id("callid")?,
                cseq: f.opt_cseq("cseq")?,
                code: f.opt_code("code")?,
                reason: f.opt_string("reason")?,
            }),
            "cancel" => ServerFrame::Cancel(call_ref(&f)?),
            "cancelresponse" => ServerFrame::CancelResponse(call_ref(&f)?),
            "ringtones" => ServerFrame::Ringtones(map),
            "response" => ServerFrame::Response(map),
            "info" => ServerFrame::Info(map),
            _ => ServerFrame::Change(map),
        };
        Ok(frame)
    }
}

/// Whether a reserved key counts (§3). SDP goes out as bare text, so an SDP object counts as its
/// text would: `{"type":"answer","sdp":""}` is as empty as `""`.
fn counts(key: &str, value: Option<&Value>) -> bool {
    match value {
        Some(Value::Object(sdp))
            if matches!(key, "sdp" | "invitesdp") && sdp.contains_key("sdp") =>
        {
            is_set(sdp.get("sdp"))
        }
        other => is_set(other),
    }
}

fn rec_json(action: &str, callid: Option<&CallId>) -> Value {
    let mut frame = json!({ "action": action });
    insert_opt(&mut frame, "callid", callid.map(|id| json!(id.as_str())));
    frame
}

/// Recording frames name the call as `callid` or `id`.
fn rec_call_id(f: &Fields<'_>) -> Result<Option<CallId>, DecodeError> {
    match f.opt_call_id("callid")? {
        Some(id) => Ok(Some(id)),
        None => f.opt_call_id("id"),
    }
}

fn call_ref(f: &Fields<'_>) -> Result<CallRef, DecodeError> {
    Ok(CallRef {
        callid: f.call_id("callid")?,
        cseq: f.opt_cseq("cseq")?,
    })
}

fn presence(f: Fields<'_>) -> Result<Presence, DecodeError> {
    Ok(Presence {
        account: f.string("account")?,
        domain: f.opt_string("domain")?,
        name: f.opt_string("name")?,
        registered: f.flag("registered")?,
        dnd: f.flag("dnd")?,
        chatstatus: f.opt_string("chatstatus")?,
        kind: f.opt_string("type")?,
    })
}

/// `calls` is a list; the vendor's page also shows a single call as one object.
fn call_list(f: &Fields<'_>) -> Result<Vec<CallInfo>, DecodeError> {
    match f.raw("calls") {
        Some(Value::Object(_)) => Ok(vec![f.object("calls", call_info)?]),
        _ => f.object_list("calls", call_info),
    }
}

fn call_info(f: Fields<'_>) -> Result<CallInfo, DecodeError> {
    let state = match f.opt_string("state")? {
        Some(state) => state,
        None => f.string("callstate")?,
    };
    Ok(CallInfo {
        id: f.string("id")?,
        state: PbxCallState::parse(&state),
        from: f.opt_string("from")?,
        to: f.opt_string("to")?,
        from_number: f.opt_string("from-number")?,
        from_name: f.opt_string("from-name")?,
        to_number: f.opt_string("to-number")?,
        to_name: f.opt_string("to-name")?,
        start: f.opt_number("start").ok().flatten(),
        connect: f.opt_number("connect").ok().flatten(),
    })
}

/// The `candidate` value is a raw line, or (from some relays) a browser candidate object.
fn remote_candidate(f: &Fields<'_>) -> Result<RemoteCandidate, DecodeError> {
    let candidate = match f.raw("candidate") {
        Some(Value::Object(_)) => f.object("candidate", |c| c.string("candidate"))?,
        _ => f.string("candidate")?,
    };
    // An empty line (the browsers' end-of-candidates marker, in object form) is no candidate;
    // it would not survive a round trip either, as an empty `candidate` key does not count (§3).
    if candidate.trim().is_empty() {
        return Err(DecodeError::Invalid {
            frame: "candidate",
            field: "candidate",
            expected: "a candidate line",
        });
    }
    let invalid = DecodeError::Invalid {
        frame: "candidate",
        field: "adr",
        expected: "a list of [ip, port] pairs",
    };
    let addresses = match f.raw("adr") {
        None => Vec::new(),
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|pair| candidate_address(pair).ok_or(()))
            .collect::<Result<_, _>>()
            .map_err(|()| invalid)?,
        Some(_) => return Err(invalid),
    };
    Ok(RemoteCandidate {
        callid: f.opt_call_id("callid")?,
        candidate,
        addresses,
    })
}

fn candidate_address(pair: &Value) -> Option<CandidateAddress> {
    let [ip, port] = pair.as_array()?.as_slice() else {
        return None;
    };
    let port = match port {
        Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some(CandidateAddress {
        ip: ip.as_str()?.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CallId {
        CallId::new(s).unwrap()
    }

    fn decode(wire: Value) -> ServerFrame {
        ServerFrame::decode(&wire.to_string()).unwrap()
    }

    /// Every §5 frame: it decodes from the wire shape, and our encoding decodes back to itself.
    fn check(wire: Value, frame: ServerFrame) {
        assert_eq!(decode(wire.clone()), frame, "decoding of {wire}");
        let encoded = frame.to_json();
        assert_eq!(decode(encoded.clone()), frame, "round trip via {encoded}");
    }

    fn presence_of(account: &str, registered: bool) -> Presence {
        Presence {
            account: account.into(),
            domain: None,
            name: None,
            registered,
            dnd: false,
            chatstatus: None,
            kind: None,
        }
    }

    #[test]
    fn sdp_frame_with_string_or_object_sdp() {
        check(
            json!({"sdp": "v=0", "callid": "c1", "cseq": "2", "code": 183, "reason": "Session Progress"}),
            ServerFrame::Sdp(SdpFrame {
                callid: id("c1"),
                cseq: Some(Cseq::Text("2".into())),
                code: Some(SipCode::SESSION_PROGRESS),
                reason: Some("Session Progress".into()),
                sdp: Sdp {
                    kind: None,
                    text: "v=0".into(),
                },
            }),
        );
        // The object form is understood (its type kept for the call), and sent as bare text.
        let frame = decode(
            json!({"sdp": {"type": "offer", "sdp": "v=0"}, "callid": "pbx-7", "cseq": 9, "code": "200"}),
        );
        assert_eq!(
            frame,
            ServerFrame::Sdp(SdpFrame {
                callid: id("pbx-7"),
                cseq: Some(Cseq::Number(9)),
                code: Some(SipCode::OK),
                reason: None,
                sdp: Sdp::offer("v=0"),
            })
        );
        assert_eq!(
            frame.to_json(),
            json!({"sdp": "v=0", "callid": "pbx-7", "cseq": 9, "code": 200})
        );
    }

    #[test]
    fn an_empty_sdp_object_counts_as_little_as_empty_text() {
        // Found by the fuzzer: it decoded as an `sdp` frame, but went out as `"sdp": ""`.
        let frame =
            decode(json!({"action": "x", "callid": "c1", "sdp": {"type": "answer", "sdp": ""}}));
        assert!(matches!(frame, ServerFrame::Unknown(_)), "{frame:?}");
    }

    #[test]
    fn invitesdp_is_sent_as_bare_text() {
        let frame = ServerFrame::InviteSdp(Invite {
            callid: id("abc@pbx"),
            cseq: Cseq::Number(1),
            from: "501".into(),
            to: "500".into(),
            from_user: None,
            from_display: None,
            sdp: Sdp::offer("v=0\r\n"),
        });
        assert_eq!(frame.to_json()["invitesdp"], json!("v=0\r\n"));
    }

    #[test]
    fn invitesdp_carries_the_offer_and_caller() {
        check(
            json!({"invitesdp": "v=0", "callid": "c2", "cseq": 1, "from": "\"Ann\" <sip:501@localhost>",
                   "to": "<sip:500@localhost>", "from-user": "501", "from-display": "Ann"}),
            ServerFrame::InviteSdp(Invite {
                callid: id("c2"),
                cseq: Cseq::Number(1),
                from: "\"Ann\" <sip:501@localhost>".into(),
                to: "<sip:500@localhost>".into(),
                from_user: Some("501".into()),
                from_display: Some("Ann".into()),
                sdp: Sdp {
                    kind: None,
                    text: "v=0".into(),
                },
            }),
        );
    }

    #[test]
    fn an_empty_candidate_object_is_no_candidate() {
        // Found by the fuzzer: it decoded, but did not survive a round trip.
        let text = r#"{"candidate":{"candidate":"","sdpMLineIndex":0},"callid":"c1"}"#;
        assert!(ServerFrame::decode(text).is_err());
    }

    #[test]
    fn candidate_with_and_without_adr() {
        let line = "candidate:1 1 udp 2130706431 10.0.0.1 9 typ host";
        check(
            json!({"candidate": line, "callid": "c1", "adr": [["127.0.0.1", 5000], ["127.0.0.2", "5002"]]}),
            ServerFrame::Candidate(RemoteCandidate {
                callid: Some(id("c1")),
                candidate: line.into(),
                addresses: vec![
                    CandidateAddress {
                        ip: "127.0.0.1".into(),
                        port: 5000,
                    },
                    CandidateAddress {
                        ip: "127.0.0.2".into(),
                        port: 5002,
                    },
                ],
            }),
        );
        check(
            json!({"candidate": line}),
            ServerFrame::Candidate(RemoteCandidate {
                callid: None,
                candidate: line.into(),
                addresses: vec![],
            }),
        );
        assert!(
            ServerFrame::decode(&json!({"candidate": line, "adr": [["x"]]}).to_string()).is_err()
        );
    }

    #[test]
    fn bye_cancel_and_cancelresponse() {
        check(
            json!({"bye": "true", "callid": "c1", "cseq": 3, "code": 415}),
            ServerFrame::Bye(Bye {
                callid: id("c1"),
                cseq: Some(Cseq::Number(3)),
                code: Some(SipCode::UNSUPPORTED_MEDIA_TYPE),
                reason: None,
            }),
        );
        check(
            json!({"cancel": "true", "callid": "c1", "cseq": "4"}),
            ServerFrame::Cancel(CallRef {
                callid: id("c1"),
                cseq: Some(Cseq::Text("4".into())),
            }),
        );
        check(
            json!({"cancelresponse": true, "callid": "c1"}),
            ServerFrame::CancelResponse(CallRef {
                callid: id("c1"),
                cseq: None,
            }),
        );
    }

    #[test]
    fn undocumented_flat_frames_are_kept_whole() {
        for (key, wrap) in [
            ("ringtones", ServerFrame::Ringtones as fn(_) -> _),
            ("response", ServerFrame::Response),
            ("info", ServerFrame::Info),
            ("change", ServerFrame::Change),
        ] {
            let wire = json!({key: "true", "extra": [1, 2]});
            let Value::Object(map) = wire.clone() else {
                unreachable!()
            };
            check(wire, wrap(map));
        }
    }

    #[test]
    fn call_state_lists() {
        check(
            json!({"action": "call-state", "calls": [
                {"id": "c1", "state": "connected", "from-number": "501", "from-name": "Ann",
                 "to-number": "500", "to-name": "IVR", "start": 1700000000, "connect": 1700000003},
                {"id": "c2", "callstate": "alerting", "from": "501", "to": "502"},
            ]}),
            ServerFrame::CallState(vec![
                CallInfo {
                    id: "c1".into(),
                    state: PbxCallState::Connected,
                    from: None,
                    to: None,
                    from_number: Some("501".into()),
                    from_name: Some("Ann".into()),
                    to_number: Some("500".into()),
                    to_name: Some("IVR".into()),
                    start: Some(1_700_000_000),
                    connect: Some(1_700_000_003),
                },
                CallInfo {
                    id: "c2".into(),
                    state: PbxCallState::Alerting,
                    from: Some("501".into()),
                    to: Some("502".into()),
                    from_number: None,
                    from_name: None,
                    to_number: None,
                    to_name: None,
                    start: None,
                    connect: None,
                },
            ]),
        );
    }

    #[test]
    fn presence_frames() {
        check(
            json!({"action": "user-state", "account": "501", "registered": "true", "dnd": false,
                   "chatstatus": "available", "type": "extension"}),
            ServerFrame::UserState(Presence {
                chatstatus: Some("available".into()),
                kind: Some("extension".into()),
                ..presence_of("501", true)
            }),
        );
        check(
            json!({"action": "domain-state", "accounts": [
                {"account": "500", "registered": true}, {"account": "501", "registered": "false"}]}),
            ServerFrame::DomainState {
                accounts: vec![presence_of("500", true), presence_of("501", false)],
                calls: None,
            },
        );
        check(
            json!({"action": "blf", "account": "502", "registered": true}),
            ServerFrame::Blf(presence_of("502", true)),
        );
    }

    #[test]
    fn register_reply_callerid_and_recording() {
        check(
            json!({"action": "sip-register", "add": true, "expires": 120}),
            ServerFrame::SipRegister {
                added: true,
                expires: Some(120),
            },
        );
        check(
            json!({"action": "callerid", "callid": "c1", "name": "Ann", "number": "501"}),
            ServerFrame::CallerId {
                callid: id("c1"),
                name: Some("Ann".into()),
                number: Some("501".into()),
            },
        );
        check(
            json!({"action": "rec-start", "id": "c1"}),
            ServerFrame::RecStart {
                callid: Some(id("c1")),
            },
        );
        check(
            json!({"action": "rec-stop", "callid": "c1"}),
            ServerFrame::RecStop {
                callid: Some(id("c1")),
            },
        );
    }

    #[test]
    fn an_action_frame_with_sdp_is_a_flat_sdp_frame() {
        let frame = decode(json!({"action": "call-state", "sdp": "v=0", "callid": "c1"}));
        assert!(
            matches!(frame, ServerFrame::Sdp(ref f) if f.sdp.text == "v=0"),
            "{frame:?}"
        );
    }

    #[test]
    fn reserved_keys_are_tested_in_order() {
        // `sdp` wins over `bye`, `bye` over `cancel`.
        let frame = decode(json!({"bye": "true", "sdp": "v=0", "callid": "c1"}));
        assert!(matches!(frame, ServerFrame::Sdp(_)), "{frame:?}");
        let frame = decode(json!({"cancel": "true", "bye": "true", "callid": "c1"}));
        assert!(matches!(frame, ServerFrame::Bye(_)), "{frame:?}");
    }

    #[test]
    fn bye_true_is_a_bye_but_bye_false_is_not() {
        let frame = decode(json!({"bye": "true", "callid": "c1"}));
        assert!(matches!(frame, ServerFrame::Bye(_)), "{frame:?}");
        let frame = decode(json!({"bye": false, "callid": "c1", "action": "callerid"}));
        assert!(matches!(frame, ServerFrame::CallerId { .. }), "{frame:?}");
        let frame = decode(json!({"bye": "", "callid": "c1"}));
        assert!(matches!(frame, ServerFrame::Unknown(_)), "{frame:?}");
    }

    #[test]
    fn unknown_frames_keep_the_raw_json() {
        let frame = decode(json!({"action": "chat", "text": "hi"}));
        assert!(matches!(frame, ServerFrame::Unknown(ref m) if m["text"] == "hi"));
        let frame = decode(json!({"hello": 1}));
        assert!(matches!(frame, ServerFrame::Unknown(_)));
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(ServerFrame::decode(r#"{"sdp":"v=0"}"#).is_err()); // no callid
        assert!(ServerFrame::decode(r#"{"invitesdp":"v=0","callid":"c"}"#).is_err()); // no cseq
        assert!(ServerFrame::decode(r#"{"sdp":5,"callid":"c"}"#).is_err());
        assert!(matches!(
            ServerFrame::decode("\"sdp\""),
            Err(DecodeError::NotAnObject)
        ));
    }
}
