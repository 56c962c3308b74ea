//! Audio pushed into a leg from outside while the call runs (a voice agent's replies): queued in
//! order with named marks, played by the player 20 ms per tick, cleared at once on barge-in.
//!
//! The feed is shared: whoever receives the audio pushes into it from its own task, and the
//! player pulls one frame per tick on the media clock. Both sides hold its lock for a few
//! microseconds. The queue is bounded: beyond its capacity the oldest audio is dropped and
//! counted, so a sender that runs ahead of real time cannot grow memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::prompt::EncodedAudio;

/// Ten seconds of 20 ms frames: room for a voice agent's reply sent faster than real time.
pub const DEFAULT_CAPACITY_FRAMES: usize = 500;

/// Marks waiting for their audio at most; one more is answered at once (its audio will still
/// play, but nobody can make a sender wait on an unbounded list).
pub const MAX_PENDING_MARKS: usize = 100;

/// Told when a mark is reached. Called from the media clock or the feeding task with no lock
/// held: it must only hand the name on (a bounded channel), never block.
pub trait MarkListener: Send + Sync {
    /// The audio queued before mark `name` has been sent, or was dropped (cleared, overflowed,
    /// closed): either way the mark is behind us.
    fn reached(&self, name: String);
}

/// What the player sends this tick from a feed.
#[derive(Debug)]
pub enum LiveFrame {
    /// Frame `index` of `audio`.
    Audio(Arc<EncodedAudio>, usize),
    /// Nothing queued now: silence, and ask again next tick.
    Silence,
    /// The feed is over: the player moves on to its next item.
    Ended,
}

#[derive(Debug)]
enum Entry {
    Audio {
        audio: Arc<EncodedAudio>,
        next: usize,
    },
    Mark(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// No more input; ends when what is queued has played.
    Draining,
    Ended,
}

#[derive(Debug)]
struct State {
    entries: VecDeque<Entry>,
    frames: usize,
    marks: usize,
    dropped: u64,
    phase: Phase,
}

/// A bounded, ordered queue of pushed audio and marks that the player plays from.
pub struct LiveFeed {
    state: Mutex<State>,
    listener: Arc<dyn MarkListener>,
    capacity: usize,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl LiveFeed {
    /// A feed holding at most `capacity_frames` frames of 20 ms; marks go to `listener`.
    pub fn new(capacity_frames: usize, listener: Arc<dyn MarkListener>) -> Self {
        Self {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                frames: 0,
                marks: 0,
                dropped: 0,
                phase: Phase::Open,
            }),
            listener,
            capacity: capacity_frames.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, marks: Vec<String>) {
        for name in marks {
            self.listener.reached(name);
        }
    }

    /// Queues audio behind what is queued; returns how many frames were dropped to stay within
    /// capacity (the oldest go first). Ignored once the feed is closing.
    pub fn push_audio(&self, audio: Arc<EncodedAudio>) -> usize {
        let mut reached = Vec::new();
        let dropped = {
            let mut state = self.lock();
            if state.phase != Phase::Open || audio.frames.is_empty() {
                return 0;
            }
            state.frames += audio.frames.len();
            state.entries.push_back(Entry::Audio { audio, next: 0 });
            let dropped = state.trim(self.capacity, &mut reached);
            state.dropped += dropped as u64;
            dropped
        };
        self.report(reached);
        dropped
    }

    /// Queues a mark behind the audio queued so far; it is reported once that audio has played.
    pub fn push_mark(&self, name: String) {
        {
            let mut state = self.lock();
            let waits = state.phase == Phase::Open
                && state.marks < MAX_PENDING_MARKS
                && !state.entries.is_empty();
            if waits {
                state.marks += 1;
                state.entries.push_back(Entry::Mark(name));
                return;
            }
        }
        self.listener.reached(name);
    }

    /// Drops every queued frame at once (barge-in); pending marks are reported, in order.
    pub fn clear(&self) {
        let marks = self.lock().drain();
        self.report(marks);
    }

