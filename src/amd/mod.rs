//! Answering-machine detection: who answered an outbound call, a person or a machine, decided
//! from the first seconds of what the far end sends, and when a machine's greeting ends (its
//! beep, or the silence after it) so that a message left then lands in the voicemail.
//!
//! Sans-IO: [`MachineListener`] takes decoded audio and returns events; the call actor feeds
//! it from an audio tap on its media leg ([`crate::media::MediaLeg::add_tap`]), and
//! the `amd` benchmark feeds it the labelled recordings in tests/fixtures/amd.
//!
//! The voice detector is earshot's small neural network (16 ms frames at 16 kHz); on top of it
//! runs the greeting analysis of Asterisk's `AMD()` ([`greeting`]), then a tone detector for
//! the beep ([`tone`]).

pub mod evaluation;
mod frames;
pub mod greeting;
mod listener;
mod settings;
pub mod tone;

pub use greeting::{AmdReason, AmdResult, Verdict};
pub use listener::{AmdEvent, Beep, BeepKind, MachineListener};
pub use settings::{ASTERISK, AmdSettings};
