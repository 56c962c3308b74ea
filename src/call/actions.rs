//! The order of a script's commands (docs/scripting.md "Queued commands"): media actions go to the
//! leg's player at once (it plays them in order), but a signalling action (hold, resume,
//! transfer, hang-up) waits until every media action queued before it has finished, and
//! whatever is queued after it waits for it. So `play("bye.wav"); hangup()` plays, then hangs up.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use crate::media::player::ItemId;
use crate::protocol::CallId;
use crate::voice::StreamRequest;

/// A queued command.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `for_gather`: the prompt of a `gather()`, whose end starts the digit timeout.
    Play {
        prompt: PathBuf,
        loops: u32,
        for_gather: bool,
    },
    Pause {
        ms: u32,
    },
    Tone {
        hz: f32,
        ms: u32,
    },
    /// Text spoken (rendered by espeak-ng, then played like a prompt).
    Say(crate::speech::Utterance),
    SendDtmf {
        digits: String,
    },
    /// Stream the call to a voice agent; its audio plays until the stream ends.
    Stream(StreamRequest),
    Hold,
    Resume,
    Transfer {
        to: String,
    },
    /// Attended transfer with our call `id2` (its far end is `to`).
    AttendedTransfer {
        id2: CallId,
        to: String,
    },
    Hangup,
}

impl Action {
    /// Whether the leg's player carries it out (as opposed to signalling).
    pub fn is_media(&self) -> bool {
        matches!(
            self,
            Action::Play { .. }
                | Action::Pause { .. }
                | Action::Tone { .. }
                | Action::Say(_)
                | Action::SendDtmf { .. }
                | Action::Stream(_)
        )
    }
}

#[derive(Debug, Default)]
pub struct ActionQueue {
    /// Media actions released to the player and not yet finished.
    in_flight: usize,
    /// Their item ids, once known.
    items: HashSet<ItemId>,
    /// Actions waiting behind a signalling action.
    blocked: VecDeque<Action>,
}

impl ActionQueue {
    /// Queues `action`; returns the actions to carry out now, in order. The caller reports the
    /// item id of each media action it hands to the player with [`ActionQueue::dispatched`].
    pub fn push(&mut self, action: Action) -> Vec<Action> {
        self.blocked.push_back(action);
        self.release()
    }

    /// The player took a released media action as item `id`.
    pub fn dispatched(&mut self, id: ItemId) {
        self.items.insert(id);
    }

    /// A released media action that never became a player item (it failed at once).
    pub fn not_dispatched(&mut self) -> Vec<Action> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.release()
    }

    /// Player item `id` ended (done, cut off or failed); returns actions now free to run.
    pub fn finished(&mut self, id: ItemId) -> Vec<Action> {
        if !self.items.remove(&id) {
            return Vec::new();
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.release()
    }

    /// `stop()`: forget everything queued (the player's own queue is cleared separately, and
    /// its items report as interrupted).
    pub fn clear(&mut self) {
        self.blocked.clear();
    }

    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.blocked.is_empty()
    }

    fn release(&mut self) -> Vec<Action> {
        let mut ready = Vec::new();
        while let Some(front) = self.blocked.front() {
            if front.is_media() {
                self.in_flight += 1;
            } else if self.in_flight > 0 {
                break;
            }
            ready.extend(self.blocked.pop_front());
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(name: &str) -> Action {
        Action::Play {
            prompt: name.into(),
            loops: 1,
            for_gather: false,
        }
    }

    #[test]
    fn media_goes_out_at_once_and_hangup_waits_for_it() {
        let mut queue = ActionQueue::default();
        assert_eq!(queue.push(play("a.wav")), vec![play("a.wav")]);
        queue.dispatched(1);
        assert_eq!(queue.push(play("b.wav")), vec![play("b.wav")]);
        queue.dispatched(2);
        assert!(queue.push(Action::Hangup).is_empty());
        assert!(queue.finished(1).is_empty());
        assert_eq!(queue.finished(2), vec![Action::Hangup]);
        assert!(queue.is_idle());
    }

    #[test]
    fn signalling_with_nothing_queued_runs_now() {
        let mut queue = ActionQueue::default();
        assert_eq!(queue.push(Action::Hold), vec![Action::Hold]);
    }

    #[test]
    fn media_after_a_waiting_action_waits_too() {
        let mut queue = ActionQueue::default();
        queue.push(play("a.wav"));
        queue.dispatched(1);
        assert!(queue.push(Action::Hold).is_empty());
        assert!(queue.push(play("music.wav")).is_empty());
        assert!(queue.push(Action::Resume).is_empty());
        assert_eq!(queue.finished(1), vec![Action::Hold, play("music.wav")]);
        queue.dispatched(2);
        assert_eq!(queue.finished(2), vec![Action::Resume]);
    }

    #[test]
    fn unknown_items_and_failed_dispatches() {
        let mut queue = ActionQueue::default();
        queue.push(play("a.wav"));
        assert!(queue.push(Action::Hangup).is_empty());
        assert!(queue.finished(77).is_empty(), "not ours");
        assert_eq!(queue.not_dispatched(), vec![Action::Hangup]);
    }

    #[test]
    fn clear_drops_what_waits() {
        let mut queue = ActionQueue::default();
        queue.push(play("a.wav"));
        queue.dispatched(1);
        queue.push(Action::Hangup);
        queue.clear();
        assert!(queue.finished(1).is_empty());
        assert!(queue.is_idle());
    }
}
