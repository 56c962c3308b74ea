//! Structured fuzzers for what `tests/fuzz.rs` (frames, config) does not reach: SDP and ICE
//! candidate handling (our edits and the WebRTC stack's parser), the call state machine fed
//! random inputs, and the script API driven by random command sequences. CI runs short smoke
//! passes; for a long run:
//!
//! ```text
//! FUZZ_ITERATIONS=10000000 cargo test --release --test fuzz_targets -- --ignored --nocapture
//! ```
//!
//! (`FUZZ_ONLY=sdp,machine,script,stack` runs some of the targets.)
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use callbot::call::{
    Action, ActionQueue, Call, CallCommand, CallEvent, CallHandler, CallInfo, Command, Direction,
    Gather, Input, MediaResult, Output, Timer,
};
use callbot::config::{DialPattern, DialPolicy};
use callbot::media::sdp::{answer_with_setup_fixed, first_mid, without_wideband_telephone_events};
use callbot::protocol::{
    CallId, CandidateAddress, Dialect, Invite, RemoteCandidate, Sdp, ServerFrame,
};
use callbot::script::{BotApi, Limits, ScriptHost};
use common::mutate::{Mutator, Tally, env_number, guarded};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BROWSER_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126 110\r\n\
c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=ice-options:trickle\r\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:126 telephone-event/8000\r\na=rtpmap:110 telephone-event/48000\r\na=ssrc:1 cname:x\r\n";

const CANDIDATES: &[&str] = &[
    "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
    "a=candidate:842163049 1 udp 1677729535 203.0.113.7 61665 typ srflx raddr 10.0.0.2 rport 61665 generation 0",
    "candidate:2 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active",
];

const SDP_WORDS: &[&str] = &[
    "\r\n",
    "a=rtpmap:",
    "telephone-event/",
    "8000",
    "48000",
    "a=setup:actpass",
    "a=mid:",
    "m=audio ",
    "a=fmtp:",
    " ",
    "/",
    ":",
    "candidate:",
    "typ ",
    "host",
    "udp",
    "65535",
    "-1",
    "\u{0}",
    "é",
];

fn seeds() -> Vec<Vec<u8>> {
    std::iter::once(BROWSER_OFFER)
        .chain(CANDIDATES.iter().copied())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// Our own SDP and candidate code on mutated text.
fn sdp_and_candidates(iterations: u64, seed: u64) -> usize {
    let corpus = seeds();
    let mut mutator = Mutator::new(StdRng::seed_from_u64(seed));
    let mut tally = Tally::new("sdp+candidates");
    for case in 0..iterations {
        let input = &corpus[mutator.rng.random_range(0..corpus.len())];
        let mutated = mutator.mutate(input, &corpus, SDP_WORDS);
        let text = String::from_utf8_lossy(&mutated).into_owned();
        let port = mutator.rng.random();
        tally.add(guarded("sdp", seed, case, &mutated, || {
            let stripped = without_wideband_telephone_events(&text);
            // It only drops lines (and writes CRLF line ends).
            assert!(stripped.lines().count() <= text.lines().count() + 1);
            let _ = first_mid(&stripped);
            let _ = answer_with_setup_fixed(&text);
            let candidate = RemoteCandidate {
                callid: None,
                candidate: text.clone(),
                addresses: vec![CandidateAddress {
                    ip: "127.0.0.1".into(),
                    port,
                }],
            };
            let expanded = candidate.lines();
            let plain = RemoteCandidate {
                addresses: vec![],
                ..candidate
            }
            .lines();
            expanded.is_ok() || plain.is_ok()
        }));
    }
    tally.finish()
}

/// The WebRTC stack's own parser, through a media leg, on mutated offers and candidates: a
/// panic there would take a call's task down.
fn media_stack(iterations: u64, seed: u64) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let media = callbot::media::MediaRuntime::start(common::emulator::loopback()).unwrap();
    let corpus = seeds();
    let mut mutator = Mutator::new(StdRng::seed_from_u64(seed));
    let mut tally = Tally::new("media stack SDP");
    for case in 0..iterations {
        let mutated = mutator.mutate(&corpus[0], &corpus, SDP_WORDS);
        let text = String::from_utf8_lossy(&mutated).into_owned();
        let candidate = String::from_utf8_lossy(&mutator.mutate(
            corpus[1 + case as usize % CANDIDATES.len()].as_slice(),
            &corpus,
            SDP_WORDS,
        ))
        .into_owned();
        let media = media.clone();
        let outcome = runtime.block_on(async move {
            tokio::spawn(async move {
                let (leg, _events) = media.new_leg().await.ok()?;
                let remote = RemoteCandidate {
                    callid: None,
                    candidate,
                    addresses: vec![],
                };
                let _ = leg.add_remote_candidate(&remote).await;
                let answered = leg.accept_offer(&text).await.is_ok();
                let _ = leg.add_remote_candidate(&remote).await;
                leg.close().await;
                Some(answered)
            })
            .await
        });
        match outcome {
            Ok(answered) => tally.add(Some(answered.unwrap_or(false))),
            Err(_) => {
                let _ = guarded("media", seed, case, &mutated, || {
                    panic!("leg task panicked")
                });
                tally.add(None);
            }
        }
    }
    tally.finish()
}

