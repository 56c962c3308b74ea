//! What the emulator lets any one peer take: open sockets per address and in all, frames per
//! second per websocket, and how many of its complaints reach the log. Anyone who can reach
//! the port can open sockets and anyone logged in can send frames; none of it may exhaust file
//! descriptors, the CPU or the disk the log is on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock::lock;

/// Limits and timeouts of one emulator (`callbot pbx --max-…`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open TCP connections (HTTPS and websockets) from one address.
    pub sockets_per_address: usize,
    /// Open TCP connections in all.
    pub sockets: usize,
    /// Frames a websocket may send per second (a second's worth may come at once); more
    /// close it with 1008.
    pub frames_per_second: u32,
    /// Calls one extension may have placed and not yet ended; more end with 503.
    pub calls_per_extension: usize,
    /// A request's header must arrive this soon after the connection (or the previous
    /// request) is ready; a TLS handshake has as long.
    pub header_timeout: Duration,
    /// A websocket that sends nothing (not even its 30 s keepalive) this long is closed.
    pub idle_timeout: Duration,
    /// A session unused this long (no socket open) ends.
    pub session_idle: Duration,
    /// A session ends this long after login, whatever it does; its sockets close.
    pub session_lifetime: Duration,
    /// What the event journal (`/emulator/events`) may hold, in bytes.
    pub journal_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sockets_per_address: 256,
            sockets: 4096,
            frames_per_second: 500,
            calls_per_extension: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            session_idle: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(24 * 3600),
            journal_bytes: 16 << 20,
        }
    }
}

/// Open connections, counted per address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Admits connections within the caps; an admitted connection holds an [`Admitted`] until it
/// closes.
#[derive(Clone, Debug)]
pub struct Connections {
    per_address: usize,
    total: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One open connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Admitted {
    address: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Connections {
    pub fn new(limits: &Limits) -> Self {
        Self {
            per_address: limits.sockets_per_address,
            total: limits.sockets,
            counts: Arc::default(),
        }
    }

    /// A place for a connection from `address`, or why there is none.
    pub fn admit(&self, address: IpAddr) -> Result<Admitted, &'static str> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.total {
            return Err("the emulator's socket limit is reached");
        }
        let open = counts.per_address.entry(address).or_default();
        if *open >= self.per_address {
            return Err("the address's socket limit is reached");
        }
        *open += 1;
        counts.total += 1;
        Ok(Admitted {
            address,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(open) = counts.per_address.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                counts.per_address.remove(&self.address);
            }
        }
    }
}

/// A token bucket: `rate` frames a second, up to a second's worth at once.
#[derive(Debug)]
pub struct FrameBudget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl FrameBudget {
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            tokens: f64::from(rate.max(1)),
            at: now,
        }
    }

    /// Whether one more frame fits now.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How many lines of one kind reach the log: a few per window, then a count of what was left
/// out, so that a peer sending garbage cannot fill the disk through the log.
#[derive(Debug)]
pub struct LogBudget {
    window_start: Instant,
    lines: u32,
    left_out: u64,
}

/// Lines per window, and the window.
const LOG_LINES: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Whether to log now.
#[derive(Debug, PartialEq, Eq)]
pub enum LogNow {
    /// Log, and say that this many lines were left out before.
    Yes {
        left_out: u64,
    },
    No,
}

impl LogBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            lines: 0,
            left_out: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> LogNow {
        if now.saturating_duration_since(self.window_start) >= LOG_WINDOW {
            self.window_start = now;
            self.lines = 0;
        }
        if self.lines < LOG_LINES {
            self.lines += 1;
            LogNow::Yes {
                left_out: std::mem::take(&mut self.left_out),
            }
        } else {
            self.left_out += 1;
            LogNow::No
        }
    }
}

/// Logs through a [`LogBudget`]: `warn!` with the budget's note of left-out lines.
macro_rules! warn_within {
    ($budget:expr, $now:expr, $($arg:tt)+) => {
        if let $crate::pbx::limits::LogNow::Yes { left_out } = $budget.admit($now) {
            if left_out > 0 {
                tracing::warn!("({left_out} similar lines left out)");
            }
            tracing::warn!($($arg)+);
        }
    };
}
pub(crate) use warn_within;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn connections_are_capped_per_address_and_in_all() {
        let limits = Limits {
            sockets_per_address: 2,
            sockets: 3,
            ..Limits::default()
        };
        let connections = Connections::new(&limits);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let first = connections.admit(a).unwrap();
        let _second = connections.admit(a).unwrap();
        assert!(connections.admit(a).is_err(), "per address");
        let _third = connections.admit(b).unwrap();
        assert!(connections.admit(b).is_err(), "in all");
        drop(first);
        assert_eq!(connections.open(), 2);
        assert!(
            connections.admit(a).is_ok(),
            "a closed connection gives its place back"
        );
    }

    #[test]
    fn frames_beyond_the_rate_are_refused_and_the_budget_refills() {
        let now = Instant::now();
        let mut budget = FrameBudget::new(10, now);
        assert_eq!((0..20).filter(|_| budget.take(now)).count(), 10);
        assert!(budget.take(now + Duration::from_millis(100)));
        assert!(!budget.take(now + Duration::from_millis(100)));
    }

    #[test]
    fn the_log_gets_a_few_lines_a_window_and_the_count_of_the_rest() {
        let now = Instant::now();
        let mut budget = LogBudget::new(now);
        let logged = (0..100).filter(|_| budget.admit(now) != LogNow::No).count();
        assert_eq!(logged, LOG_LINES as usize);
        assert_eq!(budget.admit(now + LOG_WINDOW), LogNow::Yes { left_out: 90 });
    }
}
