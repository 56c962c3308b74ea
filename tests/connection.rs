//! Bots' PBX links against the emulator (relay mode, legacy dialect) on 127.0.0.1: login,
//! presence, reconnect, and signalling-only calls between two test sockets.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::time::{Duration, Instant};

use callbot::connection::LinkEvent;
use callbot::pbx::{MediaMode, Pbx};
use callbot::protocol::{
    CallId, ClientFrame, ClientStatus, ConnectionState, Cseq, Dialect, HoldCommand, IceCandidate,
    ServerFrame, SipCode,
};
use common::emulator::{
    TestClient, emulator, events_of, next_frame, options, settings, start_pbx, third_party,
};

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

async fn relay_pbx() -> Pbx {
    start_pbx(MediaMode::Relay, Dialect::Modern).await
}

#[tokio::test]
async fn third_party_login_is_granted_and_reports_the_legacy_dialect() {
    let pbx = relay_pbx().await;
    let mut bot = TestClient::connect(settings(
        &pbx,
        "500",
        third_party(common::emulator::ADMIN_PASSWORD),
    ));
    let dialect = bot.state(ConnectionState::AccessGranted).await;
    assert_eq!(dialect, Dialect::Legacy, "relay mode answers with PBX/68");
    let registered: Vec<_> = events_of(&pbx, "register")
        .await
        .into_iter()
        .filter(|e| e["extension"] == "500")
        .collect();
    assert_eq!(registered.len(), 1, "{registered:?}");
}

