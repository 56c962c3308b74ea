//! Byte- and token-wise mutation of seed inputs, shared by the fuzz harnesses.

use rand::RngExt;
use rand::rngs::StdRng;

use super::FRAME_WORDS;

pub struct Mutator {
    pub rng: StdRng,
}

impl Mutator {
    pub fn new(rng: StdRng) -> Self {
        Self { rng }
    }

    pub fn mutate(&mut self, input: &[u8], others: &[Vec<u8>], words: &[&str]) -> Vec<u8> {
        let mut data = input.to_vec();
        let rounds = self.rng.random_range(1..=6);
        for _ in 0..rounds {
            let len = data.len();
            let at = if len == 0 {
                0
            } else {
                self.rng.random_range(0..=len)
            };
            match self.rng.random_range(0..8) {
                0 if len > 0 => {
                    let i = at.min(len - 1);
                    data[i] ^= 1 << self.rng.random_range(0..8);
                }
                1 if len > 0 => {
                    let i = at.min(len - 1);
                    data[i] = b"{}[],:\"0-9\\ \nae"[self.rng.random_range(0..15)];
                }
                2 => data.insert(at, self.rng.random()),
                3 if len > 0 => {
                    let end = (at + self.rng.random_range(1..16)).min(len);
                    data.drain(at.min(end)..end);
                }
                4 if len > 0 => {
                    let start = self.rng.random_range(0..len);
                    let end = (start + self.rng.random_range(1..32)).min(len);
                    let chunk = data[start..end].to_vec();
                    data.splice(at..at, chunk);
                }
                5 => {
                    let word = words[self.rng.random_range(0..words.len())];
                    data.splice(at..at, word.bytes());
                }
                6 => {
                    let other = &others[self.rng.random_range(0..others.len())];
                    if !other.is_empty() {
                        let cut = self.rng.random_range(0..other.len());
                        data.truncate(at);
                        data.extend_from_slice(&other[cut..]);
                    }
                }
                _ => {
                    let word = format!(
                        "\"{}\"",
                        FRAME_WORDS[self.rng.random_range(0..FRAME_WORDS.len())]
                    );
                    data.splice(at..at, word.bytes());
                }
            }
        }
        data
    }
}

/// A number from the environment (FUZZ_ITERATIONS, FUZZ_SEED …), or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs one fuzz case; a panic saves `input` to `target/fuzz-crashes/<target>-…` and counts.
/// Returns `Some(accepted)`, or `None` when it panicked.
pub fn guarded(
    target: &str,
    seed: u64,
    case: u64,
    input: &[u8],
    f: impl FnOnce() -> bool,
) -> Option<bool> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(accepted) => Some(accepted),
        Err(_) => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            std::fs::create_dir_all(&dir).expect("crash folder");
            let file = dir.join(format!("{target}-seed{seed}-case{case}.txt"));
            std::fs::write(&file, input).expect("save crash");
            eprintln!(
                "{target}: case {case} panicked; saved to {}",
                file.display()
            );
            None
        }
    }
}

/// Counts of a fuzz run, printed at the end (and every million inputs).
pub struct Tally {
    target: &'static str,
    started: std::time::Instant,
    pub inputs: u64,
    pub accepted: u64,
    pub panics: usize,
}

impl Tally {
    pub fn new(target: &'static str) -> Self {
        Self {
            target,
            started: std::time::Instant::now(),
            inputs: 0,
            accepted: 0,
            panics: 0,
        }
    }

    pub fn add(&mut self, outcome: Option<bool>) {
        self.inputs += 1;
        match outcome {
            Some(true) => self.accepted += 1,
            Some(false) => {}
            None => self.panics += 1,
        }
        if self.inputs.is_multiple_of(1_000_000) {
            eprintln!(
                "{}: {} inputs, {} panics, {:.0} inputs/s",
                self.target,
                self.inputs,
                self.panics,
                self.inputs as f64 / self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// Prints the summary; returns the number of panics.
    pub fn finish(self) -> usize {
        eprintln!(
            "{}: {} inputs in {:.1} s, {} accepted, {} panics",
            self.target,
            self.inputs,
            self.started.elapsed().as_secs_f64(),
            self.accepted,
            self.panics
        );
        self.panics
    }
}
