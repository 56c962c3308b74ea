//! Call recording: a timeline that lines up what was received and what was sent (sans-IO), and a
//! writer thread that puts it into WAV files whose header is made valid at least once a second,
//! so a killed process leaves a playable file.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use hound::{SampleFormat, WavSpec, WavWriter};

use super::pacer::MAX_CATCH_UP;

/// Samples are written this long after they were sent, so received audio that arrives late
/// still lands in its place: a far end whose clock stalled catches up for up to
/// [`MAX_CATCH_UP`], and its late frames carry their own timestamps.
const WRITE_DELAY_MS: u64 = MAX_CATCH_UP.as_millis() as u64 + 200;
/// Received audio this far ahead of or behind the timeline re-anchors it (a timestamp jump, or
/// clock drift between the two ends).
const MAX_SKEW_MS: u64 = 2000;
/// The header is rewritten at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The most audio a WAV file holds: its sizes are 32-bit, less the header (44 bytes).
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 64;
/// Samples per buffered write (8 KiB).
const WRITE_CHUNK: usize = 4096;
/// How often the writer looks for files due a header rewrite.
const SCAN_EVERY: Duration = Duration::from_millis(200);

/// Both directions of a call on one timeline: left = remote party, right = us
/// (docs/architecture.md "Recordings").
#[derive(Debug)]
pub struct Timeline {
    rate: u32,
    stereo: bool,
    /// Samples per channel handed out so far.
    written: u64,
    /// Samples per channel sent so far: "now" on the timeline.
    now: u64,
    local: VecDeque<i16>,
    remote: VecDeque<i16>,
    /// (RTP timestamp, timeline position) of the received packet everything is placed from.
    anchor: Option<(u32, u64)>,
    max_samples: Option<u64>,
    /// Samples per side the queues normally hold: after a stall made them grow, they shrink
    /// back to it, so a long call's memory does not ratchet up with every stall.
    held: usize,
}

impl Timeline {
    pub fn new(rate: u32, stereo: bool, max_secs: Option<u32>) -> Self {
        // What the write delay holds and a little more, so the queues do not grow by doubling.
        let held = (WRITE_DELAY_MS + 100) as usize * rate as usize / 1000;
        Self {
            rate,
            stereo,
            written: 0,
            now: 0,
            local: VecDeque::with_capacity(held),
            remote: VecDeque::with_capacity(held),
            anchor: None,
            max_samples: max_secs.map(|s| u64::from(s) * u64::from(rate)),
            held,
        }
    }

    pub fn channels(&self) -> u16 {
        if self.stereo { 2 } else { 1 }
    }

    fn ms(&self, ms: u64) -> u64 {
        ms * u64::from(self.rate) / 1000
    }

    /// One interval of what we sent; `None` is silence of `samples` length.
    pub fn push_local(&mut self, pcm: Option<&[i16]>, samples: usize) {
        match pcm {
            Some(pcm) => {
                self.local.extend(pcm.iter().take(samples));
                self.local
                    .extend(std::iter::repeat_n(0, samples.saturating_sub(pcm.len())));
            }
            None => self.local.extend(std::iter::repeat_n(0, samples)),
        }
        self.now += samples as u64;
    }

    /// Received audio for RTP `timestamp` (the codec's clock is the timeline's rate).
    pub fn push_remote(&mut self, timestamp: u32, pcm: &[i16]) {
        let position = match self.anchor {
            Some((anchor_ts, anchor_pos)) => {
                let offset = i64::from(timestamp.wrapping_sub(anchor_ts) as i32);
                let position = anchor_pos as i64 + offset;
                let skew = self.ms(MAX_SKEW_MS) as i64;
                let too_late = position + (pcm.len() as i64) <= self.written as i64;
                if too_late || position > self.now as i64 + skew {
                    None
                } else {
                    Some(position)
                }
            }
            None => None,
        };
        let position = position.unwrap_or_else(|| {
            self.anchor = Some((timestamp, self.now));
            self.now as i64
        });
        let mut start = position - self.written as i64;
        let mut pcm = pcm;
        if start < 0 {
            pcm = &pcm[(-start) as usize..];
            start = 0;
        }
        let start = start as usize;
        if self.remote.len() < start + pcm.len() {
            self.remote.resize(start + pcm.len(), 0);
        }
        for (slot, &sample) in self.remote.range_mut(start..).zip(pcm) {
            *slot = sample;
        }
    }

