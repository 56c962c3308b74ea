//! Frames a client (a bot, or a browser) sends to the PBX: docs/protocol.md §4. All are action
//! frames.
//!
//! Bots encode them; the emulator decodes them. Both directions live here so the two can never
//! disagree about a field name.

use serde_json::{Map, Value, json};

use super::error::DecodeError;
use super::fields::{Fields, parse_object};
use super::values::{CallId, Cseq, Sdp, SipCode};

/// Which call list a subscription frame is about (`own-calls`, `orbit-calls`, `domain-calls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallScope {
    Own,
    Orbit,
    Domain,
}

impl CallScope {
    fn action(self) -> &'static str {
        match self {
            CallScope::Own => "own-calls",
            CallScope::Orbit => "orbit-calls",
            CallScope::Domain => "domain-calls",
        }
    }
}

/// `wrtc-hold`'s `holdcmd`: `sendonly` puts the call on hold, `sendrecv` resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldCommand {
    Hold,
    Resume,
}

impl HoldCommand {
    fn as_str(self) -> &'static str {
        match self {
            HoldCommand::Hold => "sendonly",
            HoldCommand::Resume => "sendrecv",
        }
    }
}

/// `wrtc-hold`'s `calldir`: whether the sender placed the call (the vendor's sample sends it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallDir {
    Caller,
    Callee,
}

impl CallDir {
    fn as_str(self) -> &'static str {
        match self {
            CallDir::Caller => "caller",
            CallDir::Callee => "callee",
        }
    }
}

/// A local ICE candidate in the browser's JSON shape (`RTCIceCandidateInit`, which is what a
/// browser's `RTCIceCandidate` turns into, `usernameFragment` included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<String>,
}

/// One client→server frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// Keepalive, sent on open and every 30 s (§2).
    AvoidDisconnect,
    /// `own-calls` / `orbit-calls` / `domain-calls` with `subscribe`.
    CallSubscription {
        scope: CallScope,
        subscribe: bool,
    },
    /// Presence subscription changes: extensions to `add` and to `remove`.
    Blf {
        add: Vec<String>,
        remove: Vec<String>,
    },
    Ringtones,
    /// Binds this socket as an endpoint of the extension; without it no calls arrive.
    SipRegister {
        useragent: String,
    },
    /// Place a call to `to` with our offer.
    SdpPacket {
        to: String,
        callid: CallId,
        offer: String,
    },
    /// 180 Ringing for an incoming call.
    SipRinging {
        callid: CallId,
        cseq: Cseq,
    },
    /// Answer an offer (an incoming call, or the PBX's own offer in the modern outbound flow).
    Sdp200Ok {
        callid: CallId,
        cseq: Cseq,
        answer: String,
    },
    /// Reject an incoming call (486 busy, 603 decline, 488 not acceptable).
    SipBusy {
        callid: CallId,
        cseq: Cseq,
        code: SipCode,
    },
    /// Acknowledge a final response to our call.
    SipAck {
        callid: CallId,
    },
    /// Trickle ICE. The vendor's sample sends the browser's candidate without a `callid` (the
    /// PBX takes the socket's call), and `null` once gathering is complete.
    IceCandidate {
        callid: Option<CallId>,
        candidate: Option<IceCandidate>,
    },
    /// Hang up, or cancel our unanswered call; `caller` says whether we placed the call.
    /// (`callid` may be missing: the vendor's sample loses it, and the PBX takes the socket's call.)
    SipBye {
        callid: Option<CallId>,
        caller: bool,
    },
    /// Confirms a remote `bye`; the vendor's sample echoes no `cseq`.
    ByeResponse {
        callid: CallId,
        cseq: Option<Cseq>,
    },
    CancelResponse {
        callid: CallId,
        cseq: Cseq,
    },
    /// Hold or resume. The vendor's sample closes its peer connection on hold and resumes with
    /// a new `offer`, which the PBX answers with an `sdp` frame; it also names its `calldir`.
    WrtcHold {
        callid: Option<CallId>,
        command: HoldCommand,
        offer: Option<String>,
        calldir: Option<CallDir>,
    },
    /// `blind-transfer2`: transfer call `id` of extension `from` to `to`.
    BlindTransfer {
        id: CallId,
        from: String,
        to: String,
    },
    /// `att-transfer`: connect call `id` with call `id2`.
    AttendedTransfer {
        id: CallId,
        from: String,
        id2: CallId,
        to: String,
    },
    /// PBX-side recording on or off.
    RecCall {
        id: CallId,
        on: bool,
    },
    /// An action we do not know, kept whole.
    Unknown(Map<String, Value>),
}

