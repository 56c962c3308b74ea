//! Calls: the per-call signalling state machine and the call's logic around it (both sans-IO),
//! the action queue that gives script commands their order, and the actor that does the
//! logic's I/O with a media leg.

mod actions;
mod actor;
mod audio_feed;
mod detection;
mod gather;
mod live;
mod logic;
mod machine;
mod pacer;
mod table;
#[cfg(test)]
mod test_fixtures;

/// The log target of per-call lines (a call rang, was dialled, ended): shown with `-v` (or
/// `RUST_LOG=callbot::calls=info`), so a busy daemon's or campaign's console is not one line
/// per call.
pub const CALLS_TARGET: &str = "callbot::calls";

pub use actions::{Action, ActionQueue};
pub use actor::{
    ActorInput, CallCommand, CallEvent, CallHandler, CallInfo, CallReport, CallSetup, Origin,
    RING_TIMEOUT, spawn,
};
pub use gather::{Gather, GatherOptions, GatherReason, GatherStep, Gathered};
pub use live::{LiveCall, LiveCalls};
pub use pacer::Pacer;
pub use table::{CallTable, Delivery, Inbox, inbox};

pub use machine::{
    Call, CallEnd, Command, Direction, EndReason, Input, MediaCommand, MediaResult, Output, Timer,
};
