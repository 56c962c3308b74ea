//! [`Transport`] on the async webrtc-rs 0.21 crate (docs/architecture.md "Media").

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp::{Header, Packet};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    configure_rtcp_reports,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use super::transport::{Transport, TransportEvents};
use crate::media::codec::Codec;
use crate::media::player::Negotiated;
use crate::media::rtp::RtpPacket;
use crate::media::sdp;
use crate::media::transport::{NetworkSettings, TransportError, TransportState};
use crate::protocol::IceCandidate;

/// Payload types we offer for the dynamic codecs (answers take the offer's numbers).
const TELEPHONE_EVENT_PT: u8 = 101;
const OPUS_PT: u8 = 111;

/// The ICE check interval: webrtc-rs defaults to 200 ms, which alone makes a local call take
/// ~400 ms to connect; at 20 ms a loopback leg connects in ~50 ms.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Checks sent on a candidate pair before it counts as failed: 2 s of checks at
/// [`ICE_CHECK_INTERVAL`], longer than webrtc-rs's default (7 × 200 ms), so a short interval
/// does not give up on a slow long-distance path.
const ICE_MAX_BINDING_REQUESTS: u16 = 100;

/// How long the controlling agent waits before it may nominate a pair whose remote candidate is
/// peer-reflexive. With trickle ICE the peer's first check often arrives before its candidate
/// does, so the pair that works is learnt as peer-reflexive; webrtc-rs then holds the
/// nomination for its default 1 s (to let "better" candidates turn up), which made ~3 % of
/// loopback calls take 1.05 s to connect instead of ~60 ms. A peer-reflexive candidate is the
/// address the peer's check really came from, so it is nominated like a host candidate.
const PRFLX_ACCEPTANCE_MIN_WAIT: Duration = Duration::ZERO;

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
        // Registered by hand: webrtc-rs drops RFC 4733 silently otherwise
        // (docs/architecture.md "Media").
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

/// Forwards the stack's callbacks. They run on the connection's driver task, so each one only
/// hands the event on.
struct Handler {
    events: Arc<dyn TransportEvents>,
    mid: Arc<Mutex<Option<String>>>,
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let sdp_mid = self.mid.lock().ok().and_then(|m| m.clone());
            self.events.local_candidate(IceCandidate {
                candidate: init.candidate,
                sdp_mid,
                sdp_mline_index: Some(0),
                username_fragment: None,
            });
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = match state {
            RTCPeerConnectionState::Connected => TransportState::Connected,
            RTCPeerConnectionState::Disconnected => TransportState::Disconnected,
            RTCPeerConnectionState::Failed => TransportState::Failed,
            RTCPeerConnectionState::Closed => TransportState::Closed,
            _ => TransportState::Connecting,
        };
        self.events.state(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Reading must not happen on the driver task: it would stall ICE and DTLS.
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    events.rtp(RtpPacket {
                        payload_type: packet.header.payload_type,
                        sequence: packet.header.sequence_number,
                        timestamp: packet.header.timestamp,
                        marker: packet.header.marker,
                        ssrc: packet.header.ssrc,
                        payload: packet.payload,
                    });
                }
            }
        });
    }
}

/// One webrtc-rs peer connection with one audio track each way.
pub struct WebRtcTransport {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    track_attached: tokio::sync::Mutex<bool>,
    mid: Arc<Mutex<Option<String>>>,
}

