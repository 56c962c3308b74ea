//! Login state of the emulator (PROTOCOL.md §1): one-time tokens from third-party logins,
//! sessions that open sockets, and a brake on password guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token must be activated this soon after it was minted (§1).
const TOKEN_LIFETIME: Duration = Duration::from_secs(10);
/// Failed logins allowed per address within [`FAILURE_WINDOW`] before logins are refused.
const MAX_FAILURES: usize = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Who a session belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOwner {
    pub extension: String,
}

#[derive(Debug, Default)]
pub struct Sessions {
    tokens: HashMap<String, (String, Instant)>,
    sessions: HashMap<String, SessionOwner>,
    failures: HashMap<IpAddr, Vec<Instant>>,
}

fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Sessions {
    /// A token for `extension`, good for one activation within ten seconds.
    pub fn mint_token(&mut self, extension: &str, now: Instant) -> String {
        self.tokens
            .retain(|_, (_, minted)| now.duration_since(*minted) < TOKEN_LIFETIME);
        let token = random_id();
        self.tokens
            .insert(token.clone(), (extension.to_owned(), now));
        token
    }

    /// Trades a token for a new session id and the extension it is for; a token works once.
    pub fn activate(&mut self, token: &str, now: Instant) -> Option<(String, String)> {
        let (extension, minted) = self.tokens.remove(token)?;
        (now.duration_since(minted) < TOKEN_LIFETIME).then(|| (self.open(&extension), extension))
    }

    /// A new session for `extension` (password login).
    pub fn open(&mut self, extension: &str) -> String {
        let id = random_id();
        self.sessions.insert(
            id.clone(),
            SessionOwner {
                extension: extension.to_owned(),
            },
        );
        id
    }

    pub fn owner(&self, session: &str) -> Option<&SessionOwner> {
        self.sessions.get(session)
    }

    /// Whether `address` may try to log in now (too many recent failures say no).
    pub fn may_try(&mut self, address: IpAddr, now: Instant) -> bool {
        let recent = self.failures.entry(address).or_default();
        recent.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        recent.len() < MAX_FAILURES
    }

    pub fn failed(&mut self, address: IpAddr, now: Instant) {
        self.failures.entry(address).or_default().push(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tokens_work_once_and_expire() {
        let mut sessions = Sessions::default();
        let now = Instant::now();
        let token = sessions.mint_token("500", now);
        let (id, extension) = sessions.activate(&token, now).expect("fresh token");
        assert_eq!(sessions.owner(&id).unwrap().extension, "500");
        assert_eq!(extension, "500");
        assert_eq!(sessions.activate(&token, now), None, "used twice");
        let late = sessions.mint_token("500", now);
        assert_eq!(
            sessions.activate(&late, now + Duration::from_secs(11)),
            None
        );
    }

    #[test]
    fn failed_logins_are_braked_per_address() {
        let mut sessions = Sessions::default();
        let now = Instant::now();
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..MAX_FAILURES {
            assert!(sessions.may_try(address, now));
            sessions.failed(address, now);
        }
        assert!(!sessions.may_try(address, now));
        assert!(sessions.may_try(address, now + FAILURE_WINDOW));
    }
}