#[tokio::test]
async fn wrong_admin_password_is_a_fault_retried_only_after_a_long_wait() {
    let pbx = relay_pbx().await;
    let mut bot = TestClient::connect(settings(&pbx, "500", third_party("wrong")));
    let fault = bot
        .wait_for("the denial", |e| match e {
            LinkEvent::Connection {
                state: ConnectionState::AccessDenied,
                fault,
                ..
            } => Some(fault.clone()),
            _ => None,
        })
        .await;
    // Retrying cannot heal a wrong password: the link says so, and waits a minute or more
    // (the next attempt would come after a second for a transient failure).
    assert_eq!(
        fault,
        Some(callbot::connection::Fault::AdminRefused {
            user: "admin".into()
        })
    );
    let denied = events_of(&pbx, "login-denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
}

#[tokio::test]
async fn password_login_works_and_a_wrong_password_is_denied() {
    let pbx = relay_pbx().await;
    let good = callbot::connection::Credentials::Password(callbot::config::Secret::new("502"));
    let mut bot = TestClient::connect(settings(&pbx, "502", good));
    bot.state(ConnectionState::AccessGranted).await;
    let bad = callbot::connection::Credentials::Password(callbot::config::Secret::new("nope"));
    let mut intruder = TestClient::connect(settings(&pbx, "503", bad));
    intruder.state(ConnectionState::AccessDenied).await;
}

#[tokio::test]
async fn bots_see_each_other_online_and_offline() {
    let pbx = relay_pbx().await;
    let mut a = TestClient::ready(&pbx, "600").await;
    let b = TestClient::ready(&pbx, "601").await;
    let client = a
        .wait_for("601 online", |e| match e {
            LinkEvent::Client(c) if c.number == "601" => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(client.status, ClientStatus::Online);
    assert_eq!(client.name, "Greeter B");
    b.link.close().await;
    let client = a
        .wait_for("601 offline", |e| match e {
            LinkEvent::Client(c) if c.number == "601" => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(client.status, ClientStatus::Offline);
}

#[tokio::test]
async fn link_survives_an_emulator_restart_on_the_same_port() {
    let pbx = relay_pbx().await;
    let address = pbx.local_addr();
    let mut bot = TestClient::ready(&pbx, "500").await;
    pbx.stop().await;
    bot.state(ConnectionState::ConnectionClosed).await;
    let down = Instant::now();
    let again = Pbx::start(options(address, MediaMode::Relay, Dialect::Modern))
        .await
        .expect("restart on the same port");
    bot.state(ConnectionState::AccessGranted).await;
    assert!(
        down.elapsed() < Duration::from_secs(5),
        "took {:?}",
        down.elapsed()
    );
    drop(again);
}

/// Caller 501 dials 502 through the emulator; returns both clients, the caller's call id and
/// the invite the callee got.
async fn ring(pbx: &Pbx, to: &str) -> (TestClient, TestClient, CallId, callbot::protocol::Invite) {
    let caller = TestClient::ready(pbx, "501").await;
    let mut callee = TestClient::ready(pbx, to).await;
    let callid = CallId::random();
    caller.dial(to, &callid, OFFER).await;
    let invite = next_frame!(callee, InviteSdp);
    assert_eq!(
        invite.sdp.text, OFFER,
        "relay mode passes the caller's offer on"
    );
    assert_eq!(invite.from, "501");
    assert_eq!(invite.to, to);
    assert_ne!(
        invite.callid, callid,
        "the callee's leg has its own call id"
    );
    (caller, callee, callid, invite)
}

fn candidate(line: &str) -> IceCandidate {
    IceCandidate {
        candidate: line.into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

#[tokio::test]
async fn a_call_is_offered_rung_answered_and_hung_up() {
    let pbx = relay_pbx().await;
    let (mut caller, mut callee, callid, invite) = ring(&pbx, "502").await;
    callee
        .send(ClientFrame::SipRinging {
            callid: invite.callid.clone(),
            cseq: invite.cseq.clone(),
        })
        .await;
    let ringback = caller.call_in_state(callid.as_str(), "ringback").await;
    assert_eq!(ringback.to_number.as_deref(), Some("502"));

    let caller_line = "candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host";
    caller
        .send(ClientFrame::IceCandidate {
            callid: Some(callid.clone()),
            candidate: Some(candidate(caller_line)),
        })
        .await;
    let relayed = next_frame!(callee, Candidate);
    assert_eq!(relayed.candidate, caller_line);
    assert_eq!(relayed.callid.as_ref(), Some(&invite.callid));

    callee
        .send(ClientFrame::Sdp200Ok {
            callid: invite.callid.clone(),
            cseq: invite.cseq.clone(),
            answer: ANSWER.into(),
        })
        .await;
    let answer = next_frame!(caller, Sdp);
    assert_eq!(answer.code, Some(SipCode::OK));
    assert_eq!(answer.callid, callid);
    assert_eq!(answer.sdp.text, ANSWER);
    caller
        .send(ClientFrame::SipAck {
            callid: callid.clone(),
        })
        .await;

    let callee_line = "candidate:2 1 udp 2130706431 127.0.0.1 40002 typ host";
    callee
        .send(ClientFrame::IceCandidate {
            callid: Some(invite.callid.clone()),
            candidate: Some(candidate(callee_line)),
        })
        .await;
    let relayed = next_frame!(caller, Candidate);
    assert_eq!(relayed.candidate, callee_line);
    assert_eq!(relayed.callid.as_ref(), Some(&callid));

    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls[0]["state"], "connected");
    assert_eq!(calls[0]["legs"][1]["state"], "connected");

    caller.hang_up(&callid).await;
    let bye = next_frame!(callee, Bye);
    assert_eq!(bye.callid, invite.callid);
    callee
        .send(ClientFrame::ByeResponse {
            callid: bye.callid.clone(),
            cseq: bye.cseq.clone(),
        })
        .await;
    wait_until(&pbx, |events| {
        events.iter().any(|e| e["kind"] == "bye-response")
    })
    .await;
    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls[0]["state"], "ended");
}

/// Polls `/emulator/events` until `done` holds.
async fn wait_until(pbx: &Pbx, done: impl Fn(&Vec<serde_json::Value>) -> bool) {
    let deadline = Instant::now() + common::emulator::WAIT;
    loop {
        let events = emulator(pbx, "events").await;
        if done(events.as_array().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "emulator events never matched: {events}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_busy_callee_gives_the_caller_486() {
    let pbx = relay_pbx().await;
    let (mut caller, callee, callid, invite) = ring(&pbx, "502").await;
    callee
        .send(ClientFrame::SipBusy {
            callid: invite.callid,
            cseq: invite.cseq,
            code: SipCode::BUSY_HERE,
        })
        .await;
    let bye = next_frame!(caller, Bye);
    assert_eq!(bye.callid, callid);
    assert_eq!(bye.code, Some(SipCode::BUSY_HERE));
    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls[0]["end_code"], 486);
}

#[tokio::test]
async fn unknown_and_unregistered_numbers_give_404() {
    let pbx = relay_pbx().await;
    let mut caller = TestClient::ready(&pbx, "501").await;
    for number in ["999", "505"] {
        let callid = CallId::random();
        caller.dial(number, &callid, OFFER).await;
        let bye = next_frame!(caller, Bye);
        assert_eq!(bye.callid, callid, "{number}");
        assert_eq!(bye.code, Some(SipCode::NOT_FOUND), "{number}");
    }
    assert_eq!(events_of(&pbx, "not-found").await.len(), 2);
}

#[tokio::test]
async fn a_repeated_offer_does_not_start_a_second_call() {
    let pbx = relay_pbx().await;
    let (caller, _callee, callid, _invite) = ring(&pbx, "502").await;
    caller.dial("502", &callid, OFFER).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while events_of(&pbx, "duplicate-dial").await.is_empty() {
        assert!(Instant::now() < deadline, "the repeat was never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls.as_array().unwrap().len(), 1, "{calls}");
    assert_eq!(calls[0]["state"], "ringing", "{calls}");
}

#[tokio::test]
async fn a_caller_hanging_up_before_answer_cancels_the_callee() {
    let pbx = relay_pbx().await;
    let (mut caller, mut callee, callid, invite) = ring(&pbx, "502").await;
    caller.hang_up(&callid).await;
    let cancel = next_frame!(callee, Cancel);
    assert_eq!(cancel.callid, invite.callid);
    callee
        .send(ClientFrame::CancelResponse {
            callid: cancel.callid,
            cseq: cancel.cseq.unwrap_or(Cseq::Number(1)),
        })
        .await;
    let done = next_frame!(caller, CancelResponse);
    assert_eq!(done.callid, callid);
    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls[0]["end_code"], 487);
}

/// Rings 502 and has it answer; returns the clients and both call ids.
async fn connected(pbx: &Pbx) -> (TestClient, TestClient, CallId, CallId) {
    let (mut caller, callee, callid, invite) = ring(pbx, "502").await;
    callee
        .send(ClientFrame::Sdp200Ok {
            callid: invite.callid.clone(),
            cseq: invite.cseq.clone(),
            answer: ANSWER.into(),
        })
        .await;
    caller
        .frame("sdp 200", |f| match f {
            ServerFrame::Sdp(s) if s.code == Some(SipCode::OK) => Some(()),
            _ => None,
        })
        .await;
    (caller, callee, callid, invite.callid)
}

#[tokio::test]
async fn hold_and_resume_show_in_the_call_state() {
    let pbx = relay_pbx().await;
    let (caller, mut callee, callid, callee_id) = connected(&pbx).await;
    caller
        .send(ClientFrame::WrtcHold {
            callid: Some(callid.clone()),
            command: HoldCommand::Hold,
            offer: None,
            calldir: None,
        })
        .await;
    let held = callee.call_in_state(callee_id.as_str(), "onhold").await;
    assert_eq!(held.from_number.as_deref(), Some("501"));
    assert_eq!(emulator(&pbx, "calls").await[0]["state"], "held");
    caller
        .send(ClientFrame::WrtcHold {
            callid: Some(callid),
            command: HoldCommand::Resume,
            offer: None,
            calldir: None,
        })
        .await;
    callee.call_in_state(callee_id.as_str(), "connected").await;
    assert_eq!(events_of(&pbx, "hold").await.len(), 1);
    assert_eq!(events_of(&pbx, "resume").await.len(), 1);
}

#[tokio::test]
async fn blind_transfer_releases_the_transferor_and_is_recorded() {
    let pbx = relay_pbx().await;
    let (_caller, mut callee, _callid, callee_id) = connected(&pbx).await;
    callee
        .send(ClientFrame::BlindTransfer {
            id: callee_id.clone(),
            from: "502".into(),
            to: "503".into(),
        })
        .await;
    let bye = next_frame!(callee, Bye);
    assert_eq!(bye.callid, callee_id);
    let transfers = events_of(&pbx, "transfer").await;
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0]["extension"], "502");
    assert_eq!(transfers[0]["detail"]["to"], "503");
    let calls = emulator(&pbx, "calls").await;
    assert_eq!(calls[0]["legs"][1]["state"], "ended");
}

#[tokio::test]
async fn malformed_frames_are_ignored_and_huge_ones_close_with_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let pbx = relay_pbx().await;
    let mut socket = common::emulator::raw_socket(&pbx, "505").await;
    for junk in ["not json", "[1,2]", "{\"action\":\"sdp-packet\"}", "{}"] {
        socket.send(Message::text(junk)).await.unwrap();
    }
    socket
        .send(Message::text(
            r#"{"action":"sip-register","useragent":"raw"}"#,
        ))
        .await
        .unwrap();
    let reply = tokio::time::timeout(common::emulator::WAIT, async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message
                && text.contains("sip-register")
            {
                return text.to_string();
            }
        }
        panic!("socket closed after malformed frames");
    })
    .await
    .expect("sip-register reply");
    assert!(reply.contains("\"add\":true"), "{reply}");

    let huge = format!("{{\"action\":\"blf\",\"pad\":\"{}\"}}", "x".repeat(2 << 20));
    socket.send(Message::text(huge)).await.unwrap();
    let code = tokio::time::timeout(common::emulator::WAIT, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => return Some(u16::from(frame.code)),
                Ok(Message::Close(None)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        None
    })
    .await
    .expect("socket closes");
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn sockets_without_a_valid_session_are_refused() {
    let pbx = relay_pbx().await;
    let s = settings(&pbx, "500", third_party(common::emulator::ADMIN_PASSWORD));
    let forged = callbot::config::Secret::new("0123456789abcdef0123456789abcdef");
    let result =
        callbot::connection::open_socket(&s.base, &s.domain, "500", &forged, s.tls.clone()).await;
    assert!(
        matches!(result, Err(callbot::connection::SocketError::Refused(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let pbx = relay_pbx().await;
    let client = common::insecure_http();
    let url = pbx.url().join("rest/system/session").unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = client
            .put(url.clone())
            .json(&serde_json::json!({"name": "auth", "value": "502 0000"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..6], &[200; 6], "wrong passwords answer false");
    assert_eq!(
        &statuses[6..],
        &[429, 429],
        "then the account waits a while at this address"
    );
    let digest = callbot::protocol::password_digest("503");
    let other = client
        .put(url)
        .json(&serde_json::json!({"name": "auth", "value": format!("503 {digest}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "another account logs in from here");
    assert!(other.json::<serde_json::Value>().await.unwrap().is_string());
}

/// Every registration of an extension rings, as on a PBX: a 486 from one does not end the call
/// while others still ring, the first answer wins, and the rest get `cancel`.
#[tokio::test]
async fn every_registration_rings_and_the_first_answer_wins() {
    let pbx = relay_pbx().await;
    let mut caller = TestClient::ready(&pbx, "501").await;
    let mut busy = TestClient::ready(&pbx, "502").await;
    let mut answering = TestClient::ready(&pbx, "502").await;
    let mut late = TestClient::ready(&pbx, "502").await;
    let callid = CallId::random();
    caller.dial("502", &callid, OFFER).await;
    let busy_invite = next_frame!(busy, InviteSdp);
    let invite = next_frame!(answering, InviteSdp);
    let late_invite = next_frame!(late, InviteSdp);
    busy.send(ClientFrame::SipBusy {
        callid: busy_invite.callid,
        cseq: busy_invite.cseq,
        code: SipCode::BUSY_HERE,
    })
    .await;
    wait_until(&pbx, |events| events.iter().any(|e| e["kind"] == "busy")).await;
    answering
        .send(ClientFrame::Sdp200Ok {
            callid: invite.callid.clone(),
            cseq: invite.cseq.clone(),
            answer: ANSWER.into(),
        })
        .await;
    let answer = caller
        .frame("the answer", |f| match f {
            ServerFrame::Bye(bye) => panic!("the call ended while a registration rang: {bye:?}"),
            ServerFrame::Sdp(sdp) if sdp.code == Some(SipCode::OK) => Some(sdp.clone()),
            _ => None,
        })
        .await;
    assert_eq!(answer.sdp.text, ANSWER);
    let cancel = next_frame!(late, Cancel);
    assert_eq!(cancel.callid, late_invite.callid);
    let calls = emulator(&pbx, "calls").await;
    let legs = calls[0]["legs"].as_array().unwrap();
    let connected: Vec<&str> = legs
        .iter()
        .filter(|l| l["state"] == "connected")
        .map(|l| l["callid"].as_str().unwrap())
        .collect();
    assert_eq!(
        connected,
        [callid.as_str(), invite.callid.as_str()],
        "{calls}"
    );
    assert_eq!(legs.len(), 4, "{calls}");
}
