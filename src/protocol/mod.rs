//! The Vodia websocket protocol (docs/protocol.md) as plain values.
//!
//! Sans-IO: no sockets, no clocks, no async runtime. Text goes in, typed frames come out, and the
//! other way round; the connection, call and emulator layers build on these types so that a field
//! name or a precedence rule lives in exactly one place.

mod candidate;
mod client;
mod dialect;
mod error;
mod fields;
mod names;
mod server;
mod values;

pub use candidate::{CandidateAddress, CandidateError, RemoteCandidate};
pub use client::{CallDir, CallScope, ClientFrame, HoldCommand, IceCandidate};
pub use dialect::Dialect;
pub use error::DecodeError;
pub use names::{CallFailure, CallState, ClientStatus, ConnectionState};
pub use server::{
    Bye, CallInfo, CallRef, Invite, PbxCallState, Presence, RESERVED_KEYS, SdpFrame, ServerFrame,
};
pub use values::{CallId, Cseq, Sdp, SdpKind, SipCode};

/// What a legacy password login sends for a password (§1): the hex MD5 of it. Both the client
/// and the emulator's check use this one definition.
pub fn password_digest(password: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(password.as_bytes()))
}