    /// Samples old enough to be final, interleaved (stereo) or mixed (mono).
    pub fn take_ready(&mut self) -> Vec<i16> {
        let ready_until = self.now.saturating_sub(self.ms(WRITE_DELAY_MS));
        self.take_until(ready_until)
    }

    /// Everything left, at the end of the recording, including received audio placed beyond
    /// "now" (its first packet came late, so the rest lands ahead of our own clock).
    pub fn take_all(&mut self) -> Vec<i16> {
        let received_until = self.written + self.remote.len() as u64;
        self.take_until(self.now.max(received_until))
    }

    /// Whether `max_secs` has been written.
    pub fn is_full(&self) -> bool {
        self.max_samples.is_some_and(|max| self.written >= max)
    }

    fn take_until(&mut self, until: u64) -> Vec<i16> {
        let until = match self.max_samples {
            Some(max) => until.min(max),
            None => until,
        };
        let count = until.saturating_sub(self.written) as usize;
        for side in [&mut self.remote, &mut self.local] {
            if side.len() < count {
                side.resize(count, 0);
            }
        }
        let mut out = Vec::with_capacity(count * usize::from(self.channels()));
        let remote = self.remote.drain(..count);
        let local = self.local.drain(..count);
        if self.stereo {
            for (r, l) in remote.zip(local) {
                out.push(r);
                out.push(l);
            }
        } else {
            out.extend(remote.zip(local).map(|(r, l)| r.saturating_add(l)));
        }
        self.written += count as u64;
        for side in [&mut self.remote, &mut self.local] {
            if side.capacity() > 2 * self.held && side.len() <= self.held {
                side.shrink_to(self.held);
            }
        }
        out
    }
}

/// A leg's recording in progress: its id at the writer and its timeline.
#[derive(Debug)]
pub struct Recording {
    pub id: u64,
    pub timeline: Timeline,
}

/// A leg's recording in progress, and those stopped whose last samples still have to reach the
/// writer (so a file's close always follows its samples).
#[derive(Debug, Default)]
pub struct Recordings {
    pub active: Option<Recording>,
    stopping: Vec<Recording>,
}

impl Recordings {
    pub fn stop(&mut self) {
        self.stopping.extend(self.active.take());
    }

    /// Hands the stopped recordings' last samples and closes to the writer.
    pub fn finish(&mut self, writes: &mut WriteBatch) {
        for mut done in self.stopping.drain(..) {
            writes.samples(done.id, done.timeline.take_all());
            writes.close(done.id);
        }
    }

    /// The clock skipped `samples` (a stall): silence on our side, and nothing is made final
    /// yet, so the far end's audio that arrived meanwhile and is read after the skip still
    /// lands in its place.
    pub fn skip(&mut self, samples: usize) {
        if let Some(active) = self.active.as_mut() {
            active.timeline.push_local(None, samples);
        }
    }

    /// Adds `samples` of what we sent (silence when `None`) to the active recording and hands
    /// what is final to the writer.
    pub fn push_local(&mut self, pcm: Option<&[i16]>, samples: usize, writes: &mut WriteBatch) {
        if let Some(active) = self.active.as_mut() {
            active.timeline.push_local(pcm, samples);
            writes.samples(active.id, active.timeline.take_ready());
            if active.timeline.is_full() {
                self.stop();
            }
        }
        self.finish(writes);
    }
}

/// What the writer thread tells the owner of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingReport {
    /// The file was closed; it holds `duration` of audio.
    Closed { path: PathBuf, duration: Duration },
    /// Writing failed (disk full, permissions…); the file keeps what was written before.
    Failed { path: PathBuf, error: String },
}

type Reporter = Box<dyn Fn(RecordingReport) + Send>;

enum Command {
    Open {
        id: u64,
        path: PathBuf,
        spec: WavSpec,
        report: Reporter,
    },
    /// One media interval's samples and closes for every recording, in order.
    Batch(Vec<Write>),
}

#[derive(Debug)]
enum Write {
    Samples {
        id: u64,
        samples: Vec<i16>,
    },
    /// Samples of this file were dropped because the writer fell too far behind.
    Lost {
        id: u64,
    },
    Close {
        id: u64,
    },
}

/// What the media clock collects for the writer during one tick: one message per tick, however
/// many calls are recorded, and a close always after the last samples of its file.
#[derive(Debug, Default)]
pub struct WriteBatch(Vec<Write>);

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Samples { samples, .. } => samples.len() * 2,
            Write::Lost { .. } | Write::Close { .. } => 0,
        }
    }
}

