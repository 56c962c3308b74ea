//! Getting a session cookie before the socket opens (docs/protocol.md §1): third-party login with
//! admin credentials (preferred), or the legacy password login.

use crate::protocol::password_digest;
use reqwest::header::{HeaderMap, SERVER, SET_COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use thiserror::Error;
use url::Url;

use super::fault::Fault;
use crate::config::{PbxConfig, Secret};

/// How a bot proves who it is.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Mint a one-time token with admin credentials, then trade it for a session (§1).
    ThirdParty { user: String, password: Secret },
    /// The extension's own password (legacy PBXs).
    Password(Secret),
}

impl Credentials {
    /// How an extension logs in under `pbx`: admin credentials when the config has them (any
    /// extension, token login), else the extension's own `password`; `None` when neither.
    pub fn from_config(pbx: &PbxConfig, password: Option<&Secret>) -> Option<Self> {
        match (&pbx.admin, password) {
            (Some(admin), _) => Some(Credentials::ThirdParty {
                user: admin.user.clone(),
                password: admin.password.clone(),
            }),
            (None, Some(password)) => Some(Credentials::Password(password.clone())),
            (None, None) => None,
        }
    }
}

/// A logged-in session: the cookie value for the socket, and the PBX's `Server` header.
#[derive(Debug)]
pub struct Session {
    pub id: Secret,
    pub server: Option<String>,
}

#[derive(Debug, Error)]
pub enum LoginError {
    /// The PBX said no in a way only a changed setting can fix.
    #[error("login refused: {0}")]
    Fault(Fault),
    /// The PBX said no for another reason.
    #[error("login refused: {0}")]
    Denied(String),
    /// The PBX could not be reached or answered nonsense.
    #[error("login failed: {0}")]
    Failed(String),
}

const SESSION_PATH: &str = "rest/system/session";

/// Logs `extension` of `domain` in at the PBX at `base`.
pub async fn login(
    http: &Client,
    base: &Url,
    domain: &str,
    extension: &str,
    credentials: &Credentials,
) -> Result<Session, LoginError> {
    let url = base
        .join(SESSION_PATH)
        .map_err(|e| LoginError::Failed(format!("bad PBX URL: {e}")))?;
    match credentials {
        Credentials::ThirdParty { user, password } => {
            third_party(http, &url, domain, extension, user, password).await
        }
        Credentials::Password(password) => password_login(http, &url, extension, password).await,
    }
}

async fn third_party(
    http: &Client,
    url: &Url,
    domain: &str,
    extension: &str,
    user: &str,
    password: &Secret,
) -> Result<Session, LoginError> {
    let mint = http
        .post(url.clone())
        .basic_auth(user, Some(password.expose()))
        .json(&json!({ "name": "3rd", "username": extension, "domain": domain }));
    let (status, _, body) = send(mint).await?;
    if status == StatusCode::NOT_FOUND {
        return Err(LoginError::Fault(Fault::UnknownExtension {
            extension: extension.to_owned(),
            domain: domain.to_owned(),
        }));
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(LoginError::Fault(Fault::AdminRefused {
            user: user.to_owned(),
        }));
    }
    if !status.is_success() {
        return Err(LoginError::Failed(format!(
            "token request answered {status}"
        )));
    }
    // Vodia answers a wrong admin password with 200 and `false`.
    let token = session_value(&body).ok_or_else(|| {
        LoginError::Fault(Fault::AdminRefused {
            user: user.to_owned(),
        })
    })?;
    let activate = http
        .post(url.clone())
        .json(&json!({ "name": "session", "value": token }));
    let (status, headers, body) = send(activate).await?;
    if !status.is_success() {
        return Err(LoginError::Denied(format!(
            "token activation answered {status}"
        )));
    }
    let id = session_cookie(&headers)
        .or_else(|| session_value(&body))
        .ok_or_else(|| LoginError::Denied("token activation gave no session".into()))?;
    Ok(Session {
        id: Secret::new(id),
        server: server_header(&headers),
    })
}

async fn password_login(
    http: &Client,
    url: &Url,
    extension: &str,
    password: &Secret,
) -> Result<Session, LoginError> {
    let digest = password_digest(password.expose());
    let request = http
        .request(Method::PUT, url.clone())
        .json(&json!({ "name": "auth", "value": format!("{extension} {digest}") }));
    let (status, headers, body) = send(request).await?;
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(LoginError::Fault(Fault::PasswordRefused {
            extension: extension.to_owned(),
        }));
    }
    if !status.is_success() {
        return Err(LoginError::Denied(format!(
            "password login answered {status}"
        )));
    }
    let id = session_value(&body)
        .or_else(|| session_cookie(&headers))
        .ok_or_else(|| {
            LoginError::Fault(Fault::PasswordRefused {
                extension: extension.to_owned(),
            })
        })?;
    Ok(Session {
        id: Secret::new(id),
        server: server_header(&headers),
    })
}

async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, String), LoginError> {
    let response = request
        .send()
        .await
        .map_err(|e| match Fault::of_tls_error(&e) {
            Some(fault) => LoginError::Fault(fault),
            None => LoginError::Failed(describe(&e)),
        })?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| LoginError::Failed(describe(&e)))?;
    Ok((status, headers, body))
}

/// reqwest's top-level message hides the cause ("error sending request"); the chain names it.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A token or session id from a reply body: plain text, a JSON string, or an object with
/// `session`, `value` or `token`. Empty bodies and `false` mean "no".
fn session_value(body: &str) -> Option<String> {
    let body = body.trim();
    let value = match serde_json::from_str::<Value>(body) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(map)) => ["session", "value", "token"]
            .iter()
            .find_map(|key| map.get(*key).and_then(Value::as_str))?
            .to_owned(),
        Ok(_) => return None,
        Err(_) => body.to_owned(),
    };
    let value = value.trim();
    (!value.is_empty() && value != "false").then(|| value.to_owned())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|cookie| {
            let first = cookie.split(';').next()?.trim();
            let value = first.strip_prefix("session=")?;
            (!value.is_empty()).then(|| value.to_owned())
        })
}

fn server_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SERVER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_values_in_every_documented_shape() {
        assert_eq!(session_value("abc"), Some("abc".into()));
        assert_eq!(session_value("\"abc\""), Some("abc".into()));
        assert_eq!(session_value(r#"{"session":"abc"}"#), Some("abc".into()));
        assert_eq!(session_value(r#"{"value":"abc"}"#), Some("abc".into()));
        assert_eq!(session_value(r#"{"token":"abc"}"#), Some("abc".into()));
        assert_eq!(session_value("false"), None);
        assert_eq!(session_value("\"\""), None);
        assert_eq!(session_value(""), None);
        assert_eq!(session_value(r#"{"other":1}"#), None);
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "lang=en; Path=/".parse().unwrap());
        headers.append(
            SET_COOKIE,
            "session=s3cr3t; Path=/; Secure".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some("s3cr3t".into()));
    }
}
