//! `callbot bench`: load against a bot process through the emulator, and the peers people use
//! instead (a Python aiortc bot, headless Chromium), measured side by side.

pub mod browser;
pub mod load;
pub mod report;
pub mod target;
