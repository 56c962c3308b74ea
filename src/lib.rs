//! callbot: a call-automation daemon for PBXs that speak the Vodia websocket protocol.

pub mod amd;
pub mod bench;
pub mod call;
pub mod campaign;
pub mod config;
pub mod connection;
pub mod console;
pub mod daemon;
pub mod input_file;
pub(crate) mod lock;
pub mod media;
pub mod pbx;
pub mod phone;
pub mod procstat;
pub mod protocol;
pub mod script;
pub mod speech;
pub mod untrusted;
pub mod voice;
