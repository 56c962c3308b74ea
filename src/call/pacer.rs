//! Spacing calls: no faster than a calls-per-second limit. Shared by a bot's calls (each waits
//! for its slot just before its offer goes out, so the PBX sees the spacing) and by campaigns.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Lets callers through at least `1 / cps` apart, measured between the moments they actually
/// go (not between planned slots), so a stalled process never catches up in a burst; any
/// number of tasks may wait on it, in turn.
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

    /// Waits until at least one interval has passed since the previous caller went, and returns
    /// the moment this one goes. Waiters go in the order they arrived; a wait that is dropped
    /// (cancelled) uses no slot.
    pub async fn wait(&self) -> Instant {
        let mut last = self.last.lock().await;
        if let Some(previous) = *last {
            tokio::time::sleep_until(previous + self.interval).await;
        }
        let now = Instant::now();
        *last = Some(now);
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn callers_go_one_interval_apart_and_idle_time_is_not_saved_up() {
        let start = Instant::now();
        let pacer = Pacer::new(10.0);
        let mut went = Vec::new();
        for _ in 0..4 {
            went.push((pacer.wait().await - start).as_millis());
        }
        assert_eq!(went, [0, 100, 200, 300]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after_idle = pacer.wait().await;
        assert_eq!(after_idle - start, Duration::from_millis(5300));
        let unlimited = Pacer::new(0.0);
        assert_eq!(unlimited.wait().await, unlimited.wait().await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_caller_does_not_let_the_next_one_catch_up() {
        let start = Instant::now();
        let pacer = Pacer::new(10.0);
        pacer.wait().await;
        // This caller was held up (a stalled process) and goes 250 ms late: the next one
        // still waits a whole interval after it, not until its planned slot.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let late = pacer.wait().await;
        let next = pacer.wait().await;
        assert_eq!(late - start, Duration::from_millis(350));
        assert_eq!(next - late, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_spaced_in_turn() {
        let pacer = std::sync::Arc::new(Pacer::new(20.0));
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move { pacer.wait().await })
            })
            .collect();
        let mut went = Vec::new();
        for waiter in waiters {
            went.push(waiter.await.unwrap());
        }
        went.sort();
        assert!(
            went.windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_millis(50))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn absurdly_slow_rates_wait_a_day_instead_of_overflowing() {
        let pacer = Pacer::new(1e-20);
        let first = pacer.wait().await;
        assert_eq!(pacer.wait().await - first, Duration::from_secs(86_400));
    }
}
