//! Bot scripts (docs/scripting.md): each bot's Rhai file compiled once, its handlers run for bot
//! and call events with budgets and a sandbox, hot reload that leaves live calls on the code
//! they started with.

mod api;
mod check;
mod contract;
mod engine;
mod memory;
mod prompts;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::metrics::counter::Counter;
use rhai::{AST, CallFnOptions, Dynamic, Engine, FuncArgs, Scope};
use thiserror::Error;
use tokio::sync::mpsc;

pub use api::{BotApi, BotCommand, CallApi, CommandSink, client_value};
pub use check::{Finding, Severity, check_bot};
pub use contract::{HANDLERS, Handler};
pub use engine::Limits;
pub use memory::{DEFAULT_BYTES as DEFAULT_MEMORY_BYTES, MemoryBudget, Store};

use crate::call::{ActorInput, CallCommand, CallEvent, CallHandler, CallInfo};
use crate::protocol::SipCode;

#[derive(Debug, Error)]
pub enum ScriptError {
    #[error("{path}: {problem}")]
    Unreadable { path: String, problem: String },
    #[error("{file}:{}:{}: {message}", line.unwrap_or(0), column.unwrap_or(0))]
    Compile {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

/// A compiled script and what it defines.
struct Compiled {
    ast: Arc<AST>,
    handlers: HashSet<(String, usize)>,
    /// Where each function is defined, for errors that carry no position.
    lines: HashMap<String, usize>,
}

impl Compiled {
    fn describe(&self, label: &str, handler: &str, error: &rhai::EvalAltResult) -> String {
        engine::describe(label, error, self.lines.get(handler).copied())
    }
}

/// One bot's script: the engine (with the bot's `bot` object), the current compiled version,
/// and an error counter for metrics.
pub struct ScriptHost {
    engine: Arc<Engine>,
    file: PathBuf,
    label: String,
    limits: Limits,
    bot: BotApi,
    current: RwLock<Arc<Compiled>>,
    errors: ScriptErrors,
}

/// A script's handler errors: counted (for `/metrics`), the latest one kept (for the
/// dashboard). Cheap to clone; clones share both.
#[derive(Clone, Debug)]
pub struct ScriptErrors {
    count: Counter,
    latest: Arc<Mutex<Option<(std::time::SystemTime, String)>>>,
}

impl ScriptErrors {
    fn new(count: Counter) -> Self {
        Self {
            count,
            latest: Arc::default(),
        }
    }

    fn add(&self, message: &str) {
        self.count.inc();
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::SystemTime::now(), message.to_owned()));
    }

    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// The latest error and when it happened.
    pub fn latest(&self) -> Option<(std::time::SystemTime, String)> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn read(path: &Path) -> Result<String, ScriptError> {
    crate::input_file::read_to_string(path).map_err(|e| ScriptError::Unreadable {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// Compiles `text` for `bot`: the `bot` global is declared to the compiler, so strict
/// variables accept it and nothing else undeclared.
fn parse(engine: &Engine, label: &str, text: &str, bot: &BotApi) -> Result<AST, ScriptError> {
    let mut scope = Scope::new();
    scope.push_constant("bot", bot.clone());
    engine
        .compile_with_scope(&scope, text)
        .map_err(|e| ScriptError::Compile {
            file: label.to_owned(),
            line: e.position().line(),
            column: e.position().position(),
            message: e.err_type().to_string(),
        })
}

fn compile(
    engine: &Engine,
    label: &str,
    text: &str,
    bot: &BotApi,
) -> Result<Compiled, ScriptError> {
    let ast = parse(engine, label, text, bot)?;
    let handlers = ast
        .iter_functions()
        .map(|f| (f.name.to_owned(), f.params.len()))
        .collect();
    Ok(Compiled {
        ast: Arc::new(ast),
        handlers,
        lines: engine::function_lines(text),
    })
}

impl ScriptHost {
    /// Compiles the script for `bot`; handler errors are counted in `errors`.
    pub fn load(
        path: &Path,
        bot: BotApi,
        limits: Limits,
        errors: Counter,
    ) -> Result<Self, ScriptError> {
        let mut host = Self::from_source(
            &path.display().to_string(),
            &read(path)?,
            bot,
            limits,
            errors,
        )?;
        host.file = path.to_owned();
        Ok(host)
    }

    /// A script given as text; `label` names it in errors (as a file would).
    pub fn from_source(
        label: &str,
        text: &str,
        bot: BotApi,
        limits: Limits,
        errors: Counter,
    ) -> Result<Self, ScriptError> {
        let label = label.to_owned();
        let mut engine = engine::engine(&label, limits);
        api::register(&mut engine);
        // `bot` is a global in every handler (Rhai functions cannot see the global scope, so
        // the name is resolved here). `on_var` is marked volatile, not deprecated, upstream.
        let global = bot.clone();
        #[allow(deprecated)]
        engine.on_var(move |name, _, _| Ok((name == "bot").then(|| Dynamic::from(global.clone()))));
        let compiled = compile(&engine, &label, text, &bot)?;
        Ok(Self {
            engine: Arc::new(engine),
            file: PathBuf::from(&label),
            label,
            limits,
            bot,
            current: RwLock::new(Arc::new(compiled)),
            errors: ScriptErrors::new(errors),
        })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn bot(&self) -> &BotApi {
        &self.bot
    }

    /// The script's handler errors, from bot and call events alike.
    pub fn errors(&self) -> ScriptErrors {
        self.errors.clone()
    }

    fn current(&self) -> Arc<Compiled> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Compiles the file again; on success new calls and bot events use it, live calls keep
    /// the version they started with. On failure the old version stays.
    pub fn reload(&self) -> Result<(), ScriptError> {
        self.reload_source(&read(&self.file)?)
    }

    /// Like [`ScriptHost::reload`], from text.
    pub fn reload_source(&self, text: &str) -> Result<(), ScriptError> {
        let compiled = compile(&self.engine, &self.label, text, &self.bot)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(compiled);
        Ok(())
    }

    /// Runs a bot-level handler (`on_start`, `on_connection_state`, `on_client_state`,
    /// `on_timer`) if the script defines it; errors are logged and counted.
    pub fn bot_event(&self, name: &str, args: impl FuncArgs) {
        let compiled = self.current();
        let mut values = Vec::new();
        args.parse(&mut values);
        debug_assert!(
            contract::handler_named(name).is_some_and(|h| h.params.len() == values.len()),
            "{name} with {} arguments is not in the contract",
            values.len()
        );
        if !compiled.handlers.contains(&(name.to_owned(), values.len())) {
            return;
        }
        if let Err(e) = run(&self.engine, &compiled.ast, self.limits, name, values) {
            let message = format!(
                "script error in {name}: {}",
                compiled.describe(&self.label, name, &e)
            );
            self.errors.add(&message);
            tracing::warn!(bot = %self.bot.shared().name, "{message}");
        }
    }

    /// The handler for a new call, bound to the script version current now.
    pub fn call_handler(&self, inbox: mpsc::UnboundedSender<ActorInput>) -> ScriptCallHandler {
        ScriptCallHandler {
            engine: self.engine.clone(),
            compiled: self.current(),
            label: self.label.clone(),
            limits: self.limits,
            bot: self.bot.clone(),
            inbox,
            store: self.bot.call_store(),
            errors: self.errors.clone(),
        }
    }
}

fn run(
    engine: &Engine,
    ast: &AST,
    limits: Limits,
    name: &str,
    args: Vec<Dynamic>,
) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
    engine::with_deadline(limits.time, || {
        engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, name, args)
    })
}

/// The handler a call event goes to, and its argument besides the call.
fn call_handler(event: &CallEvent) -> (&'static str, Option<Dynamic>) {
    match event {
        CallEvent::Incoming => ("on_incoming_call", None),
        CallEvent::State(state) => ("on_call_state", Some(state.as_str().into())),
        CallEvent::Dtmf(digit) => ("on_dtmf", Some(digit.to_string().into())),
        CallEvent::Digits(digits) => ("on_digits", Some(digits.clone().into())),
        CallEvent::PlayDone(prompt) => ("on_play_done", Some(prompt.clone().into())),
        CallEvent::Timer(timer) => ("on_call_timer", Some(timer.clone().into())),
        CallEvent::Recording(path) => ("on_recording", Some(path.display().to_string().into())),
        CallEvent::Stream(event) => ("on_stream", Some(api::stream_event_value(event))),
        CallEvent::Machine(verdict) => ("on_machine", Some(api::verdict_value(verdict))),
        CallEvent::Beep(_) => ("on_beep", None),
    }
}

/// Runs a call's events through the script version the call started with.
pub struct ScriptCallHandler {
    engine: Arc<Engine>,
    compiled: Arc<Compiled>,
    label: String,
    limits: Limits,
    bot: BotApi,
    inbox: mpsc::UnboundedSender<ActorInput>,
    store: Arc<Store>,
    errors: ScriptErrors,
}

impl CallHandler for ScriptCallHandler {
    fn handle(&mut self, info: &CallInfo, event: &CallEvent) -> Result<Vec<CallCommand>, String> {
        if let CallEvent::Timer(timer) = event {
            self.store.timer_done(timer);
        }
        let (name, extra) = call_handler(event);
        let arity = 1 + usize::from(extra.is_some());
        if !self.compiled.handlers.contains(&(name.to_owned(), arity)) {
            // docs/scripting.md "Events": without `on_incoming_call` calls are rejected with 480.
            return Ok(match event {
                CallEvent::Incoming => vec![CallCommand::Reject(SipCode::TEMPORARILY_UNAVAILABLE)],
                _ => Vec::new(),
            });
        }
        let sink = Arc::new(CommandSink::buffered(self.inbox.clone()));
        let call = CallApi::new(
            Arc::new(info.clone()),
            sink.clone(),
            self.bot.clone(),
            self.store.clone(),
        );
        let mut args = vec![Dynamic::from(call)];
        args.extend(extra);
        let result = run(&self.engine, &self.compiled.ast, self.limits, name, args);
        let commands = sink.take();
        match result {
            Ok(_) => Ok(commands),
            Err(e) => {
                let message = format!(
                    "{} (bot {}, call {})",
                    self.compiled.describe(&self.label, name, &e),
                    self.bot.shared().name,
                    crate::untrusted::escaped(info.id.as_str())
                );
                self.errors.add(&message);
                Err(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CallState;

    #[test]
    fn every_call_event_goes_to_a_handler_of_the_contract() {
        for event in [
            CallEvent::Incoming,
            CallEvent::State(CallState::Ringing),
            CallEvent::Dtmf('1'),
            CallEvent::Digits("12".into()),
            CallEvent::PlayDone("a.wav".into()),
            CallEvent::Timer("t".into()),
            CallEvent::Recording("r.wav".into()),
            CallEvent::Stream(crate::voice::StreamEvent::Connected),
        ] {
            let (name, extra) = call_handler(&event);
            let handler = contract::handler_named(name).expect("in the contract");
            assert_eq!(
                handler.params.len(),
                1 + usize::from(extra.is_some()),
                "{name}"
            );
            assert!(handler.is_call(0), "{name} gets the call first");
        }
    }
}
