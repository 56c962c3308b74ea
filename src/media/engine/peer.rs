//! One leg's WebRTC peer connection on `rtc`, webrtc-rs's sans-IO core: it is fed datagrams and
//! time, and polled for datagrams, events and RTP. Nothing here touches a socket or a clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateRelayConfig, CandidateServerReflexiveConfig,
    RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp::{Header, Packet};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::media::codec::Codec;
use crate::media::player::Negotiated;
use crate::media::rtp::RtpPacket;
use crate::media::sdp;
use crate::media::transport::{TransportError, TransportState};
use crate::protocol::IceCandidate;

/// Payload types we offer for the dynamic codecs (answers take the offer's numbers).
const TELEPHONE_EVENT_PT: u8 = 101;
const OPUS_PT: u8 = 111;

/// Between ICE connectivity checks; webrtc-rs defaults to 200 ms, which alone makes a local call
/// take ~400 ms to connect.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Datagrams kept while ICE is still connecting (see [`Peer::receive`]).
const MAX_EARLY_DATAGRAMS: usize = 16;

fn stack_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Stack(e.to_string())
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

/// Our codecs, in order of preference for offers; answers follow the remote's order.
fn media_engine() -> Result<MediaEngine, TransportError> {
    let mut engine = MediaEngine::default();
    for parameters in [
        codec(MIME_TYPE_PCMU, 8000, 0, "", 0),
        codec(MIME_TYPE_PCMA, 8000, 0, "", 8),
        codec(
            MIME_TYPE_OPUS,
            48000,
            2,
            "minptime=10;useinbandfec=1",
            OPUS_PT,
        ),
        // Registered by hand, or RFC 4733 packets are not negotiated (docs/architecture.md).
        codec(
            MIME_TYPE_TELEPHONE_EVENT,
            8000,
            0,
            "0-16",
            TELEPHONE_EVENT_PT,
        ),
    ] {
        engine
            .register_codec(parameters, RtpCodecKind::Audio)
            .map_err(stack_error)?;
    }
    Ok(engine)
}

/// What every peer connection of a runtime shares: one DTLS certificate (its fingerprint goes in
/// every SDP; generating one per call would cost a key generation each).
#[derive(Clone)]
pub struct PeerFactory {
    certificate: Arc<RTCCertificate>,
    /// Legs offer relayed candidates only.
    relay_only: bool,
}

impl PeerFactory {
    pub fn new(relay_only: bool) -> Result<Self, TransportError> {
        let provider = rtc::crypto::default_provider().map_err(stack_error)?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            Default::default(),
        )
        .map_err(stack_error)?;
        Ok(Self {
            certificate: Arc::new(certificate),
            relay_only,
        })
    }

    /// A connection whose ICE username fragment is `ufrag`, sending our audio as `ssrc`.
    pub fn build(
        &self,
        ufrag: &str,
        password: &str,
        ssrc: u32,
        now: Instant,
    ) -> Result<Peer, TransportError> {
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), None)
            // A far end's check often arrives before its trickled candidate, which makes the
            // pair peer-reflexive; by default such a pair is not chosen for a second.
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            // A relayed pair is chosen only after two seconds, in case a direct one works; with
            // nothing but relayed candidates there is nothing to wait for.
            .with_relay_acceptance_min_wait(self.relay_only.then_some(Duration::ZERO))
            .with_ice_credentials(ufrag.to_owned(), password.to_owned())
            .build();
        let configuration = RTCConfigurationBuilder::new()
            .with_certificates(vec![(*self.certificate).clone()])
            .build();
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media_engine()?)
            .with_setting_engine(settings)
            .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
            .build(now)
            .map_err(stack_error)?;
        // No codec on the track: every negotiated payload type (audio and telephone-event) may
        // then be sent on it.
        let track = MediaStreamTrack::new(
            "callbot".into(),
            format!("audio-{ssrc:08x}"),
            "audio".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec::default(),
                ..Default::default()
            }],
        );
        Ok(Peer {
            pc,
            track: Some(track),
            sender: None,
            ice_connected: false,
            early: VecDeque::new(),
            mid: None,
        })
    }
}

/// A candidate of ours: a socket's address, the address a STUN server saw it come from, or a
/// TURN server's relayed address for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalCandidate {
    Host(SocketAddr),
    Reflexive {
        address: SocketAddr,
        /// The host address behind it.
        base: SocketAddr,
        /// The STUN server that told us.
        url: String,
    },
    /// A TURN server's address that relays to and from the socket `base`.
    Relayed {
        address: SocketAddr,
        base: SocketAddr,
        /// The TURN server.
        url: String,
    },
}

/// Something a connection reports.
#[derive(Debug)]
pub enum PeerEvent {
    LocalCandidate(IceCandidate),
    State(TransportState),
}