    /// No more input: the feed ends once what is queued has played.
    pub fn finish(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Open {
            state.phase = Phase::Draining;
        }
    }

    /// Ends the feed now, dropping what is queued (pending marks are reported).
    pub fn close(&self) {
        let marks = {
            let mut state = self.lock();
            state.phase = Phase::Ended;
            state.drain()
        };
        self.report(marks);
    }

    /// Frames dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Frames queued now.
    pub fn queued_frames(&self) -> usize {
        self.lock().frames
    }

    /// The next 20 ms for the player; marks reached on the way are reported.
    pub fn next_frame(&self) -> LiveFrame {
        let mut reached = Vec::new();
        let frame = {
            let mut state = self.lock();
            state.next(&mut reached)
        };
        self.report(reached);
        frame
    }
}

impl State {
    /// Drops the oldest frames until at most `capacity` are queued; marks that end up at the
    /// front (their audio gone) are collected. Returns the frames dropped.
    fn trim(&mut self, capacity: usize, reached: &mut Vec<String>) -> usize {
        let mut dropped = 0;
        while self.frames > capacity {
            match self.entries.front_mut() {
                Some(Entry::Audio { audio, next }) => {
                    let left = audio.frames.len() - *next;
                    let cut = left.min(self.frames - capacity);
                    *next += cut;
                    self.frames -= cut;
                    dropped += cut;
                    if *next >= audio.frames.len() {
                        self.entries.pop_front();
                    }
                }
                Some(Entry::Mark(_)) => self.pop_mark(reached),
                None => break,
            }
        }
        while dropped > 0 && matches!(self.entries.front(), Some(Entry::Mark(_))) {
            self.pop_mark(reached);
        }
        dropped
    }

    /// Moves the mark at the front into `reached`.
    fn pop_mark(&mut self, reached: &mut Vec<String>) {
        if let Some(Entry::Mark(name)) = self.entries.pop_front() {
            self.marks -= 1;
            reached.push(name);
        }
    }

    fn drain(&mut self) -> Vec<String> {
        let marks = self
            .entries
            .drain(..)
            .filter_map(|entry| match entry {
                Entry::Mark(name) => Some(name),
                Entry::Audio { .. } => None,
            })
            .collect();
        self.frames = 0;
        self.marks = 0;
        marks
    }