impl WebRtcTransport {
    /// Builds the connection; must run inside the tokio runtime.
    pub async fn new(
        settings: &NetworkSettings,
        ssrc: u32,
        events: Arc<dyn TransportEvents>,
    ) -> Result<Self, TransportError> {
        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            .with_prflx_acceptance_min_wait(Some(PRFLX_ACCEPTANCE_MIN_WAIT))
            .build();
        let ice_servers = settings
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone(),
                // The one place a TURN credential leaves its `Secret`.
                credential: server.credential.expose().to_owned(),
            })
            .collect();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .build();
        // Host candidates are the sockets we bind: a wildcard yields every non-loopback
        // interface, loopback has to be bound by address.
        let addresses: Vec<String> = if settings.addresses.is_empty() {
            vec!["0.0.0.0:0".into(), "127.0.0.1:0".into()]
        } else {
            settings
                .addresses
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, 0).to_string())
                .collect()
        };
        let mid = Arc::new(Mutex::new(None));
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media_engine()?)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
            .with_handler(Arc::new(Handler {
                events,
                mid: mid.clone(),
            }))
            .with_udp_addrs(addresses)
            .build()
            .await
            .map_err(stack_error)?;
        // No codec on the track: every negotiated payload type (audio and telephone-event)
        // may then be sent on it.
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
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
        )));
        Ok(Self {
            pc: Arc::new(pc),
            track,
            ssrc,
            track_attached: tokio::sync::Mutex::new(false),
            mid,
        })
    }

    async fn set_local(
        &self,
        description: RTCSessionDescription,
    ) -> Result<String, TransportError> {
        let text = description.sdp.clone();
        *crate::lock::lock(&self.mid) = sdp::first_mid(&text);
        self.pc
            .set_local_description(description)
            .await
            .map_err(stack_error)?;
        Ok(text)
    }
}

#[async_trait]
impl Transport for WebRtcTransport {
    async fn create_offer(&self) -> Result<String, TransportError> {
        let mut attached = self.track_attached.lock().await;
        if !*attached {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                streams: vec![],
                send_encodings: vec![],
            };
            self.pc
                .add_transceiver_from_track(self.track.clone(), Some(init))
                .await
                .map_err(stack_error)?;
            *attached = true;
        }
        let offer = self.pc.create_offer(None).await.map_err(stack_error)?;
        self.set_local(offer).await
    }

    async fn accept_offer(&self, offer: &str) -> Result<String, TransportError> {
        let offer = sdp::without_wideband_telephone_events(offer);
        let description = RTCSessionDescription::offer(offer).map_err(stack_error)?;
        self.pc
            .set_remote_description(description)
            .await
            .map_err(stack_error)?;
        let mut attached = self.track_attached.lock().await;
        if !*attached {
            self.pc
                .add_track(self.track.clone())
                .await
                .map_err(stack_error)?;
            *attached = true;
        }
        let answer = self.pc.create_answer(None).await.map_err(stack_error)?;
        self.set_local(answer).await
    }

    async fn apply_answer(&self, answer: &str) -> Result<(), TransportError> {
        let answer = sdp::answer_with_setup_fixed(answer);
        let description = RTCSessionDescription::answer(answer).map_err(stack_error)?;
        self.pc
            .set_remote_description(description)
            .await
            .map_err(stack_error)
    }

    async fn rollback(&self) -> Result<(), TransportError> {
        let rollback = RTCSessionDescription::rollback(None).map_err(stack_error)?;
        self.pc
            .set_local_description(rollback)
            .await
            .map_err(stack_error)
    }

    async fn add_remote_candidate(&self, candidate: &str) -> Result<(), TransportError> {
        let init = RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            sdp_mid: None,
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        self.pc.add_ice_candidate(init).await.map_err(stack_error)
    }

    async fn negotiated(&self) -> Result<Negotiated, TransportError> {
        for sender in self.pc.get_senders().await {
            let Ok(parameters) = sender.get_parameters().await else {
                continue;
            };
            let codecs = &parameters.rtp_parameters.codecs;
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
            if let Some((codec, payload_type)) = audio {
                return Ok(Negotiated {
                    codec,
                    payload_type,
                    telephone_event,
                });
            }
        }
        Err(TransportError::NoCommonCodec)
    }

    fn try_send(&self, packet: RtpPacket) -> bool {
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
        // The write only takes an uncontended lock and queues to the connection's driver; if it
        // cannot finish at once the packet is stale by the time it could, so drop it.
        let write = pin!(self.track.write_rtp(packet));
        matches!(
            write.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Ok(()))
        )
    }

    async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebRtcTransport(ssrc={:08x})", self.ssrc)
    }
}
