//! Login state of the emulator (docs/protocol.md §1): one-time tokens from third-party logins,
//! sessions that open sockets (ending when idle, when old, or at logout, which closes their
//! sockets), and a brake on password guessing.
//!
//! The brake is per address *and* account, and looked at only for that pair: guessing at one
//! account from the bots' address does not keep the bots (another account, or another
//! address) out, and an account under attack from elsewhere still logs in from here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::switch::SocketId;

/// A token must be activated this soon after it was minted (§1).
const TOKEN_LIFETIME: Duration = Duration::from_secs(10);
/// Sessions kept at most; beyond, the one unused longest (without sockets) ends first.
const MAX_SESSIONS: usize = 10_000;
/// Failed logins of one account from one address before each further one waits.
const FREE_FAILURES: u32 = 5;
/// The first wait, doubled with every further failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Failures are forgotten after this long without another.
const FORGET_FAILURES: Duration = Duration::from_secs(900);
/// (address, account) pairs with failures kept at most.
const MAX_THROTTLED: usize = 10_000;
/// The part of an account name a throttle entry keeps.
const MAX_ACCOUNT_BYTES: usize = 64;

/// Who a session belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOwner {
    pub extension: String,
}

/// Why a socket is closed by its session, for the close frame.
pub type CloseReason = &'static str;

struct Session {
    owner: SessionOwner,
    created: Instant,
    last_used: Instant,
    /// Its open sockets, each with the way to close it.
    sockets: HashMap<SocketId, oneshot::Sender<CloseReason>>,
}

impl Session {
    fn expired(&self, now: Instant, idle: Duration, lifetime: Duration) -> bool {
        now.duration_since(self.created) >= lifetime
            || (self.sockets.is_empty() && now.duration_since(self.last_used) >= idle)
    }

    fn close(self, reason: CloseReason) {
        for (_, close) in self.sockets {
            let _ = close.send(reason);
        }
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when the pair waits after its latest failure: not at all for the first
    /// [`FREE_FAILURES`], then [`FIRST_BACKOFF`], doubled with each failure after.
    fn blocked_until(&self) -> Option<Instant> {
        let over = self.count.checked_sub(FREE_FAILURES + 1)?;
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << over.min(16))
            .min(MAX_BACKOFF);
        Some(self.last + wait)
    }
}

pub struct Sessions {
    tokens: HashMap<String, (String, Instant)>,
    sessions: HashMap<String, Session>,
    failures: HashMap<(IpAddr, String), Failures>,
    idle: Duration,
    lifetime: Duration,
}

fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn account_key(address: IpAddr, account: &str) -> (IpAddr, String) {
    let mut end = account.len().min(MAX_ACCOUNT_BYTES);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    (address, account[..end].to_owned())
}