    fn next(&mut self, reached: &mut Vec<String>) -> LiveFrame {
        loop {
            match self.entries.front_mut() {
                Some(Entry::Mark(_)) => self.pop_mark(reached),
                Some(Entry::Audio { audio, next }) => {
                    let frame = LiveFrame::Audio(audio.clone(), *next);
                    *next += 1;
                    self.frames -= 1;
                    if *next >= audio.frames.len() {
                        self.entries.pop_front();
                    }
                    return frame;
                }
                None => {
                    return match self.phase {
                        Phase::Open => LiveFrame::Silence,
                        Phase::Draining | Phase::Ended => {
                            self.phase = Phase::Ended;
                            LiveFrame::Ended
                        }
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Codec;

    #[derive(Default)]
    struct Marks(Mutex<Vec<String>>);

    impl MarkListener for Marks {
        fn reached(&self, name: String) {
            self.0.lock().unwrap().push(name);
        }
    }

    impl Marks {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn feed(capacity: usize) -> (LiveFeed, Arc<Marks>) {
        let marks = Arc::new(Marks::default());
        (LiveFeed::new(capacity, marks.clone()), marks)
    }

    /// `frames` frames of 20 ms whose samples all equal `level`.
    fn audio(frames: usize, level: i16) -> Arc<EncodedAudio> {
        Arc::new(EncodedAudio::from_pcm(Codec::Pcmu, vec![level; frames * 160]).unwrap())
    }

    fn level(frame: &LiveFrame) -> Option<i16> {
        match frame {
            LiveFrame::Audio(audio, index) => Some(audio.pcm[index * 160]),
            _ => None,
        }
    }

    #[test]
    fn audio_plays_in_order_and_a_mark_comes_after_its_audio() {
        let (feed, marks) = feed(100);
        feed.push_audio(audio(2, 100));
        feed.push_mark("a".into());
        feed.push_audio(audio(1, 200));
        assert_eq!(level(&feed.next_frame()), Some(100));
        assert_eq!(level(&feed.next_frame()), Some(100));
        assert!(marks.take().is_empty(), "its audio has not all been sent");
        assert_eq!(level(&feed.next_frame()), Some(200));
        assert_eq!(
            marks.take(),
            ["a"],
            "reported the tick after its last frame left"
        );
        assert!(matches!(feed.next_frame(), LiveFrame::Silence));
    }

    #[test]
    fn a_mark_with_nothing_queued_is_reached_at_once() {
        let (feed, marks) = feed(100);
        feed.push_mark("now".into());
        assert_eq!(marks.take(), ["now"]);
    }

    #[test]
    fn overflow_drops_the_oldest_frames_and_their_marks() {
        let (feed, marks) = feed(5);
        feed.push_audio(audio(3, 1));
        feed.push_mark("old".into());
        assert_eq!(feed.push_audio(audio(4, 2)), 2);
        assert_eq!(feed.queued_frames(), 5);
        assert!(
            marks.take().is_empty(),
            "one frame before it is still queued"
        );
        assert_eq!(feed.push_audio(audio(1, 3)), 1);
        assert_eq!(marks.take(), ["old"], "its audio is gone");
        assert_eq!(feed.dropped(), 3);
        let played: Vec<_> = (0..5).map(|_| level(&feed.next_frame())).collect();
        assert_eq!(played, [Some(2), Some(2), Some(2), Some(2), Some(3)]);
    }

    #[test]
    fn one_push_larger_than_the_queue_keeps_its_newest_frames() {
        let (feed, _) = feed(3);
        let long = Arc::new(
            EncodedAudio::from_pcm(Codec::Pcmu, (0..8).flat_map(|i| [i; 160]).collect()).unwrap(),
        );
        assert_eq!(feed.push_audio(long), 5);
        assert_eq!(level(&feed.next_frame()), Some(5));
    }

    #[test]
    fn clear_drops_everything_at_once_and_reports_pending_marks_in_order() {
        let (feed, marks) = feed(100);
        feed.push_audio(audio(50, 1));
        feed.push_mark("x".into());
        feed.push_audio(audio(50, 1));
        feed.push_mark("y".into());
        feed.next_frame();
        feed.clear();
        assert_eq!(marks.take(), ["x", "y"]);
        assert!(matches!(feed.next_frame(), LiveFrame::Silence));
        assert_eq!(feed.dropped(), 0, "a clear is not an overflow");
    }

    #[test]
    fn finish_drains_close_ends_at_once() {
        let (feed, marks) = feed(100);
        feed.push_audio(audio(1, 7));
        feed.finish();
        feed.push_audio(audio(1, 8));
        assert_eq!(level(&feed.next_frame()), Some(7));
        assert!(matches!(feed.next_frame(), LiveFrame::Ended));

        let (feed, _) = feed_with_queue();
        feed.close();
        assert!(matches!(feed.next_frame(), LiveFrame::Ended));
        assert!(marks.take().is_empty());
    }

    fn feed_with_queue() -> (LiveFeed, Arc<Marks>) {
        let (feed, marks) = feed(100);
        feed.push_audio(audio(3, 1));
        (feed, marks)
    }

    #[test]
    fn pending_marks_are_bounded() {
        let (feed, marks) = feed(100);
        feed.push_audio(audio(1, 1));
        for i in 0..=MAX_PENDING_MARKS {
            feed.push_mark(i.to_string());
        }
        assert_eq!(marks.take(), [MAX_PENDING_MARKS.to_string()]);
    }
}
