//! Two media legs in one process over 127.0.0.1: prompts, DTMF, rollback, echo, recording.
//!
//! The webrtc-rs pitfalls of docs/architecture.md "Media" each have a test: the event handler that
//! `build()` needs (every leg here is built with one), telephone-event registered with an empty
//! track codec (`rfc4733_digits_arrive_once_each_in_order`: PT 101 arrives), offers listing
//! telephone-event at 48 and 8 kHz (`browser_offer_with_two_telephone_events_keeps_the_8k_one`),
//! and packets lost right after connect (silence first: `media::player` unit tests).
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use callbot::media::codec::Codec;
use callbot::media::dtmf::Digit;
use callbot::media::inband::goertzel_power;
use callbot::media::player::Outcome;
use callbot::media::prompt::{PromptError, load};
use callbot::media::transport::{IceServer, NetworkSettings, PortRange, Sockets};
use callbot::media::{LegEvent, MediaRuntime, RecordOptions};
use common::audio::channel;
use common::emulator::media_runtime;
use common::legs::{Peer, connect, connected_pair, only_payload_types, two_legs, two_legs_on};
use common::wait;
use hound::{SampleFormat, WavSpec, WavWriter};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// A 44.1 kHz stereo float WAV of a 440 Hz sine, to exercise conversion.
fn write_sine_wav(path: &Path, seconds: f32) {
    let spec = WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 32,
        sample_format: SampleFormat::Float,
    };
    let mut writer = WavWriter::create(path, spec).unwrap();
    for i in 0..(44100.0 * seconds) as usize {
        let x = (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 44100.0).sin() * 0.5;
        writer.write_sample(x).unwrap();
        writer.write_sample(x).unwrap();
    }
    writer.finalize().unwrap();
}

