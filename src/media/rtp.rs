//! RTP packets as the media layer sees them, independent of the WebRTC stack underneath.

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub ssrc: u32,
    pub payload: Bytes,
}

/// Numbers one outgoing stream: sequence numbers step per packet, the timestamp per 20 ms of
/// media, whatever was sent in it (audio, silence or telephone events).
#[derive(Debug)]
pub struct Sequencer {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl Sequencer {
    /// Starts at random sequence number and timestamp (RFC 3550 §5.1).
    pub fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            sequence: rand::random(),
            timestamp: rand::random(),
        }
    }

    /// The timestamp of the media interval about to be sent.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// A packet in the current interval with the next sequence number.
    pub fn packet(
        &mut self,
        payload_type: u8,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
    ) -> RtpPacket {
        let packet = RtpPacket {
            payload_type,
            sequence: self.sequence,
            timestamp,
            marker,
            ssrc: self.ssrc,
            payload,
        };
        self.sequence = self.sequence.wrapping_add(1);
        packet
    }

    /// Moves the timestamp on by one interval of `samples`.
    pub fn advance(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_steps_per_packet_and_timestamp_per_interval() {
        let mut s = Sequencer::new(7);
        let t0 = s.timestamp();
        let a = s.packet(0, s.timestamp(), true, Bytes::new());
        let b = s.packet(101, t0, false, Bytes::new());
        s.advance(160);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(s.timestamp(), t0.wrapping_add(160));
        assert_eq!(a.ssrc, 7);
    }
}