fn random_input(rng: &mut StdRng, ids: &[CallId]) -> Input {
    let id = ids[rng.random_range(0..ids.len())].clone();
    let sdp = if rng.random() {
        Sdp::offer("o")
    } else {
        Sdp::answer("a")
    };
    let code = [
        None,
        Some(180),
        Some(183),
        Some(200),
        Some(415),
        Some(486),
        Some(404),
        Some(603),
        Some(480),
    ][rng.random_range(0..9)]
    .map(callbot::protocol::SipCode);
    let cseq = callbot::protocol::Cseq::Number(rng.random_range(0..5));
    match rng.random_range(0..18) {
        0 => Input::Frame(ServerFrame::Sdp(callbot::protocol::SdpFrame {
            callid: id,
            cseq: Some(cseq),
            code,
            reason: None,
            sdp,
        })),
        1 => Input::Frame(ServerFrame::Bye(callbot::protocol::Bye {
            callid: id,
            cseq: Some(cseq),
            code,
            reason: None,
        })),
        2 => Input::Frame(ServerFrame::Cancel(callbot::protocol::CallRef {
            callid: id,
            cseq: None,
        })),
        3 => Input::Frame(ServerFrame::Candidate(RemoteCandidate {
            callid: Some(id),
            candidate: CANDIDATES[0].into(),
            addresses: vec![],
        })),
        4 => Input::Frame(ServerFrame::InviteSdp(Invite {
            callid: id,
            cseq,
            from: "1".into(),
            to: "2".into(),
            from_user: None,
            from_display: None,
            sdp,
        })),
        5 => Input::Command(Command::Answer),
        6 => Input::Command(Command::Reject(callbot::protocol::SipCode(486))),
        7 => Input::Command(Command::Hangup),
        8 => Input::Command(Command::Hold),
        9 => Input::Command(Command::Resume),
        10 => Input::Command(Command::Transfer("700".into())),
        11 => Input::Media(match rng.random_range(0..4) {
            0 => MediaResult::Offer("o".into()),
            1 => MediaResult::Answer("a".into()),
            2 => MediaResult::AnswerApplied,
            _ => MediaResult::Failed("x".into()),
        }),
        12 => Input::LocalCandidate(callbot::protocol::IceCandidate {
            candidate: CANDIDATES[0].into(),
            sdp_mid: None,
            sdp_mline_index: Some(0),
            username_fragment: None,
        }),
        13 => Input::MediaLost,
        14 => Input::Timer(Timer::Ring),
        15 => Input::Command(Command::AttendedTransfer {
            id2: ids[rng.random_range(0..ids.len())].clone(),
            to: "509".into(),
        }),
        16 => Input::Command(Command::TransferPending),
        _ => Input::LinkLost,
    }
}

