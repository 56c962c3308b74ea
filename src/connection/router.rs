//! Which call a frame from the PBX is about. The link delivers every call frame to its bot; the
//! router finds the call by `callid`, adopts the PBX's own call id for our outbound calls in the
//! modern dialect (docs/protocol.md §6), and tells new incoming calls apart.

use std::collections::{HashMap, VecDeque};

use crate::protocol::{CallId, ServerFrame};

/// Where a frame goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<K> {
    /// To this call.
    Call(K),
    /// To this call, whose PBX-side id is now `id` (modern outbound: the PBX's offer arrived
    /// under a call id of its own).
    Adopted { key: K, id: CallId },
    /// A new incoming call (`invitesdp` with an unknown call id).
    Incoming,
    /// No call of ours: a late frame for a finished call, or a frame about no call.
    Nowhere,
}

/// The bot's map from call ids to its calls (`K`: whatever names a call to the bot).
#[derive(Debug)]
pub struct CallRouter<K> {
    by_id: HashMap<CallId, K>,
    /// Our outbound calls that have had no `sdp` frame yet, oldest first: the first `sdp` with
    /// an unknown call id belongs to the oldest of them (the PBX answers in order).
    awaiting_sdp: VecDeque<K>,
}

impl<K> Default for CallRouter<K> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            awaiting_sdp: VecDeque::new(),
        }
    }
}

impl<K: Clone + PartialEq> CallRouter<K> {
    /// An incoming call, known by the PBX's id.
    pub fn incoming(&mut self, id: CallId, key: K) {
        self.by_id.insert(id, key);
    }

    /// An outbound call we placed under `id`.
    pub fn outbound(&mut self, id: CallId, key: K) {
        self.by_id.insert(id, key.clone());
        self.awaiting_sdp.push_back(key);
    }

    /// The call is over: forget every id it had.
    pub fn remove(&mut self, key: &K) {
        self.by_id.retain(|_, k| k != key);
        self.awaiting_sdp.retain(|k| k != key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        let mut keys: Vec<&K> = Vec::new();
        for key in self.by_id.values() {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn route(&mut self, frame: &ServerFrame) -> Route<K> {
        let id = match frame {
            ServerFrame::Sdp(f) => &f.callid,
            ServerFrame::InviteSdp(f) => &f.callid,
            ServerFrame::Bye(f) => &f.callid,
            ServerFrame::Cancel(f) | ServerFrame::CancelResponse(f) => &f.callid,
            ServerFrame::CallerId { callid, .. } => callid,
            ServerFrame::Candidate(c) => match &c.callid {
                Some(id) => id,
                // Without a call id a candidate can only belong to the one call there is.
                None => return self.only_call().map_or(Route::Nowhere, Route::Call),
            },
            _ => return Route::Nowhere,
        };
        if let Some(key) = self.by_id.get(id).cloned() {
            if matches!(frame, ServerFrame::Sdp(_)) {
                self.awaiting_sdp.retain(|k| *k != key);
            }
            return Route::Call(key);
        }
        match frame {
            ServerFrame::InviteSdp(_) => Route::Incoming,
            ServerFrame::Sdp(_) => match self.awaiting_sdp.pop_front() {
                Some(key) => {
                    self.by_id.insert(id.clone(), key.clone());
                    Route::Adopted {
                        key,
                        id: id.clone(),
                    }
                }
                None => Route::Nowhere,
            },
            _ => Route::Nowhere,
        }
    }

    fn only_call(&self) -> Option<K> {
        let mut keys = self.by_id.values();
        let first = keys.next()?;
        keys.all(|k| k == first).then(|| first.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Bye, Cseq, Invite, RemoteCandidate, Sdp, SdpFrame};

    fn id(n: u128) -> CallId {
        CallId::from_bits(n)
    }

    fn sdp(callid: CallId) -> ServerFrame {
        ServerFrame::Sdp(SdpFrame {
            callid,
            cseq: Some(Cseq::Number(1)),
            code: None,
            reason: None,
            sdp: Sdp::offer("v=0"),
        })
    }

    fn invite(callid: CallId) -> ServerFrame {
        ServerFrame::InviteSdp(Invite {
            callid,
            cseq: Cseq::Number(1),
            from: "501".into(),
            to: "500".into(),
            from_user: None,
            from_display: None,
            sdp: Sdp::offer("v=0"),
        })
    }

    fn candidate(callid: Option<CallId>) -> ServerFrame {
        ServerFrame::Candidate(RemoteCandidate {
            callid,
            candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
            addresses: vec![],
        })
    }

    #[test]
    fn known_ids_route_to_their_call() {
        let mut router = CallRouter::default();
        router.incoming(id(1), "a");
        assert_eq!(router.route(&candidate(Some(id(1)))), Route::Call("a"));
        let bye = ServerFrame::Bye(Bye {
            callid: id(1),
            cseq: None,
            code: None,
            reason: None,
        });
        assert_eq!(router.route(&bye), Route::Call("a"));
    }

    #[test]
    fn unknown_invite_is_incoming_and_unknown_bye_goes_nowhere() {
        let mut router: CallRouter<&str> = CallRouter::default();
        assert_eq!(router.route(&invite(id(9))), Route::Incoming);
        let bye = ServerFrame::Bye(Bye {
            callid: id(9),
            cseq: None,
            code: None,
            reason: None,
        });
        assert_eq!(router.route(&bye), Route::Nowhere);
    }

    #[test]
    fn pbx_ids_are_adopted_by_the_oldest_waiting_call() {
        let mut router = CallRouter::default();
        router.outbound(id(1), "first");
        router.outbound(id(2), "second");
        assert_eq!(
            router.route(&sdp(id(100))),
            Route::Adopted {
                key: "first",
                id: id(100)
            }
        );
        assert_eq!(
            router.route(&candidate(Some(id(100)))),
            Route::Call("first")
        );
        // An sdp under our own id settles that call without adoption.
        assert_eq!(router.route(&sdp(id(2))), Route::Call("second"));
        assert_eq!(router.route(&sdp(id(200))), Route::Nowhere);
    }

    #[test]
    fn candidates_without_id_need_a_single_call() {
        let mut router = CallRouter::default();
        assert_eq!(router.route(&candidate(None)), Route::Nowhere);
        router.incoming(id(1), "a");
        assert_eq!(router.route(&candidate(None)), Route::Call("a"));
        router.incoming(id(2), "b");
        assert_eq!(router.route(&candidate(None)), Route::Nowhere);
    }

    #[test]
    fn removed_calls_forget_all_their_ids() {
        let mut router = CallRouter::default();
        router.outbound(id(1), "a");
        router.route(&sdp(id(100)));
        assert_eq!(router.len(), 1);
        router.remove(&"a");
        assert!(router.is_empty());
        assert_eq!(router.route(&candidate(Some(id(100)))), Route::Nowhere);
    }
}
