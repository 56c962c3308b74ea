//! `callbot pbx --chaos SEED`: a hostile network and a sloppy PBX, reproducibly. Frames to and
//! from each socket are dropped, duplicated, delayed (and so reordered) or corrupted, and
//! sockets are closed at random, from a seeded generator per socket.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A frame on its way through a socket, from the client or to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Way {
    In(String),
    Out(String),
}

impl Way {
    fn map(self, f: impl FnOnce(String) -> String) -> Way {
        match self {
            Way::In(text) => Way::In(f(text)),
            Way::Out(text) => Way::Out(f(text)),
        }
    }
}

/// What to do with one frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fate {
    Deliver(Way),
    /// Deliver a damaged copy.
    Corrupt(Way),
    /// Deliver twice.
    Duplicate(Way),
    /// Deliver later (frames behind it overtake it).
    Delay(Way, Duration),
    Drop(Way),
    /// Close the socket instead.
    Close(Way),
}

impl Fate {
    /// The log line for anything but a plain delivery.
    pub(super) fn mischief(&self) -> Option<String> {
        let (what, way) = match self {
            Fate::Deliver(_) => return None,
            Fate::Corrupt(way) => ("corrupted", way),
            Fate::Duplicate(way) => ("duplicated", way),
            Fate::Delay(way, _) => ("delayed", way),
            Fate::Drop(way) => ("dropped", way),
            Fate::Close(way) => ("closing the socket after", way),
        };
        let direction = match way {
            Way::In(_) => "from",
            Way::Out(_) => "to",
        };
        Some(format!("chaos: {what} a frame {direction} the client"))
    }
}

/// How often each mischief happens, per frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChaosSettings {
    pub seed: u64,
    /// Probability of each of drop, duplicate, delay and corrupt.
    pub rate: f64,
    /// Probability of closing the socket.
    pub close_rate: f64,
}

impl std::str::FromStr for ChaosSettings {
    type Err = String;

    /// `SEED` or `SEED:RATE` (default rate 0.02, sockets closed at a third of it).
    fn from_str(text: &str) -> Result<Self, String> {
        let (seed, rate) = text.split_once(':').unwrap_or((text, "0.02"));
        let seed = seed
            .parse()
            .map_err(|_| format!("{seed:?}: the seed is a whole number"))?;
        let rate: f64 = rate
            .parse()
            .ok()
            .filter(|r| (0.0..=0.2).contains(r))
            .ok_or_else(|| format!("{rate:?}: the rate is a number from 0 to 0.2"))?;
        Ok(Self {
            seed,
            rate,
            close_rate: rate / 3.0,
        })
    }
}

pub(super) struct Chaos {
    rng: StdRng,
    settings: ChaosSettings,
}

impl Chaos {
    /// The chaos of socket `socket`: its own stream of the seeded generator.
    pub(super) fn new(settings: ChaosSettings, socket: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(settings.seed ^ socket.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            settings,
        }
    }

    pub(super) fn fate(&mut self, way: Way) -> Fate {
        let roll: f64 = self.rng.random();
        let rate = self.settings.rate;
        if roll < self.settings.close_rate {
            return Fate::Close(way);
        }
        match ((roll - self.settings.close_rate) / rate.max(f64::MIN_POSITIVE)) as u32 {
            0 => Fate::Drop(way),
            1 => Fate::Duplicate(way),
            2 => Fate::Delay(way, Duration::from_millis(self.rng.random_range(20..600))),
            3 => Fate::Corrupt(way.map(|text| self.corrupt(text))),
            _ => Fate::Deliver(way),
        }
    }

    /// Flips, cuts or inserts a few bytes (keeping valid UTF-8 for a text frame).
    fn corrupt(&mut self, text: String) -> String {
        let mut bytes = text.into_bytes();
        for _ in 0..self.rng.random_range(1..4) {
            if bytes.is_empty() {
                break;
            }
            let at = self.rng.random_range(0..bytes.len());
            match self.rng.random_range(0..3) {
                0 => bytes[at] = b"{}[]\":,0a \\"[self.rng.random_range(0..11)],
                1 => bytes.truncate(at),
                _ => bytes.insert(at, b"\"{}[]"[self.rng.random_range(0..5)]),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fates_and_all_kinds_happen() {
        let settings: ChaosSettings = "7:0.1".parse().unwrap();
        let fates = |socket| {
            let mut chaos = Chaos::new(settings, socket);
            (0..2000)
                .map(|i| format!("{:?}", chaos.fate(Way::In(format!("{{\"n\":{i}}}")))))
                .collect::<Vec<_>>()
        };
        assert_eq!(fates(1), fates(1));
        assert_ne!(fates(1), fates(2));
        let all = fates(3).join("\n");
        for kind in ["Drop", "Duplicate", "Delay", "Corrupt", "Close", "Deliver"] {
            assert!(all.contains(kind), "{kind} never happened");
        }
        assert!("x".parse::<ChaosSettings>().is_err());
        assert!("1:0.9".parse::<ChaosSettings>().is_err());
    }
}
