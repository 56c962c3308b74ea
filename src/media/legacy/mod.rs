//! The first media engine, on the async webrtc-rs crate: a task and a socket per leg, locks
//! shared with one clock thread. Kept only to be measured against the sans-IO engine
//! (`callbot run --engine legacy`, `callbot bench --engine`).

pub mod leg;
pub mod runtime;
mod transport;
mod webrtc;
