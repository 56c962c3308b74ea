//! Helpers for tests that run bots or test clients against the PBX emulator on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use callbot::config::{DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, FrameSender, Link, LinkEvent, LinkSettings, tls};
use callbot::media::transport::NetworkSettings;
use callbot::pbx::{Accounts, CertificateSource, Guard, MediaMode, Pbx, PbxOptions};
use callbot::protocol::{CallId, CallInfo, ClientFrame, ConnectionState, Dialect, ServerFrame};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const ADMIN_PASSWORD: &str = "admin-secret-4711";
pub const WAIT: Duration = Duration::from_secs(15);

pub fn loopback() -> NetworkSettings {
    NetworkSettings {
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ice_servers: vec![],
        ..NetworkSettings::default()
    }
}

pub fn options(listen: SocketAddr, media: MediaMode, dialect: Dialect) -> PbxOptions {
    PbxOptions {
        listen,
        domain: "localhost".into(),
        dialect,
        media,
        accounts: Accounts::defaults(Secret::new(ADMIN_PASSWORD)),
        certificate: CertificateSource::SelfSigned {
            names: vec!["localhost".into(), "127.0.0.1".into()],
            out: None,
        },
        network: loopback(),
        ring_timeout: Duration::from_secs(60),
        offer_timeout: Duration::from_secs(3),
        chaos: None,
        guard: Guard {
            open_test_api: true,
            ..Guard::default()
        },
    }
}

/// An emulator on an OS-chosen loopback port.
pub async fn start_pbx(media: MediaMode, dialect: Dialect) -> Pbx {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Pbx::start(options(listen, media, dialect))
        .await
        .expect("emulator starts")
}

pub fn third_party(password: &str) -> Credentials {
    Credentials::ThirdParty {
        user: "admin".into(),
        password: Secret::new(password),
    }
}

pub fn settings(pbx: &Pbx, extension: &str, credentials: Credentials) -> LinkSettings {
    LinkSettings {
        bot: format!("test-{extension}"),
        base: pbx.url().clone(),
        domain: "localhost".into(),
        extension: extension.into(),
        credentials,
        tls: Arc::new(tls::client_config(&TlsSetting::Insecure).unwrap()),
        dialect: DialectSetting::Auto,
        useragent: "callbot-test".into(),
    }
}

/// A protocol client: a link whose frames the test sends and whose events it reads.
pub struct TestClient {
    pub link: Link,
    pub sender: FrameSender,
    pub events: mpsc::Receiver<LinkEvent>,
}

impl TestClient {
    pub fn connect(settings: LinkSettings) -> Self {
        let (link, events) = Link::spawn(settings);
        let sender = link.sender();
        Self {
            link,
            sender,
            events,
        }
    }

    /// Connects as `extension` with third-party login and waits for ACCESS_GRANTED.
    pub async fn ready(pbx: &Pbx, extension: &str) -> Self {
        let mut client = Self::connect(settings(pbx, extension, third_party(ADMIN_PASSWORD)));
        client.state(ConnectionState::AccessGranted).await;
        client
    }

    /// The next event `pick` accepts, skipping others.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&LinkEvent) -> Option<T>,
    ) -> T {
        timeout(WAIT, async {
            loop {
                let event = self.events.recv().await.expect("link events ended");
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    pub async fn state(&mut self, state: ConnectionState) -> Dialect {
        self.wait_for(state.as_str(), |e| match e {
            LinkEvent::Connection {
                state: got,
                dialect,
                ..
            } if *got == state => Some(*dialect),
            _ => None,
        })
        .await
    }

    /// The next call frame `pick` accepts.
    pub async fn frame<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> T {
        self.wait_for(what, |e| match e {
            LinkEvent::Frame(frame) => pick(frame),
            _ => None,
        })
        .await
    }

    /// The next `call-state` entry that shows call `id` in `state`.
    pub async fn call_in_state(&mut self, id: &str, state: &str) -> CallInfo {
        self.frame(state, |f| match f {
            ServerFrame::CallState(calls) => calls
                .iter()
                .find(|c| c.id == id && c.state.as_str() == state)
                .cloned(),
            _ => None,
        })
        .await
    }

    /// Calls `to` (`sdp-packet`) under `callid` with `offer`.
    pub async fn dial(&self, to: &str, callid: &CallId, offer: &str) {
        self.send(ClientFrame::SdpPacket {
            to: to.into(),
            callid: callid.clone(),
            offer: offer.into(),
        })
        .await;
    }

    /// Hangs up call `callid` as its caller (`sip-bye`).
    pub async fn hang_up(&self, callid: &CallId) {
        self.send(ClientFrame::SipBye {
            callid: Some(callid.clone()),
            caller: true,
        })
        .await;
    }

    pub async fn send(&self, frame: ClientFrame) {
        self.sender.send(frame).await;
    }
}

/// The payload of the next server frame of one variant on a [`TestClient`], e.g.
/// `next_frame!(callee, Bye)`: most tests wait for a variant, not for a condition on it.
#[allow(unused_macros)] // not every test crate waits for frames
macro_rules! next_frame {
    ($client:expr, $variant:ident) => {
        $client
            .frame(stringify!($variant), |frame| match frame {
                callbot::protocol::ServerFrame::$variant(inner) => Some(inner.clone()),
                _ => None,
            })
            .await
    };
}
#[allow(unused_imports)]
pub(crate) use next_frame;

/// `GET <pbx>/emulator/<what>` as JSON.
pub async fn emulator(pbx: &Pbx, what: &str) -> Value {
    super::emulator_json(pbx.url().as_str(), what).await
}

/// The events of `kind` in `/emulator/events`.
pub async fn events_of(pbx: &Pbx, kind: &str) -> Vec<Value> {
    emulator(pbx, "events")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// A raw websocket logged in as `extension` (third-party login), for sending arbitrary text.
pub async fn raw_socket(pbx: &Pbx, extension: &str) -> callbot::connection::PbxSocket {
    let s = settings(pbx, extension, third_party(ADMIN_PASSWORD));
    let http = super::insecure_http();
    let session = callbot::connection::login(&http, &s.base, &s.domain, extension, &s.credentials)
        .await
        .expect("login");
    callbot::connection::open_socket(&s.base, &s.domain, extension, &session.id, s.tls.clone())
        .await
        .expect("socket opens")
}

/// A phone (media-stack client) logged in as `extension`, recording into `recordings`.
pub async fn phone(
    pbx: &Pbx,
    extension: &str,
    media: &callbot::media::MediaRuntime,
    recordings: &std::path::Path,
) -> callbot::phone::Phone {
    callbot::phone::Phone::connect(
        settings(pbx, extension, third_party(ADMIN_PASSWORD)),
        media.clone(),
        recordings.to_owned(),
    )
    .await
    .expect("phone connects")
}

pub fn media_runtime() -> callbot::media::MediaRuntime {
    callbot::media::MediaRuntime::start(loopback()).expect("media runtime")
}
