//! Per-leg counters: what was sent and received, loss and interarrival jitter (RFC 3550 §6.4.1),
//! and the pacing of our own packets.

use std::time::{Duration, Instant};

/// A snapshot of one leg's media statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets the media clock could not hand to the transport at once (overload).
    pub packets_dropped: u64,
    /// 20 ms intervals not sent at all because the media clock stalled for longer than it
    /// catches up (a badly overloaded or suspended machine); the RTP timestamps jump over them.
    pub intervals_skipped: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Expected minus received, from sequence numbers (RFC 3550 §6.4.1); never negative.
    pub packets_lost: u64,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    /// From leg creation to ICE + DTLS connected.
    pub connect_time: Option<Duration>,
    /// From connected to the first packet of queued audio (a prompt, tone or echo) sent.
    pub first_audio: Option<Duration>,
    /// From connected to the first audible packet received.
    pub first_audio_received: Option<Duration>,
    /// Arrival gaps of received audio packets (interarrival jitter, as a distribution).
    pub arrival: GapHistogram,
    /// How loud the far end is now (RMS in dBFS, a few readings a second); `None` before audio.
    pub level_dbfs: Option<f32>,
}

/// The far end's loudness for live meters (the dashboard). Audio that a leg does not decode
/// anyway (no recording, no in-band DTMF …) is decoded for it only once in [`LEVEL_EVERY`]
/// frames: a meter needs a few readings a second, not fifty.
#[derive(Clone, Copy, Debug, Default)]
pub struct LevelMeter {
    dbfs: Option<f32>,
}

/// One frame in this many (by sequence number) is measured.
pub const LEVEL_EVERY: u16 = 5;

impl LevelMeter {
    /// Whether the frame with `sequence` is one the meter reads.
    pub fn wants(sequence: u16) -> bool {
        sequence.is_multiple_of(LEVEL_EVERY)
    }

    /// Reads a decoded frame (an empty one, when nothing could be decoded, is skipped).
    pub fn measure(&mut self, pcm: &[i16]) {
        if !pcm.is_empty() {
            self.dbfs = Some(dbfs(pcm));
        }
    }

    pub fn dbfs(&self) -> Option<f32> {
        self.dbfs
    }
}

/// The RMS level of `pcm` in dBFS (a full-scale square wave is 0), floored at -90.
pub fn dbfs(pcm: &[i16]) -> f32 {
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / pcm.len().max(1) as f64).sqrt() / 32768.0;
    (20.0 * rms.max(1e-9).log10()).max(-90.0) as f32
}

/// Receive-side bookkeeping for loss and jitter.
#[derive(Debug, Default)]
pub struct ReceiveStats {
    packets: u64,
    bytes: u64,
    /// Extended highest sequence number and the first one seen.
    base_sequence: Option<u64>,
    highest_sequence: u64,
    /// Previous (arrival in timestamp units, RTP timestamp) for the jitter estimate.
    previous: Option<(f64, u32)>,
    jitter: f64,
}

impl ReceiveStats {
    /// Records one packet that arrived at `arrival`, for a stream with `clock_rate`.
    pub fn record(
        &mut self,
        sequence: u16,
        timestamp: u32,
        bytes: usize,
        arrival: Instant,
        epoch: Instant,
        clock_rate: u32,
    ) {
        self.packets += 1;
        self.bytes += bytes as u64;
        let extended = match self.base_sequence {
            None => {
                self.base_sequence = Some(u64::from(sequence));
                u64::from(sequence)
            }
            Some(_) => {
                // Pick the extension of `sequence` nearest to the highest seen (wrap-around).
                let cycle = self.highest_sequence & !0xffff;
                [cycle.wrapping_sub(0x1_0000), cycle, cycle + 0x1_0000]
                    .into_iter()
                    .map(|c| c.wrapping_add(u64::from(sequence)))
                    .min_by_key(|candidate| candidate.abs_diff(self.highest_sequence))
                    .unwrap_or(u64::from(sequence))
            }
        };
        self.highest_sequence = self.highest_sequence.max(extended);
        let arrival_units = arrival.duration_since(epoch).as_secs_f64() * f64::from(clock_rate);
        if let Some((previous_arrival, previous_timestamp)) = self.previous {
            let transit_change = (arrival_units - previous_arrival)
                - f64::from(timestamp.wrapping_sub(previous_timestamp) as i32);
            self.jitter += (transit_change.abs() - self.jitter) / 16.0;
        }
        self.previous = Some((arrival_units, timestamp));
    }