/// The call state machine fed random inputs: it never panics, goes quiet once ended, and every
/// frame it sends encodes to a frame that decodes back the same.
fn call_machine(iterations: u64, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::new("call machine");
    for case in 0..iterations {
        let ids = [
            CallId::from_bits(1),
            CallId::from_bits(2),
            CallId::from_bits(3),
        ];
        let dialect = if rng.random() {
            Dialect::Modern
        } else {
            Dialect::Legacy
        };
        let inputs: Vec<Input> = (0..rng.random_range(1..24))
            .map(|_| random_input(&mut rng, &ids))
            .collect();
        let inbound: bool = rng.random();
        let record = format!("{dialect:?} inbound={inbound} {inputs:?}");
        tally.add(guarded("machine", seed, case, record.as_bytes(), || {
            let (mut call, first) = if inbound {
                let invite = Invite {
                    callid: ids[0].clone(),
                    cseq: callbot::protocol::Cseq::Number(1),
                    from: "1".into(),
                    to: "2".into(),
                    from_user: None,
                    from_display: None,
                    sdp: Sdp::offer("o"),
                };
                Call::inbound(&invite, dialect, "2", Duration::from_secs(60))
            } else {
                Call::outbound("1", ids[0].clone(), dialect, "2", Duration::from_secs(60))
            };
            let mut ended = first.iter().any(|o| matches!(o, Output::Ended(_)));
            for input in inputs {
                let outputs = call.handle(input);
                assert!(
                    !ended || outputs.is_empty(),
                    "output after the end: {outputs:?}"
                );
                for output in &outputs {
                    if let Output::Send(frame) = output {
                        let again =
                            callbot::protocol::ClientFrame::decode(&frame.encode()).unwrap();
                        assert_eq!(&again, frame);
                    }
                }
                ended |= outputs.iter().any(|o| matches!(o, Output::Ended(_)));
            }
            ended
        }));
    }
    tally.finish()
}

const API_CALLS: &[&str] = &[
    "call.answer()",
    "call.reject()",
    "call.reject(#)",
    "call.hangup()",
    "call.stop()",
    "call.gather(#{ max: #, timeout_ms: #, terminator: $, prompt: $, barge_in: # })",
    "call.gather(#{ bogus: 1 })",
    "call.gather()",
    "call.record()",
    "call.record(#{ stereo: #, max_secs: # })",
    "call.stop_recording()",
    "call.echo(true)",
    "call.set_timer($, #)",
    "call.cancel_timer($)",
    "call.set($, #)",
    "call.get($)",
    "call.set_result($)",
    "call.log($)",
    "call.play($)",
    "call.play($, #{ loops: # })",
    "call.pause(#)",
    "call.tone(#, #)",
    "call.tone(1.5, #)",
    "call.send_dtmf($)",
    "call.hold()",
    "call.resume()",
    "call.transfer($)",
    "call.say($)",
    "call.say($, #{ voice: $, rate: # })",
    "call.detect_machine()",
    "call.detect_machine(#{ greeting_ms: #, max_words: #, voice_threshold: 0.5 })",
    "call.detect_machine(#{ bogus: # })",
    "call.machine",
    "call.beep",
    "bot.dial($)",
    "bot.dial($, #{ a: $ })",
    "bot.set_timer($, #)",
    "bot.set($, #)",
    "bot.get($)",
    "bot.clients()",
    "call.id",
    "call.state",
    "call.digits",
    "call.vars",
    "call.end_reason",
    "call.duration_ms",
    "random(#)",
    "bot.vars",
    "call.gather_reason",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "486",
    "999999999999",
    "3.5",
    "\"7\"",
    "()",
    "[1,2]",
    "true",
];
const STRINGS: &[&str] = &[
    "\"\"",
    "\"../etc/passwd\"",
    "\"/abs.wav\"",
    "\"welcome.wav\"",
    "\"12#\"",
    "\"x\"",
    "\"5??\"",
    "\"500\"",
    "\"0900\"",
    "#{}",
    "1",
];

fn random_statement(rng: &mut StdRng) -> String {
    let template = API_CALLS[rng.random_range(0..API_CALLS.len())];
    let mut out = String::new();
    for c in template.chars() {
        match c {
            '#' => out.push_str(NUMBERS[rng.random_range(0..NUMBERS.len())]),
            '$' => out.push_str(STRINGS[rng.random_range(0..STRINGS.len())]),
            other => out.push(other),
        }
    }
    out
}

