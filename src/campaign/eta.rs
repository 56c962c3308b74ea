//! When a campaign will be done, estimated from what it has seen: the mean time an attempt
//! took (ringing included), the calls in progress and the contacts still waiting, within the
//! limits of concurrency and calls per second. While nothing finishes the estimate only goes
//! down (a contact that rings out does not make it climb); it moves up only when a finished
//! call shows that calls take longer than thought.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// The running mean of attempt durations.
#[derive(Clone, Debug, Default)]
pub struct Eta {
    attempts: u32,
    total: Duration,
}

impl Eta {
    /// An attempt took `took`, dial to hang-up.
    pub fn finished(&mut self, took: Duration) {
        self.attempts += 1;
        self.total += took;
    }

    /// The mean attempt, once one has finished.
    pub fn mean(&self) -> Option<Duration> {
        (self.attempts > 0).then(|| self.total / self.attempts)
    }

    /// Time left: `live` holds how long each call in progress has run, `waiting` how long
    /// until each waiting contact may be dialled (zero, or a retry's delay). `None` until an
    /// attempt has finished (there is nothing honest to say before).
    pub fn remaining(
        &self,
        live: &[Duration],
        waiting: &[Duration],
        concurrency: usize,
        cps: f64,
    ) -> Option<Duration> {
        let mean = self.mean()?;
        // When each calling slot frees up: a live call is expected to last `mean` (once past
        // that, any moment now), a free slot is free now.
        let mut slots: BinaryHeap<Reverse<Duration>> = live
            .iter()
            .map(|elapsed| Reverse(mean.saturating_sub(*elapsed)))
            .collect();
        while slots.len() < concurrency.max(1) {
            slots.push(Reverse(Duration::ZERO));
        }
        let mut end = slots
            .iter()
            .map(|Reverse(at)| *at)
            .max()
            .unwrap_or_default();
        let mut waiting = waiting.to_vec();
        waiting.sort();
        let pace = Duration::from_secs_f64(1.0 / cps.max(0.001));
        for (index, due) in waiting.into_iter().enumerate() {
            let Some(Reverse(free)) = slots.pop() else {
                break;
            };
            let start = free.max(due).max(pace.saturating_mul(index as u32));
            let done = start + mean;
            end = end.max(done);
            slots.push(Reverse(done));
        }
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn nothing_to_say_before_a_call_finished() {
        assert_eq!(Eta::default().remaining(&[S(1)], &[S(0)], 2, 1.0), None);
    }

    #[test]
    fn a_contact_ringing_out_never_makes_it_climb() {
        let mut eta = Eta::default();
        for _ in 0..5 {
            eta.finished(S(10));
        }
        // One contact rings for a minute while two wait behind it (concurrency 1).
        let mut previous = Duration::MAX;
        for ringing in 0..=60 {
            let left = eta.remaining(&[S(ringing)], &[S(0), S(0)], 1, 2.0).unwrap();
            assert!(
                left <= previous,
                "{left:?} after {previous:?} at {ringing} s"
            );
            previous = left;
        }
        assert_eq!(previous, S(20));
        // The last contact rings on and on: the estimate stays at "any moment now".
        assert_eq!(eta.remaining(&[S(120)], &[], 1, 2.0), Some(S(0)));
    }

    #[test]
    fn concurrency_cps_and_retry_delays_bound_it() {
        let mut eta = Eta::default();
        eta.finished(S(10));
        // 10 waiting, 5 at a time: two rounds of 10 s.
        let secs = |left: Option<Duration>| left.map(|d| d.as_secs());
        assert_eq!(secs(eta.remaining(&[], &[S(0); 10], 5, 1e6)), Some(20));
        // One call a second: the tenth starts at 9 s.
        assert_eq!(eta.remaining(&[], &[S(0); 10], 100, 1.0), Some(S(19)));
        // A retry due in ten minutes.
        assert_eq!(eta.remaining(&[], &[S(600)], 5, 1.0), Some(S(610)));
    }
}
