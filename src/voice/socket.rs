//! Opening the WebSocket to a voice agent: `wss://` through rustls with the bot's TLS settings,
//! `ws://` only to this machine unless the config allows it, with the configured headers.

use std::net::IpAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::{Host, Url};

use super::{StreamError, StreamSettings};

/// The largest message we take from an agent: about 24 s of μ-law in base64, more than the
/// playout buffer holds.
const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// How long connecting (TCP, TLS, upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The open socket to an agent.
pub type AgentSocket = WebSocketStream<Box<dyn Io>>;

/// Checks a stream URL against the policy: `wss://` anywhere, `ws://` to loopback (or
/// anywhere with `allow_ws`), no credentials in the URL (they would travel in the clear of
/// logs and history; headers carry them).
pub fn check_url(text: &str, allow_ws: bool) -> Result<Url, StreamError> {
    let url = Url::parse(text).map_err(|e| StreamError::Url(format!("{e}")))?;
    match url.scheme() {
        "wss" => {}
        "ws" if allow_ws || is_loopback(&url) => {}
        "ws" => return Err(StreamError::PlainRemote(shown(&url))),
        other => {
            return Err(StreamError::Url(format!(
                "{other}:// is not a WebSocket URL (use wss:// or ws://)"
            )));
        }
    }
    if url.host().is_none() {
        return Err(StreamError::Url("the URL has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(StreamError::Url(
            "credentials in the URL are refused: put them in the bot's stream.headers".into(),
        ));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The URL as logs may show it: no query or fragment, which often carry tokens.
pub fn shown(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// Connects, does TLS for `wss://`, and upgrades with the configured headers.
pub async fn connect(url: &Url, settings: &StreamSettings) -> Result<AgentSocket, StreamError> {
    tokio::time::timeout(CONNECT_TIMEOUT, open(url, settings))
        .await
        .map_err(|_| StreamError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
}

async fn open(url: &Url, settings: &StreamSettings) -> Result<AgentSocket, StreamError> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| StreamError::Connect(format!("TCP to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if url.scheme() == "wss" {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone())
                .map_err(|e| StreamError::Connect(format!("server name {host}: {e}")))?,
        };
        let tls = TlsConnector::from(settings.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| StreamError::Connect(format!("TLS: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| StreamError::Url(e.to_string()))?;
    for (name, value) in &settings.headers {
        let value = HeaderValue::from_str(value.expose())
            .map_err(|_| StreamError::Connect(format!("header {name} is not header-safe")))?;
        request.headers_mut().insert(name.clone(), value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(StreamError::Refused(response.status()))
        }
        Err(e) => Err(StreamError::Connect(format!("WebSocket upgrade: {e}"))),
    }
}

/// Says what an HTTP refusal means.
pub fn refusal(status: StatusCode) -> String {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            format!("the agent refused the stream ({status}): check the bot's stream.headers")
        }
        other => format!("the agent refused the stream ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_policy() {
        assert!(check_url("wss://agent.example.com/stream?token=x", false).is_ok());
        assert!(check_url("ws://127.0.0.1:9000/stream", false).is_ok());
        assert!(check_url("ws://[::1]:9000/", false).is_ok());
        assert!(check_url("ws://localhost:9000/", false).is_ok());
        assert!(matches!(
            check_url("ws://agent.example.com/", false),
            Err(StreamError::PlainRemote(_))
        ));
        assert!(check_url("ws://agent.example.com/", true).is_ok());
        for bad in [
            "https://agent.example.com/",
            "agent.example.com",
            "wss://user:pw@agent.example.com/",
            "",
        ] {
            assert!(
                matches!(check_url(bad, true), Err(StreamError::Url(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn logs_never_show_the_query() {
        let url = check_url("wss://agent.example.com:8443/s?token=secret#x", false).unwrap();
        assert_eq!(shown(&url), "wss://agent.example.com:8443/s");
    }
}