impl WriteBatch {
    pub fn samples(&mut self, id: u64, samples: Vec<i16>) {
        if !samples.is_empty() {
            self.0.push(Write::Samples { id, samples });
        }
    }

    pub fn close(&mut self, id: u64) {
        self.0.push(Write::Close { id });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Audio waiting for the writer at most: about two minutes of 200 stereo G.711 calls. A disk
/// that stalls longer costs the recordings it cannot take (each is reported as failed), not
/// the daemon's memory.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// Hands recordings to one writer thread, which keeps file I/O off the media clock.
#[derive(Debug, Clone)]
pub struct RecordingWriter {
    commands: mpsc::Sender<Command>,
    /// Bytes of samples sent and not yet written.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

impl RecordingWriter {
    /// Starts the writer thread; it ends when every handle is dropped, closing open files.
    pub fn start() -> std::io::Result<Self> {
        Self::start_bounded(MAX_QUEUED_BYTES)
    }

    fn start_bounded(max_queued: usize) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        std::thread::Builder::new()
            .name("callbot-recorder".into())
            .spawn(move || write_loop(receiver, &written))?;
        Ok(Self {
            commands,
            queued,
            max_queued,
        })
    }

    /// Opens `path` (creating its folder) for 16-bit audio; `report` hears when it closes or fails.
    pub fn open(
        &self,
        id: u64,
        path: &Path,
        channels: u16,
        rate: u32,
        report: impl Fn(RecordingReport) + Send + 'static,
    ) {
        let spec = WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let _ = self.commands.send(Command::Open {
            id,
            path: path.to_owned(),
            spec,
            report: Box::new(report),
        });
    }

    /// Hands over a batch of samples and closes. Samples that would take the queue past its
    /// bound are dropped and their files marked as having lost audio; closes always go.
    pub fn send(&self, batch: WriteBatch) {
        if batch.is_empty() {
            return;
        }
        let mut writes = batch.0;
        let bytes = writes.iter().map(Write::bytes).sum::<usize>();
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max_queued {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            for write in &mut writes {
                if let Write::Samples { id, .. } = *write {
                    *write = Write::Lost { id };
                }
            }
        }
        let _ = self.commands.send(Command::Batch(writes));
    }
}

struct OpenFile {
    path: PathBuf,
    /// `None` after a write error: the rest of the call is not recorded.
    writer: Option<WavWriter<BufWriter<File>>>,
    frames: u64,
    /// Audio bytes written: the WAV header holds them in 32 bits, which hound does not check.
    data_bytes: u64,
    max_data_bytes: u64,
    rate: u32,
    channels: u16,
    dirty_since: Option<Instant>,
    report: Reporter,
}

impl OpenFile {
    /// Creates the file with a valid (empty) header; a failure is reported, and the file then
    /// ignores what it is given.
    fn create(path: PathBuf, spec: WavSpec, report: Reporter, max_data_bytes: u64) -> Self {
        let mut file = OpenFile {
            writer: None,
            frames: 0,
            data_bytes: 0,
            max_data_bytes,
            rate: spec.sample_rate,
            channels: spec.channels,
            dirty_since: None,
            report,
            path,
        };
        match create(&file.path, spec) {
            Ok(writer) => {
                file.writer = Some(writer);
                file.flush();
            }
            Err(error) => file.fail(error),
        }
        file
    }

    /// The writer fell behind and this file's audio was dropped: it keeps what it has, with a
    /// valid header, and the rest of the call is not recorded (a file with a gap would lie).
    fn lose(&mut self) {
        if let Some(writer) = self.writer.take() {
            let error = match writer.finalize() {
                Ok(()) => "the disk did not keep up: audio was dropped and the rest of the call is not recorded".to_string(),
                Err(e) => e.to_string(),
            };
            self.fail(error);
        }
    }

    fn fail(&mut self, error: impl std::fmt::Display) {
        self.writer = None;
        (self.report)(RecordingReport::Failed {
            path: self.path.clone(),
            error: error.to_string(),
        });
    }

    fn write(&mut self, samples: &[i16]) {
        if self.writer.is_none() {
            return;
        }
        let bytes = self.data_bytes + 2 * samples.len() as u64;
        if bytes > self.max_data_bytes {
            return self.stop_at_size_limit();
        }
        let Some(writer) = &mut self.writer else {
            return;
        };
        // One buffered write per chunk instead of a call per sample; chunks are bounded, as
        // hound keeps its buffer at the largest size it was asked for.
        let written = samples.chunks(WRITE_CHUNK).try_for_each(|chunk| {
            // A chunk's length fits in u32 (it is at most WRITE_CHUNK).
            let mut out = writer.get_i16_writer(chunk.len() as u32);
            for &sample in chunk {
                out.write_sample(sample);
            }
            out.flush()
        });
        match written {
            Ok(()) => {
                self.data_bytes = bytes;
                self.frames += (samples.len() / usize::from(self.channels)) as u64;
                self.dirty_since.get_or_insert_with(Instant::now);
            }
            Err(e) => self.fail(e),
        }
    }

    /// What fits is kept: the header is made valid before the file is given up.
    fn stop_at_size_limit(&mut self) {
        let error = match self.writer.take().map(WavWriter::finalize) {
            Some(Err(e)) => e.to_string(),
            _ => format!(
                "the WAV size limit ({} bytes of audio) is reached; the rest of the call is not recorded",
                self.max_data_bytes
            ),
        };
        self.fail(error);
    }

    /// Rewrites the header so the file is valid up to here.
    fn flush(&mut self) {
        self.dirty_since = None;
        if let Some(writer) = &mut self.writer
            && let Err(e) = writer.flush()
        {
            self.fail(e);
        }
    }

    fn close(mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.finalize() {
                return self.fail(e);
            }
            (self.report)(RecordingReport::Closed {
                path: self.path.clone(),
                duration: Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate)),
            });
        }
    }
}