impl Sessions {
    /// Sessions end after `idle` without a socket, and `lifetime` after login in any case.
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Self {
            tokens: HashMap::new(),
            sessions: HashMap::new(),
            failures: HashMap::new(),
            idle,
            lifetime,
        }
    }

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
        (now.duration_since(minted) < TOKEN_LIFETIME)
            .then(|| (self.open(&extension, now), extension))
    }

    /// A new session for `extension` (password login).
    pub fn open(&mut self, extension: &str, now: Instant) -> String {
        if self.sessions.len() >= MAX_SESSIONS {
            self.expire(now);
        }
        if self.sessions.len() >= MAX_SESSIONS {
            let unused = self
                .sessions
                .iter()
                .filter(|(_, s)| s.sockets.is_empty())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            if let Some(id) = unused {
                self.sessions.remove(&id);
            }
        }
        let id = random_id();
        self.sessions.insert(
            id.clone(),
            Session {
                owner: SessionOwner {
                    extension: extension.to_owned(),
                },
                created: now,
                last_used: now,
                sockets: HashMap::new(),
            },
        );
        id
    }

    /// Who `session` belongs to, while it lasts.
    pub fn owner(&self, session: &str, now: Instant) -> Option<&SessionOwner> {
        self.sessions
            .get(session)
            .filter(|s| !s.expired(now, self.idle, self.lifetime))
            .map(|s| &s.owner)
    }

    /// Socket `socket` of `session` opened; `close` closes it when the session ends.
    pub fn attach(
        &mut self,
        session: &str,
        socket: SocketId,
        close: oneshot::Sender<CloseReason>,
        now: Instant,
    ) {
        match self.sessions.get_mut(session) {
            Some(entry) => {
                entry.last_used = now;
                entry.sockets.insert(socket, close);
            }
            // It ended in between.
            None => {
                let _ = close.send("session ended");
            }
        }
    }

    /// Socket `socket` of `session` closed.
    pub fn detach(&mut self, session: &str, socket: SocketId, now: Instant) {
        if let Some(entry) = self.sessions.get_mut(session) {
            entry.last_used = now;
            entry.sockets.remove(&socket);
        }
    }

    /// Logout: the session ends and its sockets close. False if there was no such session.
    pub fn end(&mut self, session: &str) -> bool {
        match self.sessions.remove(session) {
            Some(entry) => {
                entry.close("logged out");
                true
            }
            None => false,
        }
    }

    /// Ends the sessions that are too old or idle too long, closing their sockets; forgets
    /// old login failures. Returns how many sessions ended.
    pub fn expire(&mut self, now: Instant) -> usize {
        let (idle, lifetime) = (self.idle, self.lifetime);
        let ended: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expired(now, idle, lifetime))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ended {
            if let Some(session) = self.sessions.remove(id) {
                session.close("session expired");
            }
        }
        self.failures
            .retain(|_, f| now.duration_since(f.last) < FORGET_FAILURES);
        ended.len()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `account` may try to log in from `address` now; if not, how long to wait.
    pub fn may_try(&self, address: IpAddr, account: &str, now: Instant) -> Result<(), Duration> {
        let until = self
            .failures
            .get(&account_key(address, account))
            .and_then(Failures::blocked_until);
        match until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn failed(&mut self, address: IpAddr, account: &str, now: Instant) {
        if self.failures.len() >= MAX_THROTTLED {
            self.failures
                .retain(|_, f| now.duration_since(f.last) < FORGET_FAILURES);
        }
        if self.failures.len() >= MAX_THROTTLED {
            let oldest = self
                .failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                self.failures.remove(&key);
            }
        }
        let entry = self
            .failures
            .entry(account_key(address, account))
            .or_insert(Failures {
                count: 0,
                last: now,
            });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// A correct login wipes the pair's failures.
    pub fn succeeded(&mut self, address: IpAddr, account: &str) {
        self.failures.remove(&account_key(address, account));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn sessions() -> Sessions {
        Sessions::new(Duration::from_secs(60), Duration::from_secs(3600))
    }

    #[test]
    fn tokens_work_once_and_expire() {
        let mut sessions = sessions();
        let now = Instant::now();
        let token = sessions.mint_token("500", now);
        let (id, extension) = sessions.activate(&token, now).expect("fresh token");
        assert_eq!(sessions.owner(&id, now).unwrap().extension, "500");
        assert_eq!(extension, "500");
        assert_eq!(sessions.activate(&token, now), None, "used twice");
        let late = sessions.mint_token("500", now);
        assert_eq!(
            sessions.activate(&late, now + Duration::from_secs(11)),
            None
        );
    }

    #[test]
    fn failures_brake_one_account_at_one_address_with_growing_waits() {
        let mut sessions = sessions();
        let now = Instant::now();
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let there = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        for _ in 0..FREE_FAILURES {
            assert!(sessions.may_try(here, "admin", now).is_ok());
            sessions.failed(here, "admin", now);
        }
        sessions.failed(here, "admin", now);
        assert_eq!(sessions.may_try(here, "admin", now), Err(FIRST_BACKOFF));
        assert!(
            sessions.may_try(here, "500", now).is_ok(),
            "another account"
        );
        assert!(
            sessions.may_try(there, "admin", now).is_ok(),
            "another address"
        );
        let later = now + FIRST_BACKOFF;
        assert!(sessions.may_try(here, "admin", later).is_ok());
        sessions.failed(here, "admin", later);
        assert_eq!(
            sessions.may_try(here, "admin", later),
            Err(2 * FIRST_BACKOFF)
        );
        sessions.succeeded(here, "admin");
        assert!(sessions.may_try(here, "admin", later).is_ok());
    }

    #[test]
    fn the_brake_holds_few_entries_of_short_names() {
        let mut sessions = sessions();
        let now = Instant::now();
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for n in 0..MAX_THROTTLED + 10 {
            sessions.failed(here, &format!("{n}{}", "x".repeat(1000)), now);
        }
        assert!(sessions.failures.len() <= MAX_THROTTLED);
        assert!(
            sessions
                .failures
                .keys()
                .all(|(_, a)| a.len() <= MAX_ACCOUNT_BYTES)
        );
    }

    #[test]
    fn sessions_end_when_idle_old_or_logged_out_and_close_their_sockets() {
        let mut sessions = Sessions::new(Duration::from_secs(10), Duration::from_secs(100));
        let now = Instant::now();
        let idle = sessions.open("500", now);
        assert!(
            sessions
                .owner(&idle, now + Duration::from_secs(9))
                .is_some()
        );
        assert!(
            sessions
                .owner(&idle, now + Duration::from_secs(10))
                .is_none()
        );

        let busy = sessions.open("501", now);
        let (close, mut closed) = oneshot::channel();
        sessions.attach(&busy, 1, close, now);
        let later = now + Duration::from_secs(50);
        assert!(
            sessions.owner(&busy, later).is_some(),
            "a socket keeps it in use"
        );
        assert_eq!(sessions.expire(later), 1, "the idle one");
        assert!(closed.try_recv().is_err());
        sessions.expire(now + Duration::from_secs(100));
        assert_eq!(closed.try_recv(), Ok("session expired"));

        let out = sessions.open("502", now);
        let (close, mut closed) = oneshot::channel();
        sessions.attach(&out, 2, close, now);
        assert!(sessions.end(&out));
        assert_eq!(closed.try_recv(), Ok("logged out"));
        assert!(sessions.owner(&out, now).is_none());
        assert!(!sessions.end(&out));
    }
}
