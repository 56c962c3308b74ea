//! One bot's link to the PBX (docs/protocol.md §1–§2, §6, §8): REST login, the websocket over
//! rustls, bootstrap, keepalive, registration refresh, reconnect with backoff, the presence
//! table, and the router that hands call frames to calls.

mod backoff;
mod fault;
mod link;
mod login;
mod presence;
mod router;
mod socket;
pub mod tls;

pub use backoff::Backoff;
pub use fault::{Fault, FaultLog};
pub use link::{FrameSender, Link, LinkEvent, LinkSettings};
pub use login::{Credentials, LoginError, Session, login};
pub use presence::{Client, PresenceTable};
pub use router::{CallRouter, Route};
pub use socket::{PbxSocket, SocketError, open as open_socket};