fn create(path: &Path, spec: WavSpec) -> Result<WavWriter<BufWriter<File>>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Created new: a recording never replaces a file (or follows a link) that is there.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    WavWriter::new(BufWriter::new(file), spec).map_err(|e| e.to_string())
}

fn write_loop(commands: mpsc::Receiver<Command>, queued: &AtomicUsize) {
    let mut files: HashMap<u64, OpenFile> = HashMap::new();
    let mut last_scan = Instant::now();
    loop {
        match commands.recv_timeout(SCAN_EVERY) {
            Ok(Command::Open {
                id,
                path,
                spec,
                report,
            }) => {
                files.insert(id, OpenFile::create(path, spec, report, MAX_DATA_BYTES));
            }
            Ok(Command::Batch(writes)) => {
                for write in writes {
                    queued.fetch_sub(write.bytes(), Ordering::Relaxed);
                    match write {
                        Write::Samples { id, samples } => {
                            if let Some(file) = files.get_mut(&id) {
                                file.write(&samples);
                                if file.dirty_since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
                                    file.flush();
                                }
                            }
                        }
                        Write::Lost { id } => {
                            if let Some(file) = files.get_mut(&id) {
                                file.lose();
                            }
                        }
                        Write::Close { id } => {
                            if let Some(file) = files.remove(&id) {
                                file.close();
                            }
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Files that stopped receiving samples still get their header rewritten in time.
        if last_scan.elapsed() >= SCAN_EVERY {
            last_scan = Instant::now();
            for file in files.values_mut() {
                if file.dirty_since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
                    file.flush();
                }
            }
        }
    }
    for (_, file) in files.drain() {
        file.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: i16) -> Vec<i16> {
        vec![value; 160]
    }

    #[test]
    fn stereo_lines_up_remote_left_and_local_right() {
        let mut t = Timeline::new(8000, true, None);
        for i in 0..10 {
            t.push_remote(1000 + 160 * i, &frame(2));
            t.push_local(Some(&frame(1)), 160);
        }
        let out = t.take_all();
        assert_eq!(out.len(), 1600 * 2);
        assert!(out.chunks(2).all(|lr| lr == [2, 1]));
    }

    #[test]
    fn lost_and_missing_audio_is_silence_and_late_packets_land_in_place() {
        let mut t = Timeline::new(8000, true, None);
        t.push_local(None, 160);
        t.push_remote(0, &frame(5));
        t.push_local(None, 160);
        // Packet 1 lost; packet 3 arrives before packet 2.
        t.push_local(None, 160);
        t.push_remote(480, &frame(7));
        t.push_remote(320, &frame(6));
        t.push_local(None, 160);
        let left: Vec<i16> = t.take_all().chunks(2).map(|lr| lr[0]).collect();
        // Remote is anchored where its first packet arrived (160 samples in).
        assert_eq!(&left[..160], &[0; 160][..]);
        assert_eq!(&left[160..320], &frame(5)[..]);
        assert_eq!(&left[320..480], &[0; 160][..]);
        assert_eq!(&left[480..640], &frame(6)[..]);
    }

    #[test]
    fn ready_samples_trail_by_the_write_delay_and_mono_mixes() {
        let mut t = Timeline::new(8000, false, None);
        for _ in 0..50 {
            t.push_local(Some(&frame(100)), 160);
        }
        let delay = WRITE_DELAY_MS as usize * 8;
        let ready = t.take_ready();
        assert_eq!(ready.len(), 8000 - delay);
        assert!(ready.iter().all(|&s| s == 100));
        assert_eq!(t.take_all().len(), delay);
    }

    /// Plays the far end's `arrivals` (per interval of ours: the frame numbers that arrive then,
    /// 160 samples of `9` each) into a timeline that writes as it goes, as a leg does; returns
    /// the recorded left channel.
    fn record_arrivals(arrivals: &[Vec<u32>]) -> Vec<i16> {
        let mut t = Timeline::new(8000, true, None);
        let mut out = Vec::new();
        for frames in arrivals {
            for &n in frames {
                t.push_remote(160 * n, &frame(9));
            }
            t.push_local(None, 160);
            out.extend(t.take_ready());
        }
        out.extend(t.take_all());
        out.chunks(2).map(|lr| lr[0]).collect()
    }

    /// Samples from the first to the last sound.
    fn span(left: &[i16]) -> usize {
        let first = left.iter().position(|&s| s != 0).unwrap();
        let last = left.iter().rposition(|&s| s != 0).unwrap();
        assert!(left[first..=last].iter().all(|&s| s == 9), "a gap");
        last + 1 - first
    }

    #[test]
    fn a_catching_up_far_end_is_recorded_at_its_length() {
        // 100 frames; the far end stalls for 280 ms after frame 9, then sends the 14 frames it
        // owes at once, each with its own timestamp, then the rest on time.
        let arrivals: Vec<Vec<u32>> = (0..130u32)
            .map(|tick| match tick {
                0..10 => vec![tick],
                10..24 => vec![],
                24 => (10..=24).collect(),
                25..100 => vec![tick],
                _ => vec![],
            })
            .collect();
        assert_eq!(span(&record_arrivals(&arrivals)), 100 * 160);
    }

    #[test]
    fn audio_that_arrived_while_our_clock_stalled_lands_in_place() {
        let mut recordings = Recordings {
            active: Some(Recording {
                id: 1,
                timeline: Timeline::new(8000, true, None),
            }),
            ..Recordings::default()
        };
        let mut writes = WriteBatch::default();
        let mut tick = |recordings: &mut Recordings, frames: std::ops::Range<u32>| {
            for n in frames {
                let timeline = &mut recordings.active.as_mut().unwrap().timeline;
                timeline.push_remote(160 * n, &frame(9));
            }
            recordings.push_local(None, 160, &mut writes);
        };
        for n in 0..20 {
            tick(&mut recordings, n..n + 1);
        }
        // Our clock stalls for a second: 700 ms are skipped, then the 50 frames that came
        // meanwhile are read, and the last 300 ms are caught up.
        recordings.skip(35 * 160);
        tick(&mut recordings, 20..70);
        for _ in 0..14 {
            tick(&mut recordings, 0..0);
        }
        for n in 70..100 {
            tick(&mut recordings, n..n + 1);
        }
        recordings.stop();
        recordings.finish(&mut writes);
        let samples: Vec<i16> = writes
            .0
            .iter()
            .flat_map(|write| match write {
                Write::Samples { samples, .. } => samples.clone(),
                Write::Lost { .. } | Write::Close { .. } => Vec::new(),
            })
            .collect();
        let left: Vec<i16> = samples.chunks(2).map(|lr| lr[0]).collect();
        assert_eq!(span(&left), 100 * 160);
    }

    #[test]
    fn audio_placed_ahead_of_our_clock_is_kept_at_the_end() {
        // The first packet (it anchors) comes 60 ms late, with the next three: the rest land
        // 60 ms ahead of our clock, and the recording still ends with the last of them.
        let arrivals: Vec<Vec<u32>> = (0..30u32)
            .map(|tick| match tick {
                0..3 => vec![],
                3 => (0..=3).collect(),
                4..30 => vec![tick],
                _ => vec![],
            })
            .collect();
        assert_eq!(span(&record_arrivals(&arrivals)), 30 * 160);
    }

    #[test]
    fn a_stall_does_not_leave_the_timeline_holding_its_memory() {
        let mut timeline = Timeline::new(8000, true, None);
        // Ten seconds skipped at once (a stalled clock), received audio alongside.
        timeline.push_remote(0, &[1; 80_000]);
        timeline.push_local(None, 80_000);
        let grown = timeline.local.capacity();
        assert!(grown >= 80_000);
        for n in 0..100u32 {
            timeline.push_local(Some(&[2; 160]), 160);
            timeline.push_remote(80_000 + n * 160, &[1; 160]);
            timeline.take_ready();
        }
        assert!(
            timeline.local.capacity() <= 2 * timeline.held,
            "{}",
            timeline.local.capacity()
        );
        assert!(
            timeline.remote.capacity() <= 2 * timeline.held,
            "{}",
            timeline.remote.capacity()
        );
    }

    #[test]
    fn max_secs_stops_the_timeline() {
        let mut t = Timeline::new(8000, false, Some(1));
        for _ in 0..100 {
            t.push_local(None, 160);
        }
        assert_eq!(t.take_all().len(), 8000);
        assert!(t.is_full());
    }

    #[test]
    fn a_timestamp_jump_reanchors() {
        let mut t = Timeline::new(8000, true, None);
        t.push_local(None, 160);
        t.push_remote(0, &frame(1));
        t.push_local(None, 160);
        t.push_remote(4_000_000, &frame(2));
        t.push_local(None, 160);
        let left: Vec<i16> = t.take_all().chunks(2).map(|lr| lr[0]).collect();
        assert_eq!(&left[320..480], &frame(2)[..]);
    }

    #[test]
    fn writer_produces_a_valid_file_and_reports_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/call.wav");
        let writer = RecordingWriter::start().unwrap();
        let (tx, rx) = mpsc::channel();
        writer.open(1, &path, 2, 8000, move |r| tx.send(r).unwrap());
        let mut batch = WriteBatch::default();
        batch.samples(1, vec![3; 16000]);
        batch.close(1);
        writer.send(batch);
        let report = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            report,
            RecordingReport::Closed {
                path: path.clone(),
                duration: Duration::from_secs(1)
            }
        );
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.duration(), 8000);
    }

    #[test]
    fn a_file_at_the_wav_size_limit_keeps_what_fits_and_reports_why_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.wav");
        let spec = WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = reports.clone();
        let report: Reporter = Box::new(move |r| seen.lock().unwrap().push(r));
        let mut file = OpenFile::create(path.clone(), spec, report, 2000);
        file.write(&[7; 400]);
        file.write(&[7; 400]);
        file.write(&[7; 400]);
        file.close();
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(
            matches!(&reports[0], RecordingReport::Failed { error, .. } if error.contains("size limit")),
            "{reports:?}"
        );
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.duration(), 800, "what fitted is in the header");
    }

    #[test]
    fn samples_past_the_queue_bound_are_dropped_and_their_file_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, dropped) = (dir.path().join("kept.wav"), dir.path().join("dropped.wav"));
        let writer = RecordingWriter::start_bounded(1000).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        writer.open(1, &kept, 1, 8000, move |r| tx.send(r).unwrap());
        writer.open(2, &dropped, 1, 8000, move |r| tx2.send(r).unwrap());
        let mut first = WriteBatch::default();
        first.samples(1, vec![1; 400]);
        writer.send(first);
        // The writer may not have taken the first batch yet: hold the queue full meanwhile.
        writer.queued.fetch_add(1000, Ordering::Relaxed);
        let mut second = WriteBatch::default();
        second.samples(2, vec![1; 400]);
        second.close(1);
        second.close(2);
        writer.send(second);
        let mut reports = [
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        ];
        reports.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            reports[0],
            RecordingReport::Closed {
                path: kept.clone(),
                duration: Duration::from_millis(50)
            }
        );
        assert!(
            matches!(&reports[1], RecordingReport::Failed { path, error } if *path == dropped && error.contains("did not keep up")),
            "{reports:?}"
        );
        assert_eq!(hound::WavReader::open(&dropped).unwrap().duration(), 0);
    }

    #[test]
    fn an_unwritable_path_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let writer = RecordingWriter::start().unwrap();
        let (tx, rx) = mpsc::channel();
        writer.open(1, &blocker.join("call.wav"), 1, 8000, move |r| {
            tx.send(r).unwrap()
        });
        let mut batch = WriteBatch::default();
        batch.samples(1, vec![1; 100]);
        batch.close(1);
        writer.send(batch);
        let report = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            matches!(report, RecordingReport::Failed { .. }),
            "{report:?}"
        );
    }
}
