//! When the media clock runs its next 1 ms slot (sans-IO: the caller passes the time in).
//!
//! A clock thread that wakes late (a loaded machine, a descheduled thread) must not lose time:
//! every slot that fell due runs, in order, at once, so each leg sends the frames that were due
//! with their own timestamps and the far end hears the prompt at its length. Only a stall longer
//! than [`MAX_CATCH_UP`] is not made up in a burst: whole 20 ms intervals are skipped then, and
//! the legs are told how many, so their RTP timestamps and recordings jump with the clock
//! instead of drifting behind it.

use std::time::{Duration, Instant};

use super::codec::FRAME_MS;

/// How far behind the clock may be and still run every missed slot. The recorder's write delay
/// is longer, so audio a catching-up far end sends late still lands in its place.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(300);
/// A skip longer than this (a suspended machine) is reported as this many intervals (a minute):
/// the legs' work for a skip grows with its length, and after that long the far end re-anchors
/// anyway.
const MAX_SKIP_REPORTED: u32 = 3000;

/// What the clock does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// No slot is due before this long from now.
    Wait(Duration),
    /// Run the next slot now, after telling every leg that `skipped` whole intervals were
    /// skipped (0 unless the clock stalled for longer than [`MAX_CATCH_UP`]).
    Slot { skipped: u32 },
}

/// Keeps the clock's slots on wall time.
#[derive(Debug)]
pub struct Pacer {
    /// When the next slot is due.
    next: Instant,
    slot: Duration,
    interval: Duration,
}

impl Pacer {
    /// A clock of `slots` slots per 20 ms interval, the first due at `now`.
    pub fn new(now: Instant, slots: u32) -> Self {
        let interval = Duration::from_millis(FRAME_MS.into());
        Self {
            next: now,
            slot: interval / slots.max(1),
            interval,
        }
    }

    /// Starts again from `now` (after an idle spell with nothing to pace).
    pub fn restart(&mut self, now: Instant) {
        self.next = now;
    }

    /// What is due at `now`. A `Slot` answer counts that slot as run.
    pub fn due(&mut self, now: Instant) -> Due {
        if self.next > now {
            return Due::Wait(self.next - now);
        }
        let mut skipped = 0;
        let lag = now - self.next;
        if lag > MAX_CATCH_UP {
            // Skip whole intervals, so every slot is skipped equally often and each leg keeps
            // its place in the interval.
            let excess = (lag - MAX_CATCH_UP).as_nanos();
            let intervals = excess.div_ceil(self.interval.as_nanos());
            self.next += self.interval * u32::try_from(intervals).unwrap_or(u32::MAX);
            skipped =
                u32::try_from(intervals).map_or(MAX_SKIP_REPORTED, |n| n.min(MAX_SKIP_REPORTED));
        }
        self.next += self.slot;
        Due::Slot { skipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOTS: u32 = 20;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Runs every slot due at `now`; returns how many ran and the intervals skipped.
    fn run_due(pacer: &mut Pacer, now: Instant) -> (u32, u32) {
        let (mut ran, mut skipped_total) = (0, 0);
        while let Due::Slot { skipped } = pacer.due(now) {
            ran += 1;
            skipped_total += skipped;
        }
        (ran, skipped_total)
    }

    #[test]
    fn on_time_it_runs_one_slot_then_waits_for_the_next() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, SLOTS);
        assert_eq!(pacer.due(start), Due::Slot { skipped: 0 });
        assert_eq!(pacer.due(start), Due::Wait(ms(1)));
        assert_eq!(pacer.due(start + ms(1)), Due::Slot { skipped: 0 });
    }

    #[test]
    fn a_late_wake_up_runs_every_missed_slot_in_order() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, SLOTS);
        // Woken 250 ms late: the 251 slots due by then all run, none is skipped, so every leg
        // sends the 12 or 13 frames it owed.
        assert_eq!(run_due(&mut pacer, start + ms(250)), (251, 0));
        assert!(matches!(pacer.due(start + ms(250)), Due::Wait(_)));
    }

    #[test]
    fn a_long_stall_skips_whole_intervals_and_says_how_many() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, SLOTS);
        // Two seconds late: 1.7 s (85 intervals) are skipped, the last 300 ms are made up.
        let (ran, skipped) = run_due(&mut pacer, start + ms(2000));
        assert_eq!(skipped, 85);
        assert_eq!(ran, 301);
        // Every slot due is accounted for: run, or skipped as part of a whole interval.
        assert_eq!(ran + skipped * SLOTS, 2001);
        assert!(matches!(pacer.due(start + ms(2000)), Due::Wait(_)));
    }

    #[test]
    fn a_suspended_machine_reports_a_bounded_skip() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, SLOTS);
        let (ran, skipped) = run_due(&mut pacer, start + Duration::from_secs(3600));
        assert_eq!((ran, skipped), (301, MAX_SKIP_REPORTED));
    }

    #[test]
    fn restart_forgets_the_idle_time() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, SLOTS);
        pacer.restart(start + ms(10_000));
        assert_eq!(run_due(&mut pacer, start + ms(10_000)), (1, 0));
    }
}
