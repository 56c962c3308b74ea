//! Which web pages may use the emulator from a browser (CORS and the websocket's `Origin`). A
//! page is trusted when it is the emulator's own (its origin is the host the request came to),
//! when it is served from this machine (a loopback origin: a developer's page), or when it is
//! named with `--allow-origin`. Any other page gets nothing, whatever cookies the browser
//! would send along: no page on another site may drive someone's extension.

use std::net::IpAddr;

use url::Url;

/// The origins allowed besides the emulator's own and loopback ones.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    extra: Vec<String>,
}

/// An origin as browsers send it (`scheme://host[:port]`), or `None` when it is no origin
/// (`null`, a path, garbage).
pub fn normalize(origin: &str) -> Option<String> {
    let url = Url::parse(origin).ok()?;
    let serialized = url.origin().ascii_serialization();
    (serialized != "null").then_some(serialized)
}

fn host_of(origin: &str) -> Option<String> {
    Url::parse(origin).ok()?.host_str().map(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `Host` header (without the port).
fn host_header_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.to_ascii_lowercase()
}

impl OriginPolicy {
    /// Allows `extra` origins (`--allow-origin`) too; each must be an origin.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let extra = extra
            .iter()
            .map(|origin| {
                normalize(origin).ok_or_else(|| {
                    format!("--allow-origin {origin:?} is not an origin (scheme://host[:port])")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { extra })
    }

    /// Whether a request that came to `host` (its `Host` header) may come from `origin`.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(origin) = normalize(origin) else {
            return false;
        };
        let own = host.is_some_and(|host| origin == format!("https://{}", host.trim()));
        own || host_of(&origin).is_some_and(|h| is_loopback(&h)) || self.extra.contains(&origin)
    }

    /// Whether a page at `origin` is another site than the emulator at `host`: its cookie
    /// must then be `SameSite=None` to reach us from there.
    pub fn cross_site(origin: &str, host: Option<&str>) -> bool {
        match (host_of(origin), host) {
            (Some(page), Some(host)) => page != host_header_name(host),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_loopback_and_named_origins_are_allowed() {
        let policy = OriginPolicy::new(&["https://app.example.com".into()]).unwrap();
        let host = Some("pbx.lan:8443");
        assert!(policy.allows("https://pbx.lan:8443", host), "own");
        assert!(policy.allows("https://127.0.0.1:8443", host), "loopback");
        assert!(policy.allows("http://localhost:3000", host), "loopback");
        assert!(policy.allows("https://[::1]:9", host), "loopback");
        assert!(policy.allows("https://app.example.com", host), "named");
        for foreign in [
            "https://evil.example",
            "https://pbx.lan:9999",
            "http://pbx.lan:8443",
            "null",
            "https://app.example.com.evil.example",
            "",
        ] {
            assert!(!policy.allows(foreign, host), "{foreign}");
        }
        assert!(OriginPolicy::new(&["not an origin".into()]).is_err());
    }

    #[test]
    fn cross_site_compares_hosts_without_ports() {
        assert!(!OriginPolicy::cross_site(
            "https://127.0.0.1:3000",
            Some("127.0.0.1:8443")
        ));
        assert!(OriginPolicy::cross_site(
            "https://app.example.com",
            Some("127.0.0.1:8443")
        ));
        assert!(!OriginPolicy::cross_site(
            "https://[::1]:3000",
            Some("[::1]:8443")
        ));
    }
}
