//! The handlers a bot script may define, in one table: what the daemon calls, with which
//! parameters. `callbot check` holds scripts to it and docs/scripting.md "Events" describes
//! it; a new event is one line here. (The `bot` and `call` methods are whatever
//! [`super::api::register`] registers: `check` asks the engine for them.)

/// A handler: its name and its parameters, by the names the contract gives them. A parameter
/// named `call` is the call object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handler {
    pub name: &'static str,
    pub params: &'static [&'static str],
}

const fn handler(name: &'static str, params: &'static [&'static str]) -> Handler {
    Handler { name, params }
}

/// Every handler there is.
pub const HANDLERS: &[Handler] = &[
    handler("on_start", &[]),
    handler("on_connection_state", &["state"]),
    handler("on_client_state", &["client"]),
    handler("on_incoming_call", &["call"]),
    handler("on_call_state", &["call", "state"]),
    handler("on_dtmf", &["call", "digit"]),
    handler("on_digits", &["call", "digits"]),
    handler("on_play_done", &["call", "prompt"]),
    handler("on_timer", &["name"]),
    handler("on_call_timer", &["call", "name"]),
    handler("on_recording", &["call", "path"]),
    handler("on_stream", &["call", "event"]),
    handler("on_machine", &["call", "result"]),
    handler("on_beep", &["call"]),
];

/// The handler called `name`, if there is one.
pub fn handler_named(name: &str) -> Option<&'static Handler> {
    HANDLERS.iter().find(|h| h.name == name)
}

/// Handler names are `on_` and a word: a script function named so is meant as one.
pub const HANDLER_PREFIX: &str = "on_";

impl Handler {
    /// `(call, digits)`, for messages.
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }

    /// Whether parameter `index` is the call object.
    pub fn is_call(&self, index: usize) -> bool {
        self.params.get(index) == Some(&"call")
    }
}