/// Seconds of audible signal, and the strongest frequency between 300 and 600 Hz.
fn analyse(samples: &[f32], rate: u32) -> (f32, f32) {
    let window = (rate / 100) as usize;
    let loud: Vec<usize> = samples
        .chunks(window)
        .enumerate()
        .filter(|(_, w)| w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32 > 0.001)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (loud[0], *loud.last().unwrap());
    let seconds = (last - first + 1) as f32 * window as f32 / rate as f32;
    let middle = &samples[(first + 20) * window..(last - 20) * window];
    let dominant = (300..=600)
        .map(|f| (f as f32, goertzel_power(middle, f as f32, rate as f32)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    (seconds, dominant)
}

async fn prompt_reaches_the_recording(edit: impl Fn(&str) -> String, expected: Codec) {
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("sine.wav");
    write_sine_wav(&prompt, 2.0);
    let media = media_runtime();
    let (mut a, mut b) = connected_pair(&media, edit).await;
    assert_eq!(a.leg.negotiated().unwrap().codec, expected);
    assert_eq!(b.leg.negotiated().unwrap().codec, expected);
    let recording = dir.path().join("rec/b.wav");
    b.leg.record(RecordOptions {
        path: recording.clone(),
        stereo: true,
        max_secs: None,
    });
    let id = 1;
    a.leg.play(id, prompt, 1);
    assert!(matches!(a.played(id).await, Outcome::Done));
    b.received_all_sent_by(&a.leg).await;
    b.leg.stop_recording();
    let (path, _) = b.recording_closed().await;
    let (left, rate) = channel(&path, 0);
    assert_eq!(rate, expected.clock_rate());
    let (seconds, dominant) = analyse(&left, rate);
    assert!(
        (dominant - 440.0).abs() <= 5.0,
        "{expected:?}: dominant {dominant} Hz"
    );
    // The prompt keeps its length whatever the load: a late clock sends the frames that were
    // due with their own timestamps, and the recorder places them by timestamp.
    assert!(
        (seconds - 2.0).abs() <= 0.1,
        "{expected:?}: {seconds} s of audio; sent {:?}; received {:?}",
        a.leg.stats(),
        b.leg.stats()
    );
    let stats = b.leg.stats();
    assert!(stats.packets_received > 100, "{stats:?}");
    assert!(a.leg.stats().connect_time.is_some());
    a.leg.close().await;
    b.leg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_prompt_is_recorded_at_440_hz() {
    prompt_reaches_the_recording(|sdp| sdp.to_owned(), Codec::Pcmu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_prompt_is_recorded_at_440_hz() {
    prompt_reaches_the_recording(|sdp| only_payload_types(sdp, &["8", "101"]), Codec::Pcma).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_prompt_is_recorded_at_440_hz() {
    prompt_reaches_the_recording(|sdp| only_payload_types(sdp, &["111", "101"]), Codec::Opus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4733_digits_arrive_once_each_in_order() {
    let media = media_runtime();
    let (mut a, mut b) = connected_pair(&media, |sdp| sdp.to_owned()).await;
    assert_eq!(b.leg.negotiated().unwrap().telephone_event, Some(101));
    let id = 1;
    a.leg.send_dtmf(id, "0123456789*#").unwrap();
    assert_eq!(b.digits(12, false).await, "0123456789*#");
    assert!(matches!(a.played(id).await, Outcome::Done));
    // Nothing more arrives: no duplicates from the repeated end packets.
    b.received_all_sent_by(&a.leg).await;
    while let Ok(event) = b.events.try_recv() {
        assert!(!matches!(event, LegEvent::Digit { .. }), "extra {event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inband_digits_in_a_prompt_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("keys.wav");
    let spec = WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut writer = WavWriter::create(&prompt, spec).unwrap();
    for c in "0123456789*#".chars() {
        let tone = callbot::media::tone::dtmf_tone(Digit::from_char(c).unwrap(), 16000, 100);
        for s in tone.into_iter().chain(std::iter::repeat_n(0, 1600)) {
            writer.write_sample(s).unwrap();
        }
    }
    writer.finalize().unwrap();
    let media = media_runtime();
    // No telephone-event: B must listen to the audio.
    let (a, mut b) = connected_pair(&media, |sdp| only_payload_types(sdp, &["0"])).await;
    assert_eq!(b.leg.negotiated().unwrap().telephone_event, None);
    a.leg.play(1, prompt, 1);
    assert_eq!(b.digits(12, true).await, "0123456789*#");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_then_answer_the_other_offer() {
    let media = media_runtime();
    let (mut a, mut b) = two_legs(&media).await;
    let _ours = a.leg.create_offer().await.unwrap();
    let theirs = b.leg.create_offer().await.unwrap();
    a.leg.rollback().await.unwrap();
    let answer = a.leg.accept_offer(&theirs).await.unwrap();
    b.leg.apply_answer(&answer).await.unwrap();
    a.connected().await;
    b.connected().await;
    let id = 1;
    a.leg.tone(id, 440.0, 400);
    assert!(matches!(a.played(id).await, Outcome::Done));
    b.received_all_sent_by(&a.leg).await;
    assert!(b.leg.stats().packets_received >= 20, "{:?}", b.leg.stats());
    assert!(a.leg.stats().packets_received >= 10, "{:?}", a.leg.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_offer_with_two_telephone_events_keeps_the_8k_one() {
    let media = media_runtime();
    let (a, b) = two_legs(&media).await;
    let offer = a.leg.create_offer().await.unwrap();
    // Make it look like Chromium's: telephone-event at 48 kHz listed before the 8 kHz one.
    let browser_like = offer.replace(" 101\r\n", " 110 101\r\n").replace(
        "a=rtpmap:101 telephone-event/8000",
        "a=rtpmap:110 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000",
    );
    assert!(browser_like.contains("telephone-event/48000"));
    let answer = b.leg.accept_offer(&browser_like).await.unwrap();
    assert_eq!(b.leg.negotiated().unwrap().telephone_event, Some(101));
    let media_line = answer.lines().find(|l| l.starts_with("m=audio")).unwrap();
    let types: Vec<&str> = media_line.split(' ').skip(3).collect();
    let unique: std::collections::HashSet<&&str> = types.iter().collect();
    assert_eq!(
        types.len(),
        unique.len(),
        "duplicate payload types in {media_line}"
    );
    assert!(!answer.contains("telephone-event/48000"));
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn bad_prompts_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    assert!(matches!(
        load(&missing, Codec::Pcmu),
        Err(PromptError::NotFound(_))
    ));
    let not_wav = write_bytes(
        dir.path(),
        "text.wav",
        b"this is not audio at all, just text",
    );
    assert!(matches!(
        load(&not_wav, Codec::Pcmu),
        Err(PromptError::NotWav { .. })
    ));
    let empty_file = write_bytes(dir.path(), "empty.wav", b"");
    assert!(matches!(
        load(&empty_file, Codec::Pcmu),
        Err(PromptError::Truncated(_))
    ));

    let spec = WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let silent = dir.path().join("zero.wav");
    WavWriter::create(&silent, spec)
        .unwrap()
        .finalize()
        .unwrap();
    assert!(matches!(
        load(&silent, Codec::Pcmu),
        Err(PromptError::Empty(_))
    ));

    let full = dir.path().join("full.wav");
    let mut writer = WavWriter::create(&full, spec).unwrap();
    for i in 0..8000 {
        writer.write_sample(i as i16).unwrap();
    }
    writer.finalize().unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let truncated = write_bytes(dir.path(), "cut.wav", &bytes[..bytes.len() / 2]);
    assert!(matches!(
        load(&truncated, Codec::Pcmu),
        Err(PromptError::Truncated(_))
    ));
    let error = load(&truncated, Codec::Pcmu).unwrap_err().to_string();
    assert!(error.contains("cut.wav"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prompt_is_reported_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let media = media_runtime();
    let (mut a, _b) = connected_pair(&media, |sdp| sdp.to_owned()).await;
    let (bad, tone) = (1, 2);
    a.leg.play(bad, dir.path().join("nope.wav"), 1);
    a.leg.tone(tone, 300.0, 100);
    assert!(
        matches!(a.played(bad).await, Outcome::Failed(e) if matches!(*e, PromptError::NotFound(_)))
    );
    assert!(matches!(a.played(tone).await, Outcome::Done));
}

const CHILD_ENV: &str = "CALLBOT_TEST_RECORDING_CHILD";
const CHILD_READY: &str = "recording started";

/// Run by `recording_survives_sigkill` in a child process: records a call until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for recording_survives_sigkill"]
async fn recording_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let media = media_runtime();
    let (a, b) = connected_pair(&media, |sdp| sdp.to_owned()).await;
    b.leg.record(RecordOptions {
        path: PathBuf::from(path),
        stereo: true,
        max_secs: None,
    });
    a.leg.tone(1, 440.0, 60_000);
    println!("{CHILD_READY}");
    // Records until the parent kills this process.
    std::future::pending::<()>().await;
}

#[test]
fn recording_survives_sigkill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.wav");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "recording_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(CHILD_READY));
    assert!(ready, "child never started recording");
    let started = std::time::Instant::now();
    // Killed once its header says it holds two seconds (rewritten about once a second).
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(wait::wav_reaches(&path, 2.0, Duration::from_secs(30)));
    let recorded_for = started.elapsed();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut reader = hound::WavReader::open(&path).expect("a killed recording is a valid WAV");
    let spec = reader.spec();
    let seconds = reader.duration() as f32 / spec.sample_rate as f32;
    let samples: Result<Vec<i16>, _> = reader.samples::<i16>().collect();
    let samples = samples.expect("every sample the header counts is readable");
    assert!(
        seconds >= recorded_for.as_secs_f32() - 1.3,
        "only {seconds} s of {recorded_for:?} survived"
    );
    assert!(samples.iter().any(|&s| s != 0), "the recording holds audio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_sends_back_what_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("sine.wav");
    write_sine_wav(&prompt, 1.0);
    let media = media_runtime();
    let (mut a, b) = connected_pair(&media, |sdp| sdp.to_owned()).await;
    b.leg.set_echo(true);
    a.leg.record(RecordOptions {
        path: dir.path().join("a.wav"),
        stereo: true,
        max_secs: None,
    });
    let id = 1;
    a.leg.play(id, prompt, 1);
    assert!(matches!(a.played(id).await, Outcome::Done));
    // The echo of the prompt's end comes back through B.
    b.received_all_sent_by(&a.leg).await;
    a.received_all_sent_by(&b.leg).await;
    a.leg.stop_recording();
    let (path, _) = a.recording_closed().await;
    let (left, rate) = channel(&path, 0);
    let (seconds, dominant) = analyse(&left, rate);
    assert!((dominant - 440.0).abs() <= 5.0, "echo at {dominant} Hz");
    assert!((seconds - 1.0).abs() <= 0.1, "{seconds} s echoed");
}

#[test]
fn absurd_sample_rates_are_unsupported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [10, 1_000_000] {
        let path = dir.path().join(format!("odd-{rate}.wav"));
        let spec = WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let mut writer = WavWriter::create(&path, spec).unwrap();
        writer.write_sample(1i16).unwrap();
        writer.finalize().unwrap();
        let result = load(&path, Codec::Pcmu);
        assert!(
            matches!(result, Err(PromptError::Unsupported { .. })),
            "{rate} Hz"
        );
    }
}

/// Waits until `peer` has received `count` packets (statistics are published every 100 ms).
async fn received(peer: &Peer, count: u64) -> u64 {
    timeout(WAIT, async {
        loop {
            let got = peer.leg.stats().packets_received;
            if got >= count {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} packets never arrived: {:?}", peer.leg.stats()))
}

/// One engine thread, so every leg shares its socket: the two pairs' far ends are on that same
/// port, and the engine has to tell the calls apart (some legs move to a socket of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_sharing_one_port_with_their_far_ends_connect_and_talk() {
    let media = MediaRuntime::start(NetworkSettings {
        threads: 1,
        ..common::emulator::loopback()
    })
    .expect("media runtime");
    let shared = format!("127.0.0.1 {} typ host", media.ports()[0]);
    let (a, b) = connected_pair(&media, |sdp| sdp.to_owned()).await;
    let (c, d) = connected_pair(&media, |sdp| sdp.to_owned()).await;
    let moved = [&a, &b, &c, &d]
        .iter()
        .filter(|peer| peer.candidates.iter().any(|c| !c.contains(&shared)))
        .count();
    assert!(
        moved >= 2,
        "legs that moved to a port of their own: {moved}"
    );
    for (from, to) in [(&a, &b), (&b, &a), (&c, &d), (&d, &c)] {
        from.leg.tone(1, 440.0, 1000);
        received(to, 20).await;
    }
    // Each leg hears its own far end only: once another second of packets has gone each way,
    // no leg has received more than its far end sent (give or take the 100 ms between two
    // statistics snapshots); another call's stream would add about 50 a second.
    let pairs = [(&a, &b), (&b, &a), (&c, &d), (&d, &c)];
    for (_, far) in pairs {
        let target = far.leg.stats().packets_sent + 50;
        let leg = far.leg.clone();
        wait::until("another second of packets", WAIT, || {
            let sent = leg.stats().packets_sent;
            async move { (sent >= target).then_some(()) }
        })
        .await;
    }
    for (peer, far) in pairs {
        let stats = peer.leg.stats();
        let sent = far.leg.stats().packets_sent;
        assert_eq!(stats.packets_lost, 0, "{stats:?}");
        assert!(
            stats.packets_received <= sent + 10,
            "another call's packets: {stats:?}, of {sent} sent by the far end"
        );
    }
}

/// `media.ports`: the engine thread binds the port, and host candidates name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_port_carries_the_calls() {
    let port = {
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let ports = Some(PortRange {
        first: port,
        last: port,
    });
    let media = MediaRuntime::start(NetworkSettings {
        ports,
        ..common::emulator::loopback()
    })
    .expect("media runtime on the chosen port");
    assert_eq!(media.ports(), vec![port]);
    // A second engine cannot have the port.
    let taken = MediaRuntime::start(NetworkSettings {
        ports,
        ..common::emulator::loopback()
    });
    let error = taken.err().expect("the port is taken").to_string();
    assert!(error.contains(&port.to_string()), "{error}");
    // The far end has sockets of its own, as a phone has.
    let phones = MediaRuntime::start(NetworkSettings {
        sockets: Sockets::PerLeg,
        ..common::emulator::loopback()
    })
    .expect("media runtime");
    let (mut a, mut b) = two_legs_on(&media, &phones).await;
    let offer = a.leg.create_offer().await.unwrap();
    let answer = b.leg.accept_offer(&offer).await.unwrap();
    a.leg.apply_answer(&answer).await.unwrap();
    let host = format!("127.0.0.1 {port} typ host");
    let ours = a
        .wait_for(|e| match e {
            LegEvent::LocalCandidate(c) => Some(c.candidate.clone()),
            _ => None,
        })
        .await;
    assert!(ours.contains(&host), "{ours}");
    let theirs = b
        .wait_for(|e| match e {
            LegEvent::LocalCandidate(c) => Some(c.candidate.clone()),
            _ => None,
        })
        .await;
    assert!(!theirs.contains(&host), "the phone's own port: {theirs}");
    a.connected().await;
    b.connected().await;
    a.leg.tone(1, 440.0, 1000);
    received(&b, 20).await;
}

/// A STUN server on loopback that tells every asker it came from 203.0.113.7 (the outside of a
/// NAT), keeping the asker's port.
async fn fake_stun_server() -> std::net::SocketAddr {
    use rtc::stun::message::{BINDING_SUCCESS, Message, Setter};
    use rtc::stun::xoraddr::XorMappedAddress;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buffer).await {
            let answer = {
                let mut request = Message::new();
                if request.unmarshal_binary(&buffer[..n]).is_err() {
                    continue;
                }
                let mut answer = Message::new();
                let setters: [Box<dyn Setter>; 3] = [
                    Box::new(BINDING_SUCCESS),
                    Box::new(request.transaction_id),
                    Box::new(XorMappedAddress {
                        ip: [203, 0, 113, 7].into(),
                        port: from.port(),
                    }),
                ];
                answer.build(&setters).unwrap();
                answer.raw
            };
            let _ = socket.send_to(&answer, from).await;
        }
    });
    address
}

/// `media.ice_servers`: each socket asks the STUN server what it looks like from outside, and
/// its legs offer that as a server-reflexive candidate (the call itself still goes over the
/// host candidates here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stun_server_yields_server_reflexive_candidates() {
    let server = fake_stun_server().await;
    let settings = |sockets| NetworkSettings {
        ice_servers: vec![IceServer {
            urls: vec![format!("stun:{server}")],
            ..IceServer::default()
        }],
        threads: 1,
        sockets,
        ..common::emulator::loopback()
    };
    let media = MediaRuntime::start(settings(Sockets::Shared)).unwrap();
    let phones = MediaRuntime::start(settings(Sockets::PerLeg)).unwrap();
    let (mut a, mut b) = two_legs_on(&media, &phones).await;
    let offer = a.leg.create_offer().await.unwrap();
    let answer = b.leg.accept_offer(&offer).await.unwrap();
    a.leg.apply_answer(&answer).await.unwrap();
    a.connected().await;
    b.connected().await;
    for (peer, port) in [(&mut a, Some(media.ports()[0])), (&mut b, None)] {
        let reflexive = match peer.candidates.iter().find(|c| c.contains("typ srflx")) {
            Some(seen) => seen.clone(),
            None => {
                peer.wait_for(|e| match e {
                    LegEvent::LocalCandidate(c) if c.candidate.contains("typ srflx") => {
                        Some(c.candidate.clone())
                    }
                    _ => None,
                })
                .await
            }
        };
        assert!(reflexive.contains("203.0.113.7"), "{reflexive}");
        if let Some(port) = port {
            assert!(
                reflexive.contains(&format!("203.0.113.7 {port} typ srflx")),
                "{reflexive}"
            );
        }
    }
}

/// coturn on 127.0.0.1 (Debian's `coturn`, which `make test-deps` installs), relaying to
/// loopback peers for the user `bot`; its log is shown if the test fails, and it is killed when
/// dropped.
struct Coturn {
    _server: common::binary::Process,
    address: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

const TURN_USER: &str = "bot";
const TURN_PASSWORD: &str = "relay-me";

/// Starts coturn and waits until it answers a STUN request. coturn cannot be told to pick its
/// own port, so the OS picks one for a socket that is closed just before coturn binds it; if
/// something else took it meanwhile (coturn then logs that it cannot bind), another port is
/// tried.
fn coturn() -> Coturn {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        if let Some(turn) = coturn_on(free_udp_port()) {
            return turn;
        }
    }
    panic!("coturn found no free port in {ATTEMPTS} attempts");
}

/// A UDP port on 127.0.0.1 that the OS picked and that is free again.
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// coturn listening on `port`, once it answers there; `None` if the port was taken.
fn coturn_on(port: u16) -> Option<Coturn> {
    let dir = tempfile::tempdir().unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut command =
        std::process::Command::new(common::binary::debian_tool("turnserver", "coturn"));
    command
        .args([
            "-n",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
        ])
        .args(["--listening-port", &port.to_string()])
        .args(["--lt-cred-mech", "--realm", "callbot.test"])
        .args(["--user", &format!("{TURN_USER}:{TURN_PASSWORD}")])
        .args([
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
        ])
        .args(["--no-tcp", "--log-file", "stdout", "--simple-log"])
        .arg("--userdb")
        .arg(dir.path().join("turndb"))
        .arg("--pidfile")
        .arg(dir.path().join("turnserver.pid"));
    let server = common::binary::Process::spawn_command(command);
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if stun_answers(address) {
            return Some(Coturn {
                _server: server,
                address,
                _dir: dir,
            });
        }
        if server.output().contains("Cannot bind") {
            return None;
        }
    }
    panic!(
        "coturn did not answer on {address} within {WAIT:?}; its log:\n{}",
        server.output()
    );
}

/// Whether a STUN binding request to `address` gets its success response within a poll
/// interval.
fn stun_answers(address: std::net::SocketAddr) -> bool {
    use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter, TransactionId};
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.set_read_timeout(Some(common::wait::POLL)).unwrap();
    let mut request = Message::new();
    let setters: [Box<dyn Setter>; 2] = [Box::new(BINDING_REQUEST), Box::new(TransactionId::new())];
    request.build(&setters).unwrap();
    if probe.send_to(&request.raw, address).is_err() {
        return false;
    }
    let mut buffer = [0u8; 1500];
    let Ok((length, from)) = probe.recv_from(&mut buffer) else {
        return false;
    };
    let mut response = Message::new();
    from == address
        && response.unmarshal_binary(&buffer[..length]).is_ok()
        && response.typ == BINDING_SUCCESS
        && response.transaction_id == request.transaction_id
}

/// `turn:` servers relay. With `relay_only` the bot's legs offer nothing but the relay's
/// address, so these calls can only go through coturn: two calls on one engine socket (and so
/// one allocation) connect, and audio flows both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_a_turn_relay() {
    let turn = coturn();
    let media = MediaRuntime::start(NetworkSettings {
        ice_servers: vec![IceServer {
            urls: vec![format!("turn:{}", turn.address)],
            username: TURN_USER.into(),
            credential: callbot::config::Secret::new(TURN_PASSWORD),
        }],
        relay_only: true,
        threads: 1,
        ..common::emulator::loopback()
    })
    .unwrap();
    let phones = MediaRuntime::start(NetworkSettings {
        sockets: Sockets::PerLeg,
        ..common::emulator::loopback()
    })
    .unwrap();
    let first = connect(two_legs_on(&media, &phones).await, |sdp| sdp.to_owned()).await;
    let second = connect(two_legs_on(&media, &phones).await, |sdp| sdp.to_owned()).await;
    for (bot, phone) in [&first, &second] {
        assert!(!bot.candidates.is_empty());
        for candidate in &bot.candidates {
            assert!(candidate.contains("typ relay"), "{candidate}");
        }
        bot.leg.tone(1, 440.0, 1000);
        phone.leg.tone(1, 440.0, 1000);
        received(phone, 20).await;
        received(bot, 20).await;
    }
}