/// One audio peer connection: offer/answer with rollback, trickle ICE, RTP both ways.
pub struct Peer {
    pc: RTCPeerConnection,
    /// Our track until it is attached (by the first offer or answer).
    track: Option<MediaStreamTrack>,
    sender: Option<RTCRtpSenderId>,
    ice_connected: bool,
    /// Datagrams that came before ICE was connected.
    early: VecDeque<TaggedBytesMut>,
    /// The first `a=mid:` of our description, which our candidates name.
    mid: Option<String>,
}

impl Peer {
    /// Creates our offer and makes it the local description.
    pub fn create_offer(&mut self, now: Instant) -> Result<String, TransportError> {
        if let Some(track) = self.track.take() {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                streams: vec![],
                send_encodings: vec![],
            };
            self.pc
                .add_transceiver_from_track(track, Some(init))
                .map_err(stack_error)?;
            self.sender = self.pc.get_senders().next();
        }
        let offer = self.pc.create_offer(None).map_err(stack_error)?;
        self.set_local(offer, now)
    }

    /// Applies a remote offer and returns our answer (also made the local description).
    pub fn accept_offer(&mut self, offer: &str, now: Instant) -> Result<String, TransportError> {
        let offer = sdp::without_wideband_telephone_events(offer);
        let description = RTCSessionDescription::offer(offer).map_err(stack_error)?;
        self.pc
            .set_remote_description(now, description)
            .map_err(stack_error)?;
        if let Some(track) = self.track.take() {
            self.sender = Some(self.pc.add_track(track).map_err(stack_error)?);
        }
        let answer = self.pc.create_answer(None).map_err(stack_error)?;
        self.set_local(answer, now)
    }

    pub fn apply_answer(&mut self, answer: &str, now: Instant) -> Result<(), TransportError> {
        let answer = sdp::answer_with_setup_fixed(answer);
        let description = RTCSessionDescription::answer(answer).map_err(stack_error)?;
        self.pc
            .set_remote_description(now, description)
            .map_err(stack_error)
    }

    /// Withdraws our pending offer, so a remote offer can be answered instead.
    pub fn rollback(&mut self, now: Instant) -> Result<(), TransportError> {
        let rollback = RTCSessionDescription::rollback(None).map_err(stack_error)?;
        self.pc
            .set_local_description(now, rollback)
            .map_err(stack_error)
    }

    fn set_local(
        &mut self,
        description: RTCSessionDescription,
        now: Instant,
    ) -> Result<String, TransportError> {
        let text = description.sdp.clone();
        self.mid = sdp::first_mid(&text);
        self.pc
            .set_local_description(now, description)
            .map_err(stack_error)?;
        Ok(text)
    }

    /// Offers a candidate of ours (trickled through a `LocalCandidate` event).
    pub fn add_local_candidate(
        &mut self,
        candidate: &LocalCandidate,
    ) -> Result<(), TransportError> {
        let config = |address: SocketAddr| CandidateConfig {
            network: "udp".to_owned(),
            address: address.ip().to_string(),
            port: address.port(),
            component: 1,
            ..Default::default()
        };
        let (candidate, url) = match candidate {
            LocalCandidate::Host(address) => {
                let host = CandidateHostConfig {
                    base_config: config(*address),
                    ..Default::default()
                };
                (host.new_candidate_host(), None)
            }
            LocalCandidate::Reflexive { address, base, url } => {
                let reflexive = CandidateServerReflexiveConfig {
                    base_config: config(*address),
                    rel_addr: base.ip().to_string(),
                    rel_port: base.port(),
                    url: Some(url.clone()),
                };
                (
                    reflexive.new_candidate_server_reflexive(),
                    Some(url.clone()),
                )
            }
            LocalCandidate::Relayed { address, base, url } => {
                let relayed = CandidateRelayConfig {
                    base_config: config(*address),
                    rel_addr: base.ip().to_string(),
                    rel_port: base.port(),
                    url: Some(url.clone()),
                };
                (relayed.new_candidate_relay(), Some(url.clone()))
            }
        };
        let candidate = candidate.map_err(stack_error)?;
        let mut init = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(stack_error)?;
        init.url = url;
        self.pc.add_local_candidate(init).map_err(stack_error)
    }

    /// Adds one `candidate:` line from the far end; only valid once a remote description is set.
    pub fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), TransportError> {
        let init = RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            sdp_mid: None,
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        self.pc.add_remote_candidate(init).map_err(stack_error)
    }

    /// The codecs both sides settled on, once the offer/answer exchange is complete.
    pub fn negotiated(&mut self) -> Result<Negotiated, TransportError> {
        let sender = self.sender.ok_or(TransportError::NoCommonCodec)?;
        let Some(mut sender) = self.pc.rtp_sender(sender) else {
            return Err(TransportError::NoCommonCodec);
        };
        let codecs = &sender.get_parameters().rtp_parameters.codecs;
        let audio = codecs.iter().find_map(|c| {
            let name = c.rtp_codec.mime_type.strip_prefix("audio/")?;
            Codec::from_name(name).map(|codec| (codec, c.payload_type))
        });
        let telephone_event = codecs
            .iter()
            .find(|c| {
                c.rtp_codec
                    .mime_type
                    .eq_ignore_ascii_case(MIME_TYPE_TELEPHONE_EVENT)
                    && c.rtp_codec.clock_rate == 8000
            })
            .map(|c| c.payload_type);
        let (codec, payload_type) = audio.ok_or(TransportError::NoCommonCodec)?;
        Ok(Negotiated {
            codec,
            payload_type,
            telephone_event,
        })
    }

    /// Feeds a datagram from `from` that arrived on `local` at `at`.
    ///
    /// Anything but STUN that arrives before ICE is connected would be dropped by the stack (the
    /// far end's DTLS hello can beat our last connectivity check), and the far end would only
    /// send it again after its one-second retransmission timer. So it is kept and fed again once
    /// ICE is up.
    pub fn receive(&mut self, local: SocketAddr, from: SocketAddr, at: Instant, data: BytesMut) {
        let message = TaggedBytesMut {
            now: at,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: data,
        };
        let is_stun = message.message.first().is_some_and(|&b| b < 4);
        if !self.ice_connected && !is_stun {
            if self.early.len() < MAX_EARLY_DATAGRAMS {
                self.early.push_back(message);
            }
            return;
        }
        if let Err(e) = self.pc.handle_read(message) {
            tracing::trace!("datagram refused: {e}");
        }
    }

    /// Hands an RTP packet to the stack.
    pub fn send_rtp(&mut self, packet: RtpPacket, now: Instant) -> bool {
        let packet = Packet {
            header: Header {
                version: 2,
                marker: packet.marker,
                payload_type: packet.payload_type,
                sequence_number: packet.sequence,
                timestamp: packet.timestamp,
                ssrc: packet.ssrc,
                ..Default::default()
            },
            payload: packet.payload,
        };
        let message = TaggedRTCMessage {
            now,
            // Only the sender looks the track up; the pipeline goes by SSRC.
            message: RTCMessage::RtpPacket(String::new(), packet),
        };
        self.pc.handle_write(message).is_ok()
    }

    /// The next datagram to send: (from, to, bytes).
    pub fn poll_datagram(&mut self) -> Option<(SocketAddr, SocketAddr, BytesMut)> {
        self.pc
            .poll_write()
            .map(|m| (m.transport.local_addr, m.transport.peer_addr, m.message))
    }

    /// The next thing to tell the leg's owner. Once ICE connects, feeds the kept early datagrams
    /// and lets the DTLS client's first flight out (the stack queues it on connecting but only
    /// sends it on a timeout, up to a retransmission interval later).
    pub fn poll_event(&mut self, now: Instant) -> Option<PeerEvent> {
        loop {
            let event = self.pc.poll_event()?;
            match event {
                RTCPeerConnectionEvent::OnIceCandidateEvent(event) => {
                    let Ok(init) = event.candidate.to_json() else {
                        continue;
                    };
                    return Some(PeerEvent::LocalCandidate(IceCandidate {
                        candidate: init.candidate,
                        sdp_mid: self.mid.clone(),
                        sdp_mline_index: Some(0),
                        username_fragment: None,
                    }));
                }
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed,
                ) if !self.ice_connected => {
                    self.ice_connected = true;
                    for message in std::mem::take(&mut self.early) {
                        if let Err(e) = self.pc.handle_read(message) {
                            tracing::trace!("early datagram refused: {e}");
                        }
                    }
                    self.handle_timeout(now);
                }
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    let state = match state {
                        RTCPeerConnectionState::Connected => TransportState::Connected,
                        RTCPeerConnectionState::Disconnected => TransportState::Disconnected,
                        RTCPeerConnectionState::Failed => TransportState::Failed,
                        RTCPeerConnectionState::Closed => TransportState::Closed,
                        _ => TransportState::Connecting,
                    };
                    return Some(PeerEvent::State(state));
                }
                _ => {}
            }
        }
    }

    /// The next RTP packet that arrived, with the instant it arrived.
    pub fn poll_rtp(&mut self) -> Option<(RtpPacket, Instant)> {
        loop {
            let message = self.pc.poll_read()?;
            if let RTCMessage::RtpPacket(_, packet) = message.message {
                let header = packet.header;
                return Some((
                    RtpPacket {
                        payload_type: header.payload_type,
                        sequence: header.sequence_number,
                        timestamp: header.timestamp,
                        marker: header.marker,
                        ssrc: header.ssrc,
                        payload: packet.payload,
                    },
                    message.now,
                ));
            }
        }
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::trace!("timeout: {e}");
        }
    }

    /// Shuts the connection (its DTLS close_notify is then among the datagrams to send).
    pub fn close(&mut self) {
        let _ = self.pc.close();
    }

    /// Our ICE username fragment as the current local description states it (the stack makes a
    /// new one when the far end restarts ICE).
    pub fn local_ufrag(&self) -> Option<String> {
        let description = self.pc.local_description()?;
        description
            .sdp
            .lines()
            .find_map(|line| line.trim_end().strip_prefix("a=ice-ufrag:"))
            .map(str::to_owned)
    }
}
