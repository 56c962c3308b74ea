//! DTMF as RFC 4733 telephone events: the digit type, the 4-byte event payload, a sender that
//! turns a digit into the packets of one event, and a receiver that reports each digit once.

use std::fmt;

/// One DTMF key: `0`–`9`, `*`, `#`, `A`–`D` (RFC 4733 events 0–15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    pub fn from_char(c: char) -> Option<Self> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Some(Self(code))
    }

    pub fn from_event(code: u8) -> Option<Self> {
        (code <= 15).then_some(Self(code))
    }

    pub fn event(self) -> u8 {
        self.0
    }

    pub fn as_char(self) -> char {
        match self.0 {
            0..=9 => (b'0' + self.0) as char,
            10 => '*',
            11 => '#',
            _ => (b'A' + self.0 - 12) as char,
        }
    }

    /// The (row, column) tone frequencies of this key in Hz.
    pub fn frequencies(self) -> (f32, f32) {
        let key = self.as_char();
        let (row, col) = (0..4)
            .flat_map(|row| (0..4).map(move |col| (row, col)))
            .find(|&(row, col)| KEYPAD[row][col] == key)
            .unwrap_or((3, 3));
        (KEYPAD_ROWS[row], KEYPAD_COLUMNS[col])
    }

    /// The key at a (row, column) of the keypad, as in-band detection finds it.
    pub fn at(row: usize, col: usize) -> Option<Digit> {
        let key = *KEYPAD.get(row)?.get(col)?;
        Digit::from_char(key)
    }

    /// Parses a string of digits such as `"12#"`; `None` if any character is not a DTMF key.
    pub fn parse_all(digits: &str) -> Option<Vec<Digit>> {
        digits.chars().map(Digit::from_char).collect()
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// The telephone keypad: each key sounds its row's and its column's frequency (ITU-T Q.23).
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Row frequencies in Hz, low group.
pub const KEYPAD_ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column frequencies in Hz, high group.
pub const KEYPAD_COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// The payload of one telephone-event RTP packet (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0, 0–63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl EventPayload {
    pub fn encode(self) -> [u8; 4] {
        let [hi, lo] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            hi,
            lo,
        ]
    }

    pub fn decode(payload: &[u8]) -> Option<Self> {
        let [event, flags, hi, lo, ..] = *payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([hi, lo]),
        })
    }
}

/// One packet of an outgoing event: `marker` is set on the first; all share the event's start
/// timestamp, which the caller supplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: EventPayload,
    pub marker: bool,
}

/// How long a sent key is held, and the pause after it.
pub const TONE_MS: u32 = 100;
pub const GAP_MS: u32 = 60;
/// Typical level for generated DTMF (RFC 4733 uses -dBm0; 10 is what phones send).
const VOLUME: u8 = 10;
/// The final packet is sent three times (RFC 4733 §2.5.1.4).
const END_REPEATS: usize = 3;

/// Sends one digit as a sequence of event packets, one call per 20 ms packet interval.
#[derive(Debug)]
pub struct EventSender {
    digit: Digit,
    /// Timestamp units per packet interval.
    step: u16,
    /// Timestamp units the key is held for.
    total: u16,
    sent: u16,
}

impl EventSender {
    /// `clock_rate` is the telephone-event clock (8000 Hz for telephone-event/8000).
    pub fn new(digit: Digit, clock_rate: u32) -> Self {
        let step = clock_rate / 50;
        let total = clock_rate * TONE_MS / 1000;
        Self {
            digit,
            step: u16::try_from(step).unwrap_or(u16::MAX),
            total: u16::try_from(total).unwrap_or(u16::MAX),
            sent: 0,
        }
    }

    /// The packets to send in the next packet interval; empty once the event is over. The last
    /// interval carries the three end packets.
    pub fn next_packets(&mut self) -> Vec<EventPacket> {
        if self.sent >= self.total {
            return Vec::new();
        }
        let first = self.sent == 0;
        self.sent = self.sent.saturating_add(self.step).min(self.total);
        let end = self.sent >= self.total;
        let payload = EventPayload {
            event: self.digit.event(),
            end,
            volume: VOLUME,
            duration: self.sent,
        };
        let repeats = if end { END_REPEATS } else { 1 };
        (0..repeats)
            .map(|i| EventPacket {
                payload,
                marker: first && i == 0,
            })
            .collect()
    }

    pub fn is_done(&self) -> bool {
        self.sent >= self.total
    }
}

/// A digit received as a telephone event, with how long the key was held (timestamp units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub digit: Digit,
    pub duration: u16,
}

/// Turns received event packets into digits, each reported once although senders repeat every
/// packet and the end packet three times.
#[derive(Debug, Default)]
pub struct EventReceiver {
    /// The event in progress: its RTP timestamp, digit and longest duration seen.
    current: Option<(u32, Digit, u16)>,
    /// The timestamp of the last event already reported.
    reported: Option<u32>,
}