impl IceCandidate {
    /// The browser's shape: `usernameFragment` only when known.
    fn to_json(&self) -> Value {
        let mut candidate = json!({
            "candidate": self.candidate,
            "sdpMid": self.sdp_mid,
            "sdpMLineIndex": self.sdp_mline_index,
        });
        if let Some(ufrag) = &self.username_fragment {
            candidate["usernameFragment"] = json!(ufrag);
        }
        candidate
    }
}

fn insert_call_id(frame: &mut Value, callid: Option<&CallId>) {
    if let Some(callid) = callid {
        frame["callid"] = json!(callid.as_str());
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn true_false(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

impl ClientFrame {
    /// The JSON object for this frame, fields named and shaped exactly as in §4.
    pub fn to_json(&self) -> Value {
        match self {
            ClientFrame::AvoidDisconnect => json!({ "action": "avoid-disconnect" }),
            ClientFrame::CallSubscription { scope, subscribe } => {
                json!({ "action": scope.action(), "subscribe": subscribe })
            }
            ClientFrame::Blf { add, remove } => {
                let mut frame = json!({ "action": "blf" });
                if !add.is_empty() || remove.is_empty() {
                    frame["add"] = json!(add);
                }
                if !remove.is_empty() {
                    frame["remove"] = json!(remove);
                }
                frame
            }
            ClientFrame::Ringtones => json!({ "action": "ringtones" }),
            ClientFrame::SipRegister { useragent } => {
                json!({ "action": "sip-register", "useragent": useragent })
            }
            ClientFrame::SdpPacket { to, callid, offer } => json!({
                "action": "sdp-packet", "to": to, "callid": callid.as_str(),
                "sdp": Sdp::offer(offer.as_str()).to_json(),
            }),
            ClientFrame::SipRinging { callid, cseq } => json!({
                "action": "sip-ringing", "callid": callid.as_str(), "cseq": cseq.to_json(),
            }),
            ClientFrame::Sdp200Ok {
                callid,
                cseq,
                answer,
            } => json!({
                "action": "sdp-200ok", "callid": callid.as_str(), "cseq": cseq.to_json(),
                "sdp": Sdp::answer(answer.as_str()).to_json(),
            }),
            ClientFrame::SipBusy { callid, cseq, code } => json!({
                "action": "sip-busy", "callid": callid.as_str(), "cseq": cseq.to_json(),
                "code": code.0,
            }),
            ClientFrame::SipAck { callid } => {
                json!({ "action": "sip-ack", "callid": callid.as_str() })
            }
            ClientFrame::IceCandidate { callid, candidate } => {
                let mut frame = json!({
                    "action": "ice-candidate",
                    "candidate": candidate.as_ref().map(IceCandidate::to_json),
                });
                insert_call_id(&mut frame, callid.as_ref());
                frame
            }
            ClientFrame::SipBye { callid, caller } => {
                let mut frame = json!({ "action": "sip-bye", "caller": true_false(*caller) });
                insert_call_id(&mut frame, callid.as_ref());
                frame
            }
            ClientFrame::ByeResponse { callid, cseq } => {
                let mut frame = json!({ "action": "bye-response", "callid": callid.as_str() });
                if let Some(cseq) = cseq {
                    frame["cseq"] = cseq.to_json();
                }
                frame
            }
            ClientFrame::CancelResponse { callid, cseq } => json!({
                "action": "cancel-response", "callid": callid.as_str(), "cseq": cseq.to_json(),
            }),
            ClientFrame::WrtcHold {
                callid,
                command,
                offer,
                calldir,
            } => {
                let mut frame = json!({ "action": "wrtc-hold", "holdcmd": command.as_str() });
                insert_call_id(&mut frame, callid.as_ref());
                if let Some(offer) = offer {
                    frame["sdp"] = Sdp::offer(offer.as_str()).to_json();
                }
                if let Some(calldir) = calldir {
                    frame["calldir"] = json!(calldir.as_str());
                }
                frame
            }
            ClientFrame::BlindTransfer { id, from, to } => json!({
                "action": "blind-transfer2", "id": id.as_str(), "from": from, "to": to,
            }),
            ClientFrame::AttendedTransfer { id, from, id2, to } => json!({
                "action": "att-transfer", "id": id.as_str(), "from": from,
                "id2": id2.as_str(), "to": to,
            }),
            ClientFrame::RecCall { id, on } => json!({
                "action": "rec-call", "id": id.as_str(), "startstop": on_off(*on),
            }),
            ClientFrame::Unknown(map) => Value::Object(map.clone()),
        }
    }

    /// The call a frame is about (`callid`, or `id` for transfers and recording), if any.
    pub fn call_id(&self) -> Option<&CallId> {
        match self {
            ClientFrame::SdpPacket { callid, .. }
            | ClientFrame::SipRinging { callid, .. }
            | ClientFrame::Sdp200Ok { callid, .. }
            | ClientFrame::SipBusy { callid, .. }
            | ClientFrame::SipAck { callid }
            | ClientFrame::ByeResponse { callid, .. }
            | ClientFrame::CancelResponse { callid, .. } => Some(callid),
            ClientFrame::IceCandidate { callid, .. }
            | ClientFrame::SipBye { callid, .. }
            | ClientFrame::WrtcHold { callid, .. } => callid.as_ref(),
            ClientFrame::BlindTransfer { id, .. }
            | ClientFrame::AttendedTransfer { id, .. }
            | ClientFrame::RecCall { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The text frame to put on the socket.
    pub fn encode(&self) -> String {
        self.to_json().to_string()
    }

    /// Decodes a text frame received from a client (the emulator's side).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        Self::from_map(parse_object(text)?)
    }

    fn from_map(map: Map<String, Value>) -> Result<Self, DecodeError> {
        let Some(action) = map.get("action").and_then(Value::as_str) else {
            return Ok(ClientFrame::Unknown(map));
        };
        let frame = match action {
            "avoid-disconnect" => ClientFrame::AvoidDisconnect,
            "own-calls" => subscription(CallScope::Own, &map)?,
            "orbit-calls" => subscription(CallScope::Orbit, &map)?,
            "domain-calls" => subscription(CallScope::Domain, &map)?,
            "blf" => {
                let f = Fields::new("blf", &map);
                ClientFrame::Blf {
                    add: f.string_list("add")?,
                    remove: f.string_list("remove")?,
                }
            }
            "ringtones" => ClientFrame::Ringtones,
            "sip-register" => ClientFrame::SipRegister {
                useragent: Fields::new("sip-register", &map)
                    .opt_string("useragent")?
                    .unwrap_or_default(),
            },
            "sdp-packet" => {
                let f = Fields::new("sdp-packet", &map);
                ClientFrame::SdpPacket {
                    to: f.string("to")?,
                    callid: f.call_id("callid")?,
                    offer: f.sdp("sdp")?.text,
                }
            }
            "sip-ringing" => {
                let f = Fields::new("sip-ringing", &map);
                ClientFrame::SipRinging {
                    callid: f.call_id("callid")?,
                    cseq: f.cseq("cseq")?,
                }
            }
            "sdp-200ok" => {
                let f = Fields::new("sdp-200ok", &map);
                ClientFrame::Sdp200Ok {
                    callid: f.call_id("callid")?,
                    cseq: f.cseq("cseq")?,
                    answer: f.sdp("sdp")?.text,
                }
            }
            "sip-busy" => {
                let f = Fields::new("sip-busy", &map);
                ClientFrame::SipBusy {
                    callid: f.call_id("callid")?,
                    cseq: f.cseq("cseq")?,
                    code: f.opt_code("code")?.unwrap_or(SipCode::BUSY_HERE),
                }
            }
            "sip-ack" => ClientFrame::SipAck {
                callid: Fields::new("sip-ack", &map).call_id("callid")?,
            },
            "ice-candidate" => {
                let f = Fields::new("ice-candidate", &map);
                ClientFrame::IceCandidate {
                    callid: f.opt_call_id("callid")?,
                    candidate: match f.raw("candidate") {
                        None => None,
                        Some(_) => Some(f.object("candidate", |c| {
                            Ok(IceCandidate {
                                candidate: c.string("candidate")?,
                                sdp_mid: c.opt_string("sdpMid")?,
                                sdp_mline_index: c.opt_number("sdpMLineIndex")?,
                                username_fragment: c.opt_string("usernameFragment")?,
                            })
                        })?),
                    },
                }
            }
            "sip-bye" => {
                let f = Fields::new("sip-bye", &map);
                ClientFrame::SipBye {
                    callid: f.opt_call_id("callid")?,
                    caller: f.flag("caller")?,
                }
            }
            "bye-response" => {
                let f = Fields::new("bye-response", &map);
                ClientFrame::ByeResponse {
                    callid: f.call_id("callid")?,
                    cseq: f.opt_cseq("cseq")?,
                }
            }
            "cancel-response" => {
                let f = Fields::new("cancel-response", &map);
                ClientFrame::CancelResponse {
                    callid: f.call_id("callid")?,
                    cseq: f.cseq("cseq")?,
                }
            }
            "wrtc-hold" => {
                let f = Fields::new("wrtc-hold", &map);
                ClientFrame::WrtcHold {
                    callid: f.opt_call_id("callid")?,
                    offer: match f.raw("sdp") {
                        None => None,
                        Some(_) => Some(f.sdp("sdp")?.text),
                    },
                    calldir: match f.raw("calldir") {
                        None => None,
                        Some(_) => Some(f.choice(
                            "calldir",
                            &[("caller", CallDir::Caller), ("callee", CallDir::Callee)],
                            "caller or callee",
                        )?),
                    },
                    command: f.choice(
                        "holdcmd",
                        &[
                            ("sendonly", HoldCommand::Hold),
                            ("inactive", HoldCommand::Hold),
                            ("sendrecv", HoldCommand::Resume),
                        ],
                        "sendonly, inactive or sendrecv",
                    )?,
                }
            }
            "blind-transfer2" => {
                let f = Fields::new("blind-transfer2", &map);
                ClientFrame::BlindTransfer {
                    id: f.call_id("id")?,
                    from: f.string("from")?,
                    to: f.string("to")?,
                }
            }
            "att-transfer" => {
                let f = Fields::new("att-transfer", &map);
                ClientFrame::AttendedTransfer {
                    id: f.call_id("id")?,
                    from: f.string("from")?,
                    id2: f.call_id("id2")?,
                    to: f.string("to")?,
                }
            }
            "rec-call" => {
                let f = Fields::new("rec-call", &map);
                ClientFrame::RecCall {
                    id: f.call_id("id")?,
                    on: f.choice("startstop", &[("on", true), ("off", false)], "on or off")?,
                }
            }
            _ => ClientFrame::Unknown(map),
        };
        Ok(frame)
    }
}

fn subscription(scope: CallScope, map: &Map<String, Value>) -> Result<ClientFrame, DecodeError> {
    Ok(ClientFrame::CallSubscription {
        scope,
        subscribe: Fields::new(scope.action(), map).flag("subscribe")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CallId {
        CallId::new(s).unwrap()
    }

    /// Every §4 frame: our encoding is exactly the listed shape, and it decodes back to itself.
    fn check(frame: ClientFrame, wire: Value) {
        assert_eq!(frame.to_json(), wire, "encoding of {frame:?}");
        let decoded = ClientFrame::decode(&wire.to_string()).unwrap();
        assert_eq!(decoded, frame, "decoding of {wire}");
    }

    #[test]
    fn avoid_disconnect() {
        check(
            ClientFrame::AvoidDisconnect,
            json!({"action": "avoid-disconnect"}),
        );
    }

    #[test]
    fn call_subscriptions() {
        for (scope, action) in [
            (CallScope::Own, "own-calls"),
            (CallScope::Orbit, "orbit-calls"),
            (CallScope::Domain, "domain-calls"),
        ] {
            check(
                ClientFrame::CallSubscription {
                    scope,
                    subscribe: true,
                },
                json!({"action": action, "subscribe": true}),
            );
        }
    }

    #[test]
    fn blf_add_and_remove() {
        check(
            ClientFrame::Blf {
                add: vec!["500".into(), "501".into()],
                remove: vec![],
            },
            json!({"action": "blf", "add": ["500", "501"]}),
        );
        check(
            ClientFrame::Blf {
                add: vec![],
                remove: vec!["501".into()],
            },
            json!({"action": "blf", "remove": ["501"]}),
        );
    }

    #[test]
    fn ringtones_and_register() {
        check(ClientFrame::Ringtones, json!({"action": "ringtones"}));
        check(
            ClientFrame::SipRegister {
                useragent: "callbot/0.1".into(),
            },
            json!({"action": "sip-register", "useragent": "callbot/0.1"}),
        );
    }

    #[test]
    fn sdp_packet_places_a_call_with_an_offer_object() {
        check(
            ClientFrame::SdpPacket {
                to: "500".into(),
                callid: id("0123456789abcdef0123456789abcdef"),
                offer: "v=0\r\n".into(),
            },
            json!({"action": "sdp-packet", "to": "500",
                   "callid": "0123456789abcdef0123456789abcdef",
                   "sdp": {"type": "offer", "sdp": "v=0\r\n"}}),
        );
    }

    #[test]
    fn ringing_answer_and_busy_echo_cseq_in_its_form() {
        check(
            ClientFrame::SipRinging {
                callid: id("c1"),
                cseq: Cseq::Text("12".into()),
            },
            json!({"action": "sip-ringing", "callid": "c1", "cseq": "12"}),
        );
        check(
            ClientFrame::Sdp200Ok {
                callid: id("c1"),
                cseq: Cseq::Number(12),
                answer: "v=0".into(),
            },
            json!({"action": "sdp-200ok", "callid": "c1", "cseq": 12,
                   "sdp": {"type": "answer", "sdp": "v=0"}}),
        );
        check(
            ClientFrame::SipBusy {
                callid: id("c1"),
                cseq: Cseq::Number(3),
                code: SipCode::DECLINE,
            },
            json!({"action": "sip-busy", "callid": "c1", "cseq": 3, "code": 603}),
        );
    }

    #[test]
    fn ack_and_ice_candidate() {
        check(
            ClientFrame::SipAck { callid: id("c1") },
            json!({"action": "sip-ack", "callid": "c1"}),
        );
        check(
            ClientFrame::IceCandidate {
                callid: Some(id("c1")),
                candidate: Some(IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                }),
            },
            json!({"action": "ice-candidate", "callid": "c1",
                   "candidate": {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
                                 "sdpMid": "0", "sdpMLineIndex": 0}}),
        );
    }

    #[test]
    fn bye_and_responses() {
        check(
            ClientFrame::SipBye {
                callid: Some(id("c1")),
                caller: true,
            },
            json!({"action": "sip-bye", "callid": "c1", "caller": "true"}),
        );
        check(
            ClientFrame::SipBye {
                callid: Some(id("c1")),
                caller: false,
            },
            json!({"action": "sip-bye", "callid": "c1", "caller": "false"}),
        );
        check(
            ClientFrame::ByeResponse {
                callid: id("c1"),
                cseq: Some(Cseq::Number(4)),
            },
            json!({"action": "bye-response", "callid": "c1", "cseq": 4}),
        );
        check(
            ClientFrame::CancelResponse {
                callid: id("c1"),
                cseq: Cseq::Text("5".into()),
            },
            json!({"action": "cancel-response", "callid": "c1", "cseq": "5"}),
        );
    }

    #[test]
    fn hold_and_resume() {
        check(
            ClientFrame::WrtcHold {
                callid: Some(id("c1")),
                command: HoldCommand::Hold,
                offer: None,
                calldir: None,
            },
            json!({"action": "wrtc-hold", "callid": "c1", "holdcmd": "sendonly"}),
        );
        check(
            ClientFrame::WrtcHold {
                callid: Some(id("c1")),
                command: HoldCommand::Resume,
                offer: None,
                calldir: None,
            },
            json!({"action": "wrtc-hold", "callid": "c1", "holdcmd": "sendrecv"}),
        );
    }

    #[test]
    fn the_vendor_samples_frames_without_a_call_id() {
        check(
            ClientFrame::IceCandidate {
                callid: None,
                candidate: Some(IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: Some("Ab3x".into()),
                }),
            },
            json!({"action": "ice-candidate",
                   "candidate": {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
                                 "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "Ab3x"}}),
        );
        check(
            ClientFrame::IceCandidate {
                callid: None,
                candidate: None,
            },
            json!({"action": "ice-candidate", "candidate": null}),
        );
        check(
            ClientFrame::WrtcHold {
                callid: None,
                command: HoldCommand::Hold,
                offer: None,
                calldir: Some(CallDir::Caller),
            },
            json!({"action": "wrtc-hold", "holdcmd": "sendonly", "calldir": "caller"}),
        );
        check(
            ClientFrame::WrtcHold {
                callid: Some(id("c1")),
                command: HoldCommand::Resume,
                offer: Some("v=0".into()),
                calldir: Some(CallDir::Callee),
            },
            json!({"action": "wrtc-hold", "holdcmd": "sendrecv", "callid": "c1",
                   "sdp": {"type": "offer", "sdp": "v=0"}, "calldir": "callee"}),
        );
        check(
            ClientFrame::ByeResponse {
                callid: id("c1"),
                cseq: None,
            },
            json!({"action": "bye-response", "callid": "c1"}),
        );
    }

    #[test]
    fn transfers_and_recording() {
        check(
            ClientFrame::BlindTransfer {
                id: id("c1"),
                from: "500".into(),
                to: "700".into(),
            },
            json!({"action": "blind-transfer2", "id": "c1", "from": "500", "to": "700"}),
        );
        check(
            ClientFrame::AttendedTransfer {
                id: id("c1"),
                from: "500".into(),
                id2: id("c2"),
                to: "700".into(),
            },
            json!({"action": "att-transfer", "id": "c1", "from": "500", "id2": "c2", "to": "700"}),
        );
        check(
            ClientFrame::RecCall {
                id: id("c1"),
                on: true,
            },
            json!({"action": "rec-call", "id": "c1", "startstop": "on"}),
        );
        check(
            ClientFrame::RecCall {
                id: id("c1"),
                on: false,
            },
            json!({"action": "rec-call", "id": "c1", "startstop": "off"}),
        );
    }

    #[test]
    fn unknown_actions_keep_the_raw_json() {
        let wire = json!({"action": "chat-message", "text": "hi"});
        let frame = ClientFrame::decode(&wire.to_string()).unwrap();
        assert!(matches!(&frame, ClientFrame::Unknown(m) if m["text"] == "hi"));
        assert_eq!(frame.to_json(), wire);
    }

    #[test]
    fn malformed_known_frames_say_what_is_wrong() {
        let err = ClientFrame::decode(r#"{"action":"sip-ringing","callid":"c1"}"#).unwrap_err();
        assert!(err.to_string().contains("cseq"), "{err}");
        assert!(matches!(
            ClientFrame::decode("[1,2]"),
            Err(DecodeError::NotAnObject)
        ));
        assert!(matches!(
            ClientFrame::decode("{"),
            Err(DecodeError::Json(_))
        ));
    }
}
