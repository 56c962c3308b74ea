//! Opening the PBX websocket (docs/protocol.md §2): `wss://host/websocket?domain=&user=` with the
//! session cookie, an `Origin` of the PBX itself, and SNI set to the host.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

use crate::config::Secret;

/// The open socket to the PBX.
pub type PbxSocket = WebSocketStream<TlsStream<TcpStream>>;

/// The largest frame we accept from the PBX; a `domain-state` of a big tenant stays far below.
const MAX_FRAME_BYTES: usize = 4 << 20;

#[derive(Debug, Error)]
pub enum SocketError {
    /// The PBX refused the session (401/403 on the upgrade).
    #[error("the PBX refused the websocket session ({0})")]
    Refused(StatusCode),
    #[error("cannot open the websocket: {0}")]
    Failed(String),
    /// A failure only a changed setting can fix (the certificate).
    #[error("cannot open the websocket: {0}")]
    Fault(super::Fault),
}

/// The websocket URL for `base` (an `https://` PBX URL).
pub fn socket_url(base: &Url, domain: &str, extension: &str) -> Result<Url, SocketError> {
    let mut url = base
        .join("websocket")
        .map_err(|e| SocketError::Failed(format!("bad PBX URL: {e}")))?;
    url.set_scheme("wss")
        .map_err(|()| SocketError::Failed("cannot make a wss:// URL".into()))?;
    url.query_pairs_mut()
        .clear()
        .append_pair("domain", domain)
        .append_pair("user", extension);
    Ok(url)
}

/// Connects, does TLS with SNI, and upgrades to a websocket.
pub async fn open(
    base: &Url,
    domain: &str,
    extension: &str,
    session: &Secret,
    tls: Arc<ClientConfig>,
) -> Result<PbxSocket, SocketError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| SocketError::Failed(format!("{what}: {e}"));
    let url = socket_url(base, domain, extension)?;
    let host = url
        .host_str()
        .ok_or_else(|| SocketError::Failed("the PBX URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| failed(&format!("TCP to {host}:{port}"), &e))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.clone()).map_err(|e| failed("server name", &e))?;
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| match super::Fault::of_tls_error(&e) {
            Some(fault) => SocketError::Fault(fault),
            None => failed("TLS", &e),
        })?;

    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| failed("request", &e))?;
    let origin = base.origin().ascii_serialization();
    let headers = request.headers_mut();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("session={}", session.expose()))
            .map_err(|_| SocketError::Failed("the session id is not header-safe".into()))?,
    );
    if let Ok(origin) = HeaderValue::from_str(&origin) {
        headers.insert(header::ORIGIN, origin);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((socket, _response)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response))
            if matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) =>
        {
            Err(SocketError::Refused(response.status()))
        }
        Err(e) => Err(failed("websocket upgrade", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_url_has_domain_and_user() {
        let base = Url::parse("https://pbx.example.com:8443").unwrap();
        let url = socket_url(&base, "example.com", "500").unwrap();
        assert_eq!(
            url.as_str(),
            "wss://pbx.example.com:8443/websocket?domain=example.com&user=500"
        );
    }
}
