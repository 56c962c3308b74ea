//! Two media legs of one process connected to each other over 127.0.0.1, for tests that need
//! a call's media without signalling.

use std::sync::Arc;
use std::time::Duration;

use callbot::media::transport::TransportState;
use callbot::media::{LegEvent, MediaLeg, MediaRuntime};
use callbot::protocol::RemoteCandidate;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// A leg and what it reports (candidates are passed to the other leg).
pub struct Leg {
    pub leg: Arc<MediaLeg>,
    pub events: mpsc::UnboundedReceiver<LegEvent>,
}

impl Leg {
    /// The next event `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&LegEvent) -> Option<T>) -> T {
        timeout(WAIT, async {
            loop {
                let event = self.events.recv().await.expect("leg events ended");
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        })
        .await
        .expect("timed out waiting for a leg event")
    }
}

/// Passes `raw`'s local candidates to `to`; everything else goes to the returned receiver.
fn forward(
    mut raw: mpsc::UnboundedReceiver<LegEvent>,
    to: Arc<MediaLeg>,
) -> mpsc::UnboundedReceiver<LegEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = raw.recv().await {
            if let LegEvent::LocalCandidate(candidate) = event {
                let remote = RemoteCandidate {
                    callid: None,
                    candidate: candidate.candidate,
                    addresses: vec![],
                };
                let _ = to.add_remote_candidate(&remote).await;
            } else {
                let _ = tx.send(event);
            }
        }
    });
    rx
}

/// A offers, B answers the offer after `edit`; returns both once connected.
pub async fn pair(media: &MediaRuntime, edit: impl Fn(&str) -> String) -> (Leg, Leg) {
    let (a, a_raw) = media.new_leg().await.expect("leg a");
    let (b, b_raw) = media.new_leg().await.expect("leg b");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut a = Leg {
        events: forward(a_raw, b.clone()),
        leg: a,
    };
    let mut b = Leg {
        events: forward(b_raw, a.leg.clone()),
        leg: b,
    };
    let offer = a.leg.create_offer().await.expect("offer");
    let answer = b.leg.accept_offer(&edit(&offer)).await.expect("answer");
    a.leg.apply_answer(&answer).await.expect("apply answer");
    for leg in [&mut a, &mut b] {
        leg.wait_for(|e| matches!(e, LegEvent::State(TransportState::Connected)).then_some(()))
            .await;
    }
    (a, b)
}

/// An offer that leaves only Opus (and telephone-event) on the audio line, so the legs settle
/// on Opus although both prefer G.711.
pub fn opus_only(sdp: &str) -> String {
    let drop = ["0", "8"];
    let mut out = String::new();
    for line in sdp.lines() {
        if line.starts_with("m=audio") {
            let fields: Vec<&str> = line.split(' ').collect();
            let kept: Vec<&str> = fields[..3]
                .iter()
                .copied()
                .chain(fields[3..].iter().copied().filter(|pt| !drop.contains(pt)))
                .collect();
            out.push_str(&kept.join(" "));
        } else if drop
            .iter()
            .any(|pt| line.starts_with(&format!("a=rtpmap:{pt} ")))
        {
            continue;
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}
