//! Two media legs of one process connected to each other over 127.0.0.1, for tests that need
//! a call's media without signalling.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callbot::media::player::Outcome;
use callbot::media::recorder::RecordingReport;
use callbot::media::transport::TransportState;
use callbot::media::{LegEvent, LegEvents, MediaLeg, MediaRuntime};
use callbot::protocol::RemoteCandidate;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::wait;

const WAIT: Duration = Duration::from_secs(15);

/// A leg and what it reports (its candidates are passed to the other leg, and kept).
pub struct Peer {
    pub leg: Arc<MediaLeg>,
    pub events: mpsc::UnboundedReceiver<LegEvent>,
    /// The local candidates seen so far.
    pub candidates: Vec<String>,
}

impl Peer {
    /// The next event `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&LegEvent) -> Option<T>) -> T {
        timeout(WAIT, async {
            loop {
                let event = self.events.recv().await.expect("leg events ended");
                if let LegEvent::LocalCandidate(candidate) = &event {
                    self.candidates.push(candidate.candidate.clone());
                }
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out waiting for a leg event; candidates {:?}",
                self.candidates
            )
        })
    }

    pub async fn connected(&mut self) {
        self.wait_for(|e| matches!(e, LegEvent::State(TransportState::Connected)).then_some(()))
            .await;
    }

    pub async fn played(&mut self, id: u64) -> Outcome {
        self.wait_for(|e| match e {
            LegEvent::Played { id: got, outcome } if *got == id => Some(outcome.clone()),
            _ => None,
        })
        .await
    }

    pub async fn recording_closed(&mut self) -> (PathBuf, Duration) {
        self.wait_for(|e| match e {
            LegEvent::Recording(RecordingReport::Closed { path, duration }) => {
                Some((path.clone(), *duration))
            }
            LegEvent::Recording(RecordingReport::Failed { error, .. }) => {
                panic!("recording failed: {error}")
            }
            _ => None,
        })
        .await
    }

    /// Waits until this leg has received what `sender` sent up to now, and a little more: the
    /// packets after it show that nothing sent so far is still on its way. The first packets
    /// after connect may be lost (docs/architecture.md "Media"), so a few are allowed for.
    pub async fn received_all_sent_by(&self, sender: &MediaLeg) {
        const LOST_AT_CONNECT: u64 = 3;
        const PAST: u64 = 5;
        let target = sender.stats().packets_sent + PAST - LOST_AT_CONNECT;
        let leg = self.leg.clone();
        wait::until("the sender's packets to arrive", WAIT, || {
            let received = leg.stats().packets_received;
            async move { (received >= target).then_some(()) }
        })
        .await;
    }

    /// Digits received until `count` arrived.
    pub async fn digits(&mut self, count: usize, want_inband: bool) -> String {
        let mut digits = String::new();
        while digits.len() < count {
            let digit = self
                .wait_for(|e| match e {
                    LegEvent::Digit { digit, inband, .. } => {
                        assert_eq!(*inband, want_inband, "digit {digit} came the wrong way");
                        Some(*digit)
                    }
                    _ => None,
                })
                .await;
            digits.push(digit.as_char());
        }
        digits
    }
}

/// Sends `from`'s local candidates to `to`, and every event (candidates too) to the returned
/// receiver.
fn forward(mut raw: LegEvents, to: Arc<MediaLeg>) -> mpsc::UnboundedReceiver<LegEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = raw.recv().await {
            if let LegEvent::LocalCandidate(candidate) = &event {
                let remote = RemoteCandidate {
                    callid: None,
                    candidate: candidate.candidate.clone(),
                    addresses: vec![],
                };
                to.add_remote_candidate(&remote)
                    .await
                    .expect("add candidate");
            }
            let _ = tx.send(event);
        }
    });
    rx
}

pub async fn two_legs(media: &MediaRuntime) -> (Peer, Peer) {
    two_legs_on(media, media).await
}

/// Leg A on `a_media`, leg B on `b_media`.
pub async fn two_legs_on(a_media: &MediaRuntime, b_media: &MediaRuntime) -> (Peer, Peer) {
    let (a, a_raw) = a_media.new_leg().await.expect("leg a");
    let (b, b_raw) = b_media.new_leg().await.expect("leg b");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let a_events = forward(a_raw, b.clone());
    let b_events = forward(b_raw, a.clone());
    (
        Peer {
            leg: a,
            events: a_events,
            candidates: Vec::new(),
        },
        Peer {
            leg: b,
            events: b_events,
            candidates: Vec::new(),
        },
    )
}

/// A offers, B answers the offer after `edit`; both connect.
pub async fn connected_pair(media: &MediaRuntime, edit: impl Fn(&str) -> String) -> (Peer, Peer) {
    connect(two_legs(media).await, edit).await
}

pub async fn connect((mut a, mut b): (Peer, Peer), edit: impl Fn(&str) -> String) -> (Peer, Peer) {
    let offer = a.leg.create_offer().await.expect("offer");
    let answer = b.leg.accept_offer(&edit(&offer)).await.expect("answer");
    a.leg.apply_answer(&answer).await.expect("apply answer");
    a.connected().await;
    b.connected().await;
    (a, b)
}

/// Keeps only the payload types in `keep` on the audio m-line (and their attributes).
pub fn only_payload_types(sdp: &str, keep: &[&str]) -> String {
    let mut out = String::new();
    for line in sdp.lines() {
        if line.starts_with("m=audio") {
            let fields: Vec<&str> = line.split(' ').collect();
            let kept: Vec<&str> = fields[..3]
                .iter()
                .copied()
                .chain(fields[3..].iter().copied().filter(|pt| keep.contains(pt)))
                .collect();
            out.push_str(&kept.join(" "));
        } else if let Some(rest) = line
            .strip_prefix("a=rtpmap:")
            .or_else(|| line.strip_prefix("a=fmtp:"))
            .or_else(|| line.strip_prefix("a=rtcp-fb:"))
        {
            if !keep.iter().any(|pt| rest.starts_with(&format!("{pt} "))) {
                continue;
            }
            out.push_str(line);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// An offer that leaves only Opus (and telephone-event) on the audio line, so the legs settle
/// on Opus although both prefer G.711.
pub fn opus_only(sdp: &str) -> String {
    only_payload_types(sdp, &["111", "101"])
}