    pub fn fill(&self, stats: &mut LegStats, clock_rate: u32) {
        stats.packets_received = self.packets;
        stats.bytes_received = self.bytes;
        let expected = self
            .base_sequence
            .map_or(0, |base| self.highest_sequence - base + 1);
        stats.packets_lost = expected.saturating_sub(self.packets);
        stats.jitter_ms = self.jitter * 1000.0 / f64::from(clock_rate.max(1));
    }
}

/// How regular a packet stream is: the gap between successive packets (sent, or received)
/// minus the 20 ms interval, in 0.1 ms buckets (the last bucket collects everything from
/// 25 ms up).
#[derive(Debug, PartialEq)]
pub struct GapHistogram {
    last: Option<Instant>,
    buckets: Vec<u32>,
}

impl Clone for GapHistogram {
    fn clone(&self) -> Self {
        Self {
            last: self.last,
            buckets: self.buckets.clone(),
        }
    }

    /// Copies into the existing buckets (the media engine publishes histograms often).
    fn clone_from(&mut self, source: &Self) {
        self.last = source.last;
        self.buckets.clone_from(&source.buckets);
    }
}

const BUCKET_US: u64 = 100;
const BUCKETS: usize = 250;

impl Default for GapHistogram {
    fn default() -> Self {
        Self {
            last: None,
            buckets: vec![0; BUCKETS],
        }
    }
}

impl GapHistogram {
    pub fn record(&mut self, sent: Instant, interval: Duration) {
        if let Some(last) = self.last.replace(sent) {
            let deviation = sent.duration_since(last).abs_diff(interval);
            let bucket = (deviation.as_micros() as u64 / BUCKET_US) as usize;
            self.buckets[bucket.min(BUCKETS - 1)] += 1;
        }
    }

    /// Adds another leg's pacing to this one (for a whole-process figure).
    pub fn merge(&mut self, other: &GapHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&b| u64::from(b)).sum()
    }

    /// The deviation below which `quantile` (0–1) of the gaps fall, to 0.1 ms.
    pub fn quantile(&self, quantile: f64) -> Duration {
        let target = (self.count() as f64 * quantile).ceil() as u64;
        let mut seen = 0u64;
        for (i, &b) in self.buckets.iter().enumerate() {
            seen += u64::from(b);
            if seen >= target.max(1) {
                return Duration::from_micros((i as u64 + 1) * BUCKET_US);
            }
        }
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_in_dbfs() {
        let full: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert!(dbfs(&full).abs() < 0.01, "{}", dbfs(&full));
        let tenth: Vec<i16> = full.iter().map(|s| s / 10).collect();
        assert!((dbfs(&tenth) + 20.0).abs() < 0.1, "{}", dbfs(&tenth));
        assert_eq!(dbfs(&[0; 160]), -90.0);
        let mut meter = LevelMeter::default();
        meter.measure(&[]);
        assert_eq!(meter.dbfs(), None);
        meter.measure(&tenth);
        assert!(meter.dbfs().is_some());
        assert!(LevelMeter::wants(10) && !LevelMeter::wants(11));
    }

    #[test]
    fn loss_counts_gaps_across_wraparound() {
        let epoch = Instant::now();
        let mut r = ReceiveStats::default();
        for (i, seq) in [65533u16, 65534, 0, 1, 3].into_iter().enumerate() {
            let at = epoch + Duration::from_millis(20 * i as u64);
            r.record(seq, 160 * i as u32, 160, at, epoch, 8000);
        }
        let mut s = LegStats::default();
        r.fill(&mut s, 8000);
        assert_eq!(s.packets_received, 5);
        assert_eq!(s.packets_lost, 2); // 65535 and 2
        assert!(s.jitter_ms < 0.01, "{}", s.jitter_ms);
    }

    #[test]
    fn jitter_grows_with_irregular_arrival() {
        let epoch = Instant::now();
        let mut r = ReceiveStats::default();
        for i in 0..100u32 {
            let wobble = if i % 2 == 0 { 0 } else { 5 };
            let at = epoch + Duration::from_millis(20 * u64::from(i) + wobble);
            r.record(i as u16, 160 * i, 160, at, epoch, 8000);
        }
        let mut s = LegStats::default();
        r.fill(&mut s, 8000);
        assert!((4.0..6.0).contains(&s.jitter_ms), "{}", s.jitter_ms);
    }

    #[test]
    fn pacing_quantiles() {
        let mut p = GapHistogram::default();
        let start = Instant::now();
        let interval = Duration::from_millis(20);
        let mut t = start;
        for i in 0..100 {
            t += interval + Duration::from_micros(if i == 50 { 3000 } else { 50 });
            p.record(t, interval);
        }
        assert_eq!(p.count(), 99);
        assert_eq!(p.quantile(0.5), Duration::from_micros(100));
        assert_eq!(p.quantile(1.0), Duration::from_micros(3100));
    }
}
