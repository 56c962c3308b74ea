//! Values the call machine's and the call logic's tests both start from.

use std::time::Duration;

use crate::protocol::{CallId, Cseq, Invite, Sdp};

/// The ring timeout the tests' calls are made with.
pub const RING: Duration = Duration::from_secs(60);

pub fn id(n: u128) -> CallId {
    CallId::from_bits(n)
}

/// An offer from 501 to 500.
pub fn invite() -> Invite {
    Invite {
        callid: id(1),
        cseq: Cseq::Text("7".into()),
        from: "501".into(),
        to: "500".into(),
        from_user: None,
        from_display: None,
        sdp: Sdp::offer("remote-offer"),
    }
}