/// Random sequences of script API calls with random arguments, run as `on_incoming_call`; the
/// commands they produce drive the action queue and digit collection.
fn script_api(iterations: u64, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let (commands, _keep) = tokio::sync::mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let bot = BotApi::new(
        "fuzz",
        "500",
        &BTreeMap::from([("q".to_owned(), "700".to_owned())]),
        dir.path().to_owned(),
        DialPolicy::new(vec![DialPattern::parse("5??").unwrap()]),
        callbot::script::DEFAULT_MEMORY_BYTES,
        commands,
    );
    let limits = Limits {
        operations: 20_000,
        ..Limits::default()
    };
    let host = ScriptHost::from_source(
        "fuzz.rhai",
        "fn on_start() {}",
        bot,
        limits,
        Default::default(),
    )
    .unwrap();
    let (inbox, _inputs) = tokio::sync::mpsc::unbounded_channel();
    let info = CallInfo::new(
        CallId::from_bits(9),
        Direction::Inbound,
        ("501", "Ann"),
        "500",
        BTreeMap::new(),
    );
    let mut tally = Tally::new("script API");
    for case in 0..iterations {
        let body: Vec<String> = (0..rng.random_range(1..8))
            .map(|_| random_statement(&mut rng))
            .collect();
        let script = format!(
            "fn on_incoming_call(call) {{\n    {};\n}}\n",
            body.join(";\n    ")
        );
        tally.add(guarded("script", seed, case, script.as_bytes(), || {
            if host.reload_source(&script).is_err() {
                return false;
            }
            let mut handler = host.call_handler(inbox.clone());
            let Ok(commands) = handler.handle(&info, &CallEvent::Incoming) else {
                return false;
            };
            let mut queue = ActionQueue::default();
            let mut gather: Option<Gather> = None;
            for (id, command) in commands.into_iter().enumerate() {
                match command {
                    CallCommand::Queue(action) => {
                        for ready in queue.push(action) {
                            if ready.is_media() {
                                queue.dispatched(id as u64);
                            }
                        }
                    }
                    CallCommand::Gather(options) => gather = Some(Gather::start(options).0),
                    _ => {}
                }
                let _ = queue.finished(id as u64);
            }
            if let Some(gather) = gather.as_mut() {
                for digit in "12#".chars() {
                    let _ = gather.digit(digit);
                }
                let _ = gather.timed_out();
            }
            let _ = Action::Hangup.is_media();
            true
        }));
    }
    tally.finish()
}

#[test]
fn smoke_sdp_and_candidates() {
    assert_eq!(sdp_and_candidates(20_000, 1), 0);
}

#[test]
fn smoke_media_stack() {
    assert_eq!(media_stack(200, 1), 0);
}

#[test]
fn smoke_call_machine() {
    assert_eq!(call_machine(20_000, 1), 0);
}

#[test]
fn smoke_script_api() {
    assert_eq!(script_api(2_000, 1), 0);
}

#[test]
#[ignore = "long run: FUZZ_ITERATIONS=10000000 cargo test --release --test fuzz_targets -- --ignored"]
fn long_runs() {
    let iterations = env_number("FUZZ_ITERATIONS", 1_000_000);
    let seed = env_number("FUZZ_SEED", 7);
    let stack = env_number("FUZZ_STACK_ITERATIONS", iterations / 50);
    // FUZZ_ONLY=sdp,machine,script,stack picks targets (default: all).
    let only = std::env::var("FUZZ_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|n| n == name);
    let mut panics = 0;
    if wanted("sdp") {
        panics += sdp_and_candidates(iterations, seed);
    }
    if wanted("machine") {
        panics += call_machine(iterations, seed);
    }
    if wanted("script") {
        panics += script_api(iterations, seed);
    }
    if wanted("stack") {
        panics += media_stack(stack, seed);
    }
    assert_eq!(panics, 0);
}
