//! Calls: the per-call signalling state machine (sans-IO), the action queue that gives script
//! commands their order, and the actor that runs both with a media leg.

mod machine;

pub use machine::{
    Call, CallEnd, Command, Direction, EndReason, Input, MediaCommand, MediaResult, Output, Timer,
    fix_answer_setup,
};