impl EventReceiver {
    /// Feeds one packet's timestamp and payload; returns the digits that completed.
    pub fn receive(&mut self, timestamp: u32, payload: &[u8]) -> Vec<ReceivedDigit> {
        let Some(event) = EventPayload::decode(payload) else {
            return Vec::new();
        };
        let Some(digit) = Digit::from_event(event.event) else {
            return Vec::new();
        };
        if self.reported == Some(timestamp) {
            return Vec::new(); // a repeated end packet
        }
        let mut done = Vec::new();
        match &mut self.current {
            Some((ts, _, duration)) if *ts == timestamp => {
                *duration = (*duration).max(event.duration);
            }
            _ => {
                // A new event: one still open lost its end packets; report it now.
                done.extend(self.finish());
                self.current = Some((timestamp, digit, event.duration));
            }
        }
        if event.end {
            done.extend(self.finish());
        }
        done
    }

    /// Reports the open event, if any (its end packets were lost, or the stream stopped).
    pub fn finish(&mut self) -> Option<ReceivedDigit> {
        let (timestamp, digit, duration) = self.current.take()?;
        self.reported = Some(timestamp);
        Some(ReceivedDigit { digit, duration })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_map_to_rfc4733_events() {
        let all = "0123456789*#ABCD";
        for (code, c) in all.chars().enumerate() {
            let digit = Digit::from_char(c).unwrap();
            assert_eq!(digit.event() as usize, code);
            assert_eq!(digit.as_char(), c);
            assert_eq!(Digit::from_event(code as u8), Some(digit));
        }
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::parse_all("1x"), None);
        assert_eq!(
            Digit::from_char('5').unwrap().frequencies(),
            (770.0, 1336.0)
        );
    }

    #[test]
    fn payload_round_trip() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(p.encode(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(EventPayload::decode(&p.encode()), Some(p));
        assert_eq!(EventPayload::decode(&[1, 2]), None);
    }

    #[test]
    fn sender_grows_duration_marks_first_and_repeats_end() {
        let mut sender = EventSender::new(Digit::from_char('7').unwrap(), 8000);
        let mut intervals = Vec::new();
        while !sender.is_done() {
            intervals.push(sender.next_packets());
        }
        // 100 ms at 20 ms per packet.
        assert_eq!(intervals.len(), 5);
        assert!(intervals[0][0].marker);
        assert!(intervals[1..].iter().flatten().all(|p| !p.marker));
        let durations: Vec<u16> = intervals.iter().map(|i| i[0].payload.duration).collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800]);
        let last = intervals.last().unwrap();
        assert_eq!(last.len(), 3);
        assert!(
            last.iter()
                .all(|p| p.payload.end && p.payload.duration == 800)
        );
        assert!(intervals[..4].iter().flatten().all(|p| !p.payload.end));
        assert!(sender.next_packets().is_empty());
    }

    fn packets_of(digit: char, timestamp: u32) -> Vec<(u32, [u8; 4])> {
        let mut sender = EventSender::new(Digit::from_char(digit).unwrap(), 8000);
        let mut out = Vec::new();
        while !sender.is_done() {
            for p in sender.next_packets() {
                out.push((timestamp, p.payload.encode()));
            }
        }
        out
    }

    #[test]
    fn receiver_reports_each_digit_once_with_duration() {
        let mut receiver = EventReceiver::default();
        let mut got = Vec::new();
        for (i, digit) in "0123456789*#".chars().enumerate() {
            for (ts, payload) in packets_of(digit, 1000 + i as u32 * 1600) {
                got.extend(receiver.receive(ts, &payload));
            }
        }
        let digits: String = got.iter().map(|d| d.digit.as_char()).collect();
        assert_eq!(digits, "0123456789*#");
        assert!(got.iter().all(|d| d.duration == 800));
        assert_eq!(receiver.finish(), None);
    }

    #[test]
    fn lost_end_packets_are_reported_when_the_next_event_starts() {
        let mut receiver = EventReceiver::default();
        let first: Vec<_> = packets_of('1', 100)
            .into_iter()
            .filter(|(_, p)| p[1] & 0x80 == 0)
            .collect();
        let mut got = Vec::new();
        for (ts, p) in first {
            got.extend(receiver.receive(ts, &p));
        }
        assert!(got.is_empty());
        for (ts, p) in packets_of('2', 2000) {
            got.extend(receiver.receive(ts, &p));
        }
        let digits: String = got.iter().map(|d| d.digit.as_char()).collect();
        assert_eq!(digits, "12");
        assert_eq!(got[0].duration, 640);
    }

    #[test]
    fn garbage_is_ignored() {
        let mut receiver = EventReceiver::default();
        assert!(receiver.receive(1, &[]).is_empty());
        assert!(receiver.receive(1, &[200, 0x80, 0, 1]).is_empty());
    }
}
