//! The calls one extension has going, a bot's or a code-driven phone's: each call's inbox under
//! a key of its own, its direction, and the router that finds the call a PBX frame is about.
//! Bots and phones start, route and end calls the same way; only what they keep beside each
//! call (`T`) differs.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::actor::{ActorInput, Origin};
use super::machine::Direction;
use crate::connection::{CallRouter, Route};
use crate::protocol::{CallId, Invite, ServerFrame};

/// A call's input channel, both ends: commands given to a call before its task starts wait in
/// it.
pub type Inbox = (
    mpsc::UnboundedSender<ActorInput>,
    mpsc::UnboundedReceiver<ActorInput>,
);

/// A fresh [`Inbox`].
pub fn inbox() -> Inbox {
    mpsc::unbounded_channel()
}

/// What became of a frame handed to [`CallTable::deliver`].
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Given to its call (or dropped: a late frame for a call that is gone).
    Done,
    /// Given to call `id` (the id it started with), which the PBX now calls `wire`: the modern
    /// dialect answers our call under a call id of its own (docs/protocol.md §6).
    Renamed { id: CallId, wire: CallId },
    /// A new incoming call, for the owner to accept or refuse.
    Incoming(Invite),
}

struct Entry<T> {
    /// The id the call started with (scripts and records know it by this one).
    id: CallId,
    inbox: mpsc::UnboundedSender<ActorInput>,
    direction: Direction,
    extra: T,
}

/// Live calls by key, with what the owner keeps beside each (`T`).
pub struct CallTable<T> {
    router: CallRouter<u64>,
    calls: HashMap<u64, Entry<T>>,
    next_key: u64,
}

impl<T> Default for CallTable<T> {
    fn default() -> Self {
        Self {
            router: CallRouter::default(),
            calls: HashMap::new(),
            next_key: 1,
        }
    }
}

impl<T> CallTable<T> {
    /// Adds a call that is about to start and routes its call id to it; returns its key (what
    /// [`crate::call::spawn`] and the call's report name it by).
    pub fn add(
        &mut self,
        origin: &Origin,
        inbox: mpsc::UnboundedSender<ActorInput>,
        extra: T,
    ) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        let (id, direction) = match origin {
            Origin::Inbound(invite) => {
                self.router.incoming(invite.callid.clone(), key);
                (invite.callid.clone(), Direction::Inbound)
            }
            Origin::Outbound { id, .. } => {
                self.router.outbound(id.clone(), key);
                (id.clone(), Direction::Outbound)
            }
        };
        self.calls.insert(
            key,
            Entry {
                id,
                inbox,
                direction,
                extra,
            },
        );
        key
    }

    /// Hands `frame` to the call it is about; an `invitesdp` for no call of ours is a new
    /// incoming call and comes back for the owner to accept or refuse. Frames for calls that
    /// are gone are dropped.
    pub fn deliver(&mut self, frame: ServerFrame) -> Delivery {
        let (key, wire) = match self.router.route(&frame) {
            Route::Call(key) => (key, None),
            Route::Adopted { key, id } => (key, Some(id)),
            Route::Incoming => {
                return match frame {
                    ServerFrame::InviteSdp(invite) => Delivery::Incoming(invite),
                    _ => Delivery::Done,
                };
            }
            Route::Nowhere => return Delivery::Done,
        };
        let Some(call) = self.calls.get(&key) else {
            return Delivery::Done;
        };
        let _ = call.inbox.send(ActorInput::Frame(frame));
        match wire {
            Some(wire) => Delivery::Renamed {
                id: call.id.clone(),
                wire,
            },
            None => Delivery::Done,
        }
    }

    /// Sends every live call the input `make` gives (the link died, a shutdown's hang-up).
    pub fn tell_all(&self, make: impl Fn() -> ActorInput) {
        for call in self.calls.values() {
            let _ = call.inbox.send(make());
        }
    }

    /// The call reported its end: forget it and its call ids; returns what was kept with it.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        self.router.remove(&key);
        self.calls.remove(&key).map(|call| call.extra)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Live calls that came in (what a bot's `max_calls` limits).
    pub fn inbound(&self) -> usize {
        self.calls
            .values()
            .filter(|call| call.direction == Direction::Inbound)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Bye, Cseq, Sdp, SdpFrame, SipCode};

    fn id(text: &str) -> CallId {
        CallId::new(text).expect("not empty")
    }

    fn invite(callid: &str) -> Invite {
        Invite {
            callid: id(callid),
            cseq: Cseq::Number(1),
            from: "502".into(),
            to: "500".into(),
            from_user: None,
            from_display: None,
            sdp: Sdp::offer("v=0"),
        }
    }

    fn bye(callid: &str) -> ServerFrame {
        ServerFrame::Bye(Bye {
            callid: id(callid),
            cseq: None,
            code: None,
            reason: None,
        })
    }

    #[test]
    fn only_calls_that_came_in_count_as_inbound() {
        let mut table = CallTable::default();
        let (tx, _rx) = inbox();
        let outbound = Origin::Outbound {
            to: "503".into(),
            id: id("ours"),
        };
        table.add(&outbound, tx.clone(), ());
        assert_eq!((table.len(), table.inbound()), (1, 0));
        table.add(&Origin::Inbound(invite("theirs")), tx, ());
        assert_eq!((table.len(), table.inbound()), (2, 1));
    }

    #[test]
    fn frames_reach_their_call_until_it_is_removed() {
        let mut table = CallTable::default();
        let (tx, mut rx) = inbox();
        let key = table.add(&Origin::Inbound(invite("a")), tx, "kept");
        assert_eq!(table.deliver(bye("a")), Delivery::Done);
        assert!(matches!(rx.try_recv(), Ok(ActorInput::Frame(_))));
        assert_eq!(table.remove(key), Some("kept"));
        assert_eq!(table.deliver(bye("a")), Delivery::Done);
        assert!(rx.try_recv().is_err(), "a removed call hears nothing");
        assert!(table.is_empty());
    }

    #[test]
    fn an_unknown_invite_is_a_new_call() {
        let mut table: CallTable<()> = CallTable::default();
        let new = table.deliver(ServerFrame::InviteSdp(invite("new")));
        assert_eq!(new, Delivery::Incoming(invite("new")));
    }

    #[test]
    fn a_call_the_pbx_renames_is_reported_by_the_id_it_started_with() {
        let mut table = CallTable::default();
        let (tx, mut rx) = inbox();
        let outbound = Origin::Outbound {
            to: "503".into(),
            id: id("ours"),
        };
        table.add(&outbound, tx, ());
        let offer = ServerFrame::Sdp(SdpFrame {
            callid: id("theirs"),
            cseq: None,
            code: Some(SipCode::SESSION_PROGRESS),
            reason: None,
            sdp: Sdp::offer("v=0"),
        });
        assert_eq!(
            table.deliver(offer),
            Delivery::Renamed {
                id: id("ours"),
                wire: id("theirs")
            }
        );
        assert!(matches!(rx.try_recv(), Ok(ActorInput::Frame(_))));
        assert_eq!(table.deliver(bye("theirs")), Delivery::Done);
    }
}
