//! The Ozeki-style names scripts see (docs/protocol.md §8), and how SIP codes map onto call end
//! states (§6).

use super::values::SipCode;

/// The state of a bot's link to the PBX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Registered: calls can arrive.
    AccessGranted,
    /// Login or websocket upgrade refused.
    AccessDenied,
    /// TCP, TLS or websocket error before the socket was open.
    ConnectionFailed,
    /// The socket closed after it was open.
    ConnectionClosed,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::AccessGranted => "ACCESS_GRANTED",
            ConnectionState::AccessDenied => "ACCESS_DENIED",
            ConnectionState::ConnectionFailed => "CONNECTION_FAILED",
            ConnectionState::ConnectionClosed => "CONNECTION_CLOSED",
        }
    }
}

/// Presence of another extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientStatus {
    Online,
    Offline,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Online => "ONLINE",
            ClientStatus::Offline => "OFFLINE",
        }
    }
}

/// A call's state as scripts see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallState {
    Ringing,
    InCall,
    Hold,
    Completed,
    Busy,
    Rejected,
    NotFound,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "RINGING",
            CallState::InCall => "IN_CALL",
            CallState::Hold => "HOLD",
            CallState::Completed => "COMPLETED",
            CallState::Busy => "BUSY",
            CallState::Rejected => "REJECTED",
            CallState::NotFound => "NOT_FOUND",
        }
    }
}

/// Why a call that never connected ended, from the SIP code of a final response or `bye` (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallFailure {
    /// 486, 600.
    Busy,
    /// 404.
    NotFound,
    /// 487: the caller gave up (usually us).
    Cancelled,
    /// 488, 603 and every other code ≥ 400.
    Rejected(SipCode),
}

impl CallFailure {
    /// The failure a code means, or `None` for codes below 400.
    pub fn from_code(code: SipCode) -> Option<Self> {
        Some(match code.0 {
            0..400 => return None,
            404 => CallFailure::NotFound,
            486 | 600 => CallFailure::Busy,
            487 => CallFailure::Cancelled,
            _ => CallFailure::Rejected(code),
        })
    }

    /// The end state scripts see; a cancelled call simply completed.
    pub fn call_state(self) -> CallState {
        match self {
            CallFailure::Busy => CallState::Busy,
            CallFailure::NotFound => CallState::NotFound,
            CallFailure::Cancelled => CallState::Completed,
            CallFailure::Rejected(_) => CallState::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_for(code: u16) -> Option<CallState> {
        CallFailure::from_code(SipCode(code)).map(CallFailure::call_state)
    }

    #[test]
    fn sip_codes_map_to_end_states() {
        assert_eq!(state_for(486), Some(CallState::Busy));
        assert_eq!(state_for(600), Some(CallState::Busy));
        assert_eq!(state_for(404), Some(CallState::NotFound));
        assert_eq!(state_for(488), Some(CallState::Rejected));
        assert_eq!(state_for(603), Some(CallState::Rejected));
        assert_eq!(state_for(415), Some(CallState::Rejected));
        assert_eq!(state_for(500), Some(CallState::Rejected));
        assert_eq!(state_for(487), Some(CallState::Completed));
        assert_eq!(
            CallFailure::from_code(SipCode(480)),
            Some(CallFailure::Rejected(SipCode(480)))
        );
    }

    #[test]
    fn progress_and_success_are_not_failures() {
        for code in [100, 180, 183, 200, 399] {
            assert_eq!(state_for(code), None, "{code}");
        }
    }

    #[test]
    fn ozeki_names() {
        assert_eq!(ConnectionState::AccessGranted.as_str(), "ACCESS_GRANTED");
        assert_eq!(
            ConnectionState::ConnectionClosed.as_str(),
            "CONNECTION_CLOSED"
        );
        assert_eq!(ClientStatus::Offline.as_str(), "OFFLINE");
        assert_eq!(CallState::InCall.as_str(), "IN_CALL");
        assert_eq!(CallState::NotFound.as_str(), "NOT_FOUND");
    }
}
