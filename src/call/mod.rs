//! Calls: the per-call signalling state machine (sans-IO), the action queue that gives script
//! commands their order, and the actor that runs both with a media leg.

mod actions;
mod actor;
mod gather;
mod machine;
mod pacer;
mod table;

pub use actions::{Action, ActionQueue};
pub use actor::{
    ActorInput, CallCommand, CallEvent, CallHandler, CallInfo, CallReport, CallSetup, Origin, spawn,
};
pub use gather::{Gather, GatherOptions, GatherReason, GatherStep, Gathered};
pub use pacer::Pacer;
pub use table::{CallTable, Delivery, Inbox, inbox};

pub use machine::{
    Call, CallEnd, Command, Direction, EndReason, Input, MediaCommand, MediaResult, Output, Timer,
};
