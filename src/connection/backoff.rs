//! Reconnect delays: exponential with jitter, 1 s … 60 s (docs/protocol.md §6 "Reconnect").

use std::time::Duration;

/// Delay before each reconnect attempt. Doubling keeps a dead PBX from being hammered; jitter
/// keeps a hundred bots from reconnecting in the same millisecond after the PBX comes back.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
}

/// Each delay is the nominal one times a factor in [1 - JITTER, 1 + JITTER].
const JITTER: f64 = 0.2;

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            attempt: 0,
        }
    }

    /// The nominal delay of the next attempt (without jitter), then counts the attempt.
    fn next_nominal(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt; `unit` in [0, 1) picks the jitter.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let nominal = self.next_nominal();
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        nominal.mul_f64(factor).min(self.cap)
    }

    /// The delay before the next attempt, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// A session worked: the next failure starts again from the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| backoff.next_with(0.5).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let mut low = Backoff::default();
        let mut high = Backoff::default();
        assert_eq!(low.next_with(0.0), Duration::from_millis(800));
        assert_eq!(high.next_with(0.999_999).as_millis(), 1199);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        backoff.next_with(0.5);
        backoff.next_with(0.5);
        backoff.reset();
        assert_eq!(backoff.next_with(0.5), Duration::from_secs(1));
    }
}
