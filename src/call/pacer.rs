//! Spacing calls: no faster than a calls-per-second limit. Shared by a bot's calls (each waits
//! for its slot just before its offer goes out, so the PBX sees the spacing) and by campaigns.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Hands out send times at least `1 / cps` apart; any number of tasks may wait on it.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `cps` calls per second (no limit when `cps` is not above zero).
    pub fn new(cps: f64) -> Self {
        let interval = if cps > 0.0 {
            // Configs keep cps at 0.01 or more; anything slower waits a day.
            Duration::try_from_secs_f64(1.0 / cps).map_or(Duration::from_secs(86_400), |i| {
                i.min(Duration::from_secs(86_400))
            })
        } else {
            Duration::ZERO
        };
        Self {
            interval,
            last: Mutex::new(None),
        }
    }

    /// The next free slot at or after `now`; it is taken.
    pub fn take(&self, now: Instant) -> Instant {
        let mut last = crate::lock::lock(&self.last);
        let at = match *last {
            Some(previous) => (previous + self.interval).max(now),
            None => now,
        };
        *last = Some(at);
        at
    }

    /// Waits for the next free slot.
    pub async fn wait(&self) {
        let slot = self.take(Instant::now());
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_and_idle_time_is_not_saved_up() {
        let start = Instant::now();
        let pacer = Pacer::new(10.0);
        let slots: Vec<u128> = (0..4)
            .map(|_| (pacer.take(start) - start).as_millis())
            .collect();
        assert_eq!(slots, [0, 100, 200, 300]);
        let later = start + Duration::from_secs(5);
        assert_eq!(pacer.take(later), later);
        assert_eq!(Pacer::new(0.0).take(start), start);
    }

    #[test]
    fn absurdly_slow_rates_wait_a_day_instead_of_overflowing() {
        let start = Instant::now();
        let pacer = Pacer::new(1e-20);
        pacer.take(start);
        assert_eq!(pacer.take(start) - start, Duration::from_secs(86_400));
    }
}
