//! The `bot` and `call` objects scripts see (docs/scripting.md "bot", "call"), registered on the
//! engine.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use tokio::sync::mpsc;

use super::memory::{MemoryBudget, Store};
use super::prompts;
use crate::amd::{AmdSettings, Beep, Verdict};
use crate::call::{
    self, Action, ActorInput, CallCommand, CallInfo, Direction, GatherOptions, Inbox,
};
use crate::config::{BotConfig, DialPolicy};
use crate::connection::Client;
use crate::lock::lock;
use crate::media::dtmf::Digit;
use crate::protocol::{CallId, SipCode};
use crate::speech;
use crate::voice::{StreamEvent, StreamRequest, Tracks};

/// The most keys one `send_dtmf` sends: a whole number or code fits, and in-band keys (about
/// 150 ms of audio each) stay a short prompt.
const MAX_DTMF_KEYS: usize = 64;
/// The longest `pause` or `tone`: an hour of generated audio is already far more than any
/// menu needs.
const MAX_MEDIA_MS: i64 = 3_600_000;
/// The longest timer or gather timeout: a day (longer is a mistake, and would overflow the
/// clock arithmetic long before it mattered).
const MAX_WAIT_MS: i64 = 86_400_000;
/// Tone frequencies a call can carry: G.711 samples at 8 kHz, so 4 kHz is the top.
const TONE_HZ: std::ops::RangeInclusive<f64> = 20.0..=4000.0;
/// What one `call.stream()` may send in its `start` message: its `customParameters`…
const MAX_STREAM_PARAMS: usize = 64;
/// …each name and value at most this long, and the URL too.
const MAX_STREAM_TEXT: usize = 4096;

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

fn error<T>(message: impl Into<String>) -> ScriptResult<T> {
    Err(message.into().into())
}

/// What a script asks of its bot (the bot task carries it out).
#[derive(Debug)]
pub enum BotCommand {
    /// Place a call; `inbox` is the new call's input channel (commands given to it before it
    /// starts wait there).
    Dial {
        id: CallId,
        to: String,
        vars: BTreeMap<String, String>,
        inbox: Inbox,
    },
    SetTimer(String, Duration),
    CancelTimer(String),
}

/// The `bot` object: one per bot, shared by its handlers and calls.
#[derive(Clone)]
pub struct BotApi(Arc<BotShared>);

pub struct BotShared {
    pub name: String,
    pub extension: String,
    pub vars: Map,
    pub prompts: PathBuf,
    pub allow_dial: DialPolicy,
    /// The bot's answering-machine settings (`detect_machine:`), what `call.detect_machine`
    /// starts from.
    pub detect_machine: Option<AmdSettings>,
    /// `bot.set` values and bot timers, counted against `memory` with every call's store.
    state: Store,
    memory: Arc<MemoryBudget>,
    /// Other extensions by number, as `bot.clients()` lists them.
    clients: Mutex<BTreeMap<String, Client>>,
    /// Our outbound calls that the PBX renamed (modern dialect), by the id scripts know them by:
    /// frames about them must use the PBX's id.
    wire_ids: Mutex<HashMap<CallId, CallId>>,
    commands: mpsc::UnboundedSender<BotCommand>,
}

impl BotApi {
    /// The bot's script may keep `memory_bytes` between handler runs (`script_memory_mb`).
    pub fn new(
        name: &str,
        extension: &str,
        vars: &BTreeMap<String, String>,
        prompts: PathBuf,
        allow_dial: DialPolicy,
        memory_bytes: usize,
        commands: mpsc::UnboundedSender<BotCommand>,
    ) -> Self {
        let memory = MemoryBudget::new(memory_bytes);
        let vars = vars
            .iter()
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect();
        Self(Arc::new(BotShared {
            name: name.to_owned(),
            extension: extension.to_owned(),
            vars,
            prompts: prompts::root(&prompts),
            allow_dial,
            detect_machine: None,
            state: Store::new(memory.clone()),
            memory,
            clients: Mutex::default(),
            wire_ids: Mutex::default(),
            commands,
        }))
    }

    /// The `bot` object of a configured bot.
    pub fn for_bot(config: &BotConfig, commands: mpsc::UnboundedSender<BotCommand>) -> Self {
        Self::new(
            &config.name,
            &config.extension,
            &config.vars,
            config.prompts.clone(),
            config.allow_dial.clone(),
            config.script_memory,
            commands,
        )
        .with_detect_machine(config.detect_machine)
    }

    /// The bot's answering-machine settings, which `call.detect_machine` starts from. Set
    /// before the object is handed out (later, it is shared and stays as it is).
    pub fn with_detect_machine(mut self, settings: Option<AmdSettings>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.detect_machine = settings;
        }
        self
    }

    pub fn shared(&self) -> &BotShared {
        &self.0
    }

    /// What the script keeps now, over `bot.set`, every live call's `call.set` and timers.
    pub fn memory(&self) -> &Arc<MemoryBudget> {
        &self.0.memory
    }

    /// A store for one call's `call.set` values and timers, on the bot's budget.
    pub fn call_store(&self) -> Arc<Store> {
        Arc::new(Store::new(self.0.memory.clone()))
    }

    /// Bot timer `name` fired: it no longer counts against the budget.
    pub fn timer_fired(&self, name: &str) {
        self.0.state.timer_done(name);
    }

    /// The bot task reports each presence change here, keeping `bot.clients()` current.
    pub fn update_client(&self, client: Client) {
        lock(&self.0.clients).insert(client.number.clone(), client);
    }

    /// The PBX gave call `id` (as scripts know it) an id of its own.
    pub fn renamed(&self, id: &CallId, wire: &CallId) {
        lock(&self.0.wire_ids).insert(id.clone(), wire.clone());
    }

    /// Call `id` is over.
    pub fn forget(&self, id: &CallId) {
        lock(&self.0.wire_ids).remove(id);
    }

    /// The id the PBX knows call `id` by.
    fn wire_id(&self, id: &CallId) -> CallId {
        lock(&self.0.wire_ids)
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.clone())
    }

    /// How many of the extensions the bot has heard of are online, and how many it knows.
    pub fn clients_online(&self) -> (usize, usize) {
        let clients = lock(&self.0.clients);
        let online = clients
            .values()
            .filter(|c| c.status == crate::protocol::ClientStatus::Online)
            .count();
        (online, clients.len())
    }

    fn check_dial(&self, number: &str, what: &str) -> ScriptResult<()> {
        if self.0.allow_dial.allows(number) {
            Ok(())
        } else {
            error(format!(
                "{what} {number:?} refused: not in allow_dial of bot {}",
                self.0.name
            ))
        }
    }

    fn dial(&self, number: &str, vars: Map) -> ScriptResult<CallApi> {
        self.check_dial(number, "dialling")?;
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = CallId::random();
        let (tx, rx) = call::inbox();
        let info = CallInfo::new(
            id.clone(),
            Direction::Outbound,
            (&self.0.extension, ""),
            number,
            vars.clone(),
        );
        self.0
            .commands
            .send(BotCommand::Dial {
                id,
                to: number.to_owned(),
                vars,
                inbox: (tx.clone(), rx),
            })
            .map_err(|_| "the bot is shutting down".to_owned())?;
        Ok(CallApi::new(
            Arc::new(info),
            Arc::new(CommandSink::direct(tx)),
            self.clone(),
            self.call_store(),
        ))
    }
}

/// Where a `call` object's commands go: collected while the handler that got the object runs
/// (the call applies them in order when it returns), straight to the call's inbox otherwise.
pub struct CommandSink {
    buffer: Mutex<Option<Vec<CallCommand>>>,
    inbox: mpsc::UnboundedSender<ActorInput>,
}

impl CommandSink {
    pub fn buffered(inbox: mpsc::UnboundedSender<ActorInput>) -> Self {
        Self {
            buffer: Mutex::new(Some(Vec::new())),
            inbox,
        }
    }

    fn direct(inbox: mpsc::UnboundedSender<ActorInput>) -> Self {
        Self {
            buffer: Mutex::new(None),
            inbox,
        }
    }

    fn push(&self, command: CallCommand) {
        match lock(&self.buffer).as_mut() {
            Some(buffer) => buffer.push(command),
            None => {
                let _ = self.inbox.send(ActorInput::Command(command));
            }
        }
    }

    /// Ends buffering: returns what was collected; later commands go to the inbox.
    pub fn take(&self) -> Vec<CallCommand> {
        lock(&self.buffer).take().unwrap_or_default()
    }
}

/// The `call` object.
#[derive(Clone)]
pub struct CallApi {
    info: Arc<CallInfo>,
    sink: Arc<CommandSink>,
    bot: BotApi,
    /// `call.set` / `call.get` and call timers, kept for the call's lifetime.
    store: Arc<Store>,
}

impl CallApi {
    pub fn new(
        info: Arc<CallInfo>,
        sink: Arc<CommandSink>,
        bot: BotApi,
        store: Arc<Store>,
    ) -> Self {
        Self {
            info,
            sink,
            bot,
            store,
        }
    }

    fn push(&mut self, command: CallCommand) {
        self.sink.push(command);
    }

    fn queue(&mut self, action: Action) {
        self.push(CallCommand::Queue(action));
    }

    fn prompt(&self, name: &str) -> ScriptResult<PathBuf> {
        prompts::resolve(&self.bot.0.prompts, name).or_else(error)
    }

    fn play(&mut self, name: &str, options: Map) -> ScriptResult<()> {
        let mut loops = 1;
        for (key, value) in options {
            match key.as_str() {
                "loop" | "loops" => loops = positive(&value, "loop")?,
                other => return error(format!("play: unknown option {other:?} (known: loop)")),
            }
        }
        let prompt = self.prompt(name)?;
        self.queue(Action::Play {
            prompt,
            loops,
            for_gather: false,
        });
        Ok(())
    }

    fn gather(&mut self, options: Map) -> ScriptResult<()> {
        let mut gather = GatherOptions::default();
        for (key, value) in options {
            match key.as_str() {
                "max" => gather.max = positive(&value, "max")? as usize,
                "timeout_ms" => gather.timeout = millis(&value, "timeout_ms")?,
                "interdigit_ms" => gather.interdigit = millis(&value, "interdigit_ms")?,
                "terminator" => {
                    let text = value.to_string();
                    gather.terminator = text.chars().next();
                }
                "prompt" => gather.prompt = Some(self.prompt(&value.to_string())?),
                "barge_in" => {
                    gather.barge_in = value
                        .as_bool()
                        .or_else(|_| error("gather: barge_in must be true or false"))?;
                }
                other => {
                    return error(format!(
                        "gather: unknown option {other:?} (known: max, timeout_ms, \
                         interdigit_ms, terminator, prompt, barge_in)"
                    ));
                }
            }
        }
        self.push(CallCommand::Gather(gather));
        Ok(())
    }

    fn record(&mut self, options: Map) -> ScriptResult<()> {
        let (mut stereo, mut max_secs) = (true, None);
        for (key, value) in options {
            match key.as_str() {
                "stereo" => {
                    stereo = value
                        .as_bool()
                        .or_else(|_| error("record: stereo must be true or false"))?;
                }
                "max_secs" => max_secs = Some(positive(&value, "max_secs")?),
                other => {
                    return error(format!(
                        "record: unknown option {other:?} (known: stereo, max_secs)"
                    ));
                }
            }
        }
        self.push(CallCommand::Record {
            path: None,
            stereo,
            max_secs,
        });
        Ok(())
    }

    /// `detect_machine(#{ greeting_ms: 2000, … })`: the bot's settings (or the defaults), with
    /// the map's keys changed.
    fn detect_machine(&mut self, overrides: Map) -> ScriptResult<()> {
        let mut object = match serde_json::to_value(self.bot.0.detect_machine) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => serde_json::Map::new(),
        };
        for (key, value) in overrides {
            let number = if let Ok(n) = value.as_int() {
                serde_json::Value::from(n)
            } else if let Ok(x) = value.as_float() {
                serde_json::Value::from(x)
            } else {
                return error(format!(
                    "detect_machine: {key} must be a number, not {}",
                    value.type_name()
                ));
            };
            object.insert(key.to_string(), number);
        }
        let settings = AmdSettings::from_overrides(serde_json::Value::Object(object))
            .map_err(|e| format!("detect_machine: {e}"))?;
        self.push(CallCommand::DetectMachine(settings));
        Ok(())
    }

    /// `say(text, #{ voice, rate })`: queued like `play`.
    fn say(&mut self, text: &str, options: Map) -> ScriptResult<()> {
        let (mut voice, mut rate) = (
            speech::DEFAULT_VOICE.to_owned(),
            i64::from(speech::DEFAULT_RATE),
        );
        for (key, value) in options {
            match key.as_str() {
                "voice" => voice = value.to_string(),
                "rate" => {
                    rate = value.as_int().or_else(|_| {
                        error("say: rate must be a whole number (words per minute)")
                    })?;
                }
                other => {
                    return error(format!(
                        "say: unknown option {other:?} (known: voice, rate)"
                    ));
                }
            }
        }
        let utterance =
            speech::Utterance::new(text, &voice, rate).or_else(|e| error(e.to_string()))?;
        self.queue(Action::Say(utterance));
        Ok(())
    }

    fn transfer(&mut self, number: &str) -> ScriptResult<()> {
        self.bot.check_dial(number, "transfer to")?;
        self.queue(Action::Transfer {
            to: number.to_owned(),
        });
        Ok(())
    }

    /// `call.attended_transfer(other)`: when the queue gets there, the PBX connects this call's
    /// far end with `other`'s and releases both of the bot's legs (`other` is another live call
    /// of the bot; its number was allowed when it was dialled or it called in).
    fn attended_transfer(&mut self, other: CallApi) -> ScriptResult<()> {
        if other.info.id == self.info.id {
            return error("attended_transfer: a call cannot be joined with itself");
        }
        let to = match other.info.direction {
            Direction::Outbound => other.info.to.clone(),
            Direction::Inbound => other.info.from.clone(),
        };
        other.sink.push(CallCommand::TransferPending);
        self.queue(Action::AttendedTransfer {
            id2: self.bot.wire_id(&other.info.id),
            to,
        });
        Ok(())
    }

    fn reject(&mut self, code: i64) -> ScriptResult<()> {
        match u16::try_from(code) {
            Ok(code @ 400..=699) => {
                self.push(CallCommand::Reject(SipCode(code)));
                Ok(())
            }
            _ => error(format!(
                "reject: {code} is not a SIP error code (use 486, 603 or 488)"
            )),
        }
    }

    fn send_dtmf(&mut self, digits: &str) -> ScriptResult<()> {
        if digits.len() > MAX_DTMF_KEYS {
            return error(format!(
                "send_dtmf: at most {MAX_DTMF_KEYS} keys at a time, got {}",
                digits.len()
            ));
        }
        if digits.is_empty() || Digit::parse_all(digits).is_none() {
            return error(format!("send_dtmf: {digits:?} is not 0-9 * # A-D"));
        }
        self.queue(Action::SendDtmf {
            digits: digits.to_owned(),
        });
        Ok(())
    }

    /// `call.stream(url, #{ params, tracks })`: checked here (a typo is a script error with its
    /// line); whether the URL may be reached is the stream's to say (`on_stream` error).
    fn stream(&mut self, url: &str, options: Map) -> ScriptResult<()> {
        if url.len() > MAX_STREAM_TEXT {
            return error(format!(
                "stream: the URL is longer than {MAX_STREAM_TEXT} bytes"
            ));
        }
        crate::voice::check_url(url, true).or_else(|e| error(format!("stream: {e}")))?;
        let mut request = StreamRequest {
            url: url.to_owned(),
            ..StreamRequest::default()
        };
        for (key, value) in options {
            match key.as_str() {
                "params" => {
                    let params = value
                        .try_cast::<Map>()
                        .ok_or("stream: params must be a map such as #{ lang: \"de\" }")?;
                    if params.len() > MAX_STREAM_PARAMS {
                        return error(format!("stream: at most {MAX_STREAM_PARAMS} params"));
                    }
                    for (name, value) in params {
                        let value = value.to_string();
                        if name.len() > MAX_STREAM_TEXT || value.len() > MAX_STREAM_TEXT {
                            return error(format!(
                                "stream: param names and values are at most {MAX_STREAM_TEXT} bytes"
                            ));
                        }
                        request.params.insert(name.to_string(), value);
                    }
                }
                "tracks" => {
                    request.tracks = Tracks::parse(&value.to_string())
                        .ok_or("stream: tracks must be \"inbound\" or \"both\"")?;
                }
                other => {
                    return error(format!(
                        "stream: unknown option {other:?} (known: params, tracks)"
                    ));
                }
            }
        }
        self.queue(Action::Stream(request));
        Ok(())
    }

    fn log(&mut self, message: &str) {
        tracing::info!(
            bot = %self.bot.0.name,
            call = %crate::untrusted::escaped(self.info.id.as_str()),
            "{message}"
        );
    }
}

fn positive(value: &Dynamic, what: &str) -> ScriptResult<u32> {
    value
        .as_int()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .map_or_else(
            || error(format!("{what} must be a positive whole number")),
            Ok,
        )
}

fn millis(value: &Dynamic, what: &str) -> ScriptResult<Duration> {
    match value.as_int() {
        Ok(ms) => wait(ms, what),
        Err(_) => error(format!("{what} must be a number of milliseconds")),
    }
}

/// `ms` as a timer's or timeout's wait: 0 to a day.
fn wait(ms: i64, what: &str) -> ScriptResult<Duration> {
    bounded_ms(ms, what, MAX_WAIT_MS).map(|ms| Duration::from_millis(u64::from(ms)))
}

/// `ms` if it is 0 to `max` milliseconds.
fn bounded_ms(ms: i64, what: &str, max: i64) -> ScriptResult<u32> {
    match u32::try_from(ms) {
        Ok(ms) if i64::from(ms) <= max => Ok(ms),
        _ => error(format!("{what} must be 0 to {max} milliseconds, got {ms}")),
    }
}

/// `tone(hz, ms)`'s action, if both are in range.
fn tone(hz: f64, ms: i64) -> ScriptResult<Action> {
    if !TONE_HZ.contains(&hz) {
        return error(format!(
            "tone: {hz} Hz is outside {}-{} Hz",
            TONE_HZ.start(),
            TONE_HZ.end()
        ));
    }
    let ms = bounded_ms(ms, "tone", MAX_MEDIA_MS)?;
    Ok(Action::Tone { hz: hz as f32, ms })
}

fn client_map(client: &Client) -> Map {
    let mut map = Map::new();
    map.insert("number".into(), client.number.clone().into());
    map.insert("name".into(), client.name.clone().into());
    map.insert("status".into(), client.status.as_str().into());
    map.insert("dnd".into(), client.dnd.into());
    map
}

/// A stream event as the map `on_stream` receives: `#{ kind, name, reason }`.
pub fn stream_event_value(event: &StreamEvent) -> Dynamic {
    let (kind, name, reason) = event.parts();
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("name".into(), name.into());
    map.insert("reason".into(), reason.into());
    map.into()
}

/// A client as the map `on_client_state` receives.
pub fn client_value(client: &Client) -> Dynamic {
    client_map(client).into()
}

/// A verdict as `on_machine` and `call.machine` give it: `#{ result, reason, ms }`.
pub fn verdict_value(verdict: &Verdict) -> Dynamic {
    let mut map = Map::new();
    map.insert("result".into(), verdict.result.as_str().into());
    map.insert("reason".into(), verdict.reason.as_str().into());
    map.insert("ms".into(), i64::from(verdict.ms).into());
    map.into()
}

/// The end of a greeting as `call.beep` gives it: `#{ how, ms }`.
fn beep_value(beep: &Beep) -> Dynamic {
    let mut map = Map::new();
    map.insert("how".into(), beep.how.as_str().into());
    map.insert("ms".into(), i64::from(beep.ms).into());
    map.into()
}

fn text(value: Option<&str>) -> ImmutableString {
    value.unwrap_or_default().into()
}

/// Registers `Bot` and `Call` with their properties and methods, and `random(n)` (a whole
/// number in 0..n, for jitter such as the greeters' random delay; Rhai has none built in).
pub fn register(engine: &mut Engine) {
    engine.register_fn("random", |max: i64| {
        if max <= 0 {
            0
        } else {
            rand::random_range(0..max)
        }
    });
    engine
        .register_type_with_name::<BotApi>("Bot")
        .register_get("name", |b: &mut BotApi| b.0.name.clone())
        .register_get("extension", |b: &mut BotApi| b.0.extension.clone())
        .register_get("vars", |b: &mut BotApi| b.0.vars.clone())
        .register_fn("clients", |b: &mut BotApi| -> rhai::Array {
            lock(&b.0.clients)
                .values()
                .map(|c| client_map(c).into())
                .collect()
        })
        .register_fn("dial", |b: &mut BotApi, number: &str| {
            b.dial(number, Map::new())
        })
        .register_fn("dial", |b: &mut BotApi, number: &str, vars: Map| {
            b.dial(number, vars)
        })
        .register_fn(
            "set_timer",
            |b: &mut BotApi, name: &str, ms: i64| -> ScriptResult<()> {
                let after = wait(ms, "set_timer")?;
                b.0.state.timer_set(name).or_else(error)?;
                let _ =
                    b.0.commands
                        .send(BotCommand::SetTimer(name.to_owned(), after));
                Ok(())
            },
        )
        .register_fn("cancel_timer", |b: &mut BotApi, name: &str| {
            b.0.state.timer_done(name);
            let _ = b.0.commands.send(BotCommand::CancelTimer(name.to_owned()));
        })
        .register_fn(
            "set",
            |b: &mut BotApi, key: &str, value: Dynamic| -> ScriptResult<()> {
                b.0.state.set(key, value).or_else(error)
            },
        )
        .register_fn("get", |b: &mut BotApi, key: &str| b.0.state.get(key))
        .register_fn("log", |b: &mut BotApi, message: &str| {
            tracing::info!(bot = %b.0.name, "{message}");
        });

    engine
        .register_type_with_name::<CallApi>("Call")
        .register_get("id", |c: &mut CallApi| c.info.id.to_string())
        .register_get("direction", |c: &mut CallApi| c.info.direction.as_str())
        .register_get("from", |c: &mut CallApi| c.info.from.clone())
        .register_get("from_name", |c: &mut CallApi| c.info.from_name.clone())
        .register_get("to", |c: &mut CallApi| c.info.to.clone())
        .register_get("state", |c: &mut CallApi| {
            text(c.info.state.map(|s| s.as_str()))
        })
        .register_get("duration_ms", |c: &mut CallApi| {
            c.info.duration().as_millis() as i64
        })
        .register_get("digits", |c: &mut CallApi| c.info.digits.clone())
        .register_get("vars", |c: &mut CallApi| -> Map {
            c.info
                .vars
                .iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
                .collect()
        })
        .register_get("end_reason", |c: &mut CallApi| {
            text(c.info.end.map(|e| e.reason.as_str()))
        })
        .register_get("end_code", |c: &mut CallApi| {
            c.info
                .end
                .and_then(|e| e.code)
                .map_or(0, |code| i64::from(code.0))
        })
        .register_get("gather_reason", |c: &mut CallApi| {
            text(c.info.gather_reason.map(|r| r.as_str()))
        })
        .register_get("play_interrupted", |c: &mut CallApi| {
            c.info.play_interrupted
        })
        .register_get("play_error", |c: &mut CallApi| {
            text(c.info.play_error.as_deref())
        })
        .register_get("recording_error", |c: &mut CallApi| {
            text(c.info.recording_error.as_deref())
        })
        .register_get("machine", |c: &mut CallApi| {
            c.info.machine.as_ref().map_or(Dynamic::UNIT, verdict_value)
        })
        .register_get("beep", |c: &mut CallApi| {
            c.info.beep.as_ref().map_or(Dynamic::UNIT, beep_value)
        })
        .register_fn("detect_machine", |c: &mut CallApi| {
            c.detect_machine(Map::new())
        })
        .register_fn("detect_machine", CallApi::detect_machine)
        .register_fn("say", |c: &mut CallApi, text: &str| c.say(text, Map::new()))
        .register_fn("say", CallApi::say)
        .register_fn("answer", |c: &mut CallApi| c.push(CallCommand::Answer))
        .register_fn("reject", |c: &mut CallApi| c.reject(486))
        .register_fn("reject", CallApi::reject)
        .register_fn("hangup", |c: &mut CallApi| c.queue(Action::Hangup))
        .register_fn("stop", |c: &mut CallApi| c.push(CallCommand::Stop))
        .register_fn("gather", |c: &mut CallApi| c.gather(Map::new()))
        .register_fn("gather", CallApi::gather)
        .register_fn("record", |c: &mut CallApi| c.record(Map::new()))
        .register_fn("record", CallApi::record)
        .register_fn("stop_recording", |c: &mut CallApi| {
            c.push(CallCommand::StopRecording);
        })
        .register_fn("echo", |c: &mut CallApi, on: bool| {
            c.push(CallCommand::Echo(on))
        })
        .register_fn(
            "set_timer",
            |c: &mut CallApi, name: &str, ms: i64| -> ScriptResult<()> {
                let after = wait(ms, "set_timer")?;
                c.store.timer_set(name).or_else(error)?;
                c.push(CallCommand::SetTimer(name.to_owned(), after));
                Ok(())
            },
        )
        .register_fn("cancel_timer", |c: &mut CallApi, name: &str| {
            c.store.timer_done(name);
            c.push(CallCommand::CancelTimer(name.to_owned()));
        })
        .register_fn(
            "set",
            |c: &mut CallApi, key: &str, value: Dynamic| -> ScriptResult<()> {
                c.store.set(key, value).or_else(error)
            },
        )
        .register_fn("get", |c: &mut CallApi, key: &str| c.store.get(key))
        .register_fn("set_result", |c: &mut CallApi, result: &str| {
            c.push(CallCommand::SetResult(result.to_owned()));
        })
        .register_fn("log", CallApi::log)
        .register_fn("play", |c: &mut CallApi, name: &str| {
            c.play(name, Map::new())
        })
        .register_fn("play", CallApi::play)
        .register_fn("pause", |c: &mut CallApi, ms: i64| -> ScriptResult<()> {
            let ms = bounded_ms(ms, "pause", MAX_MEDIA_MS)?;
            c.queue(Action::Pause { ms });
            Ok(())
        })
        .register_fn(
            "tone",
            |c: &mut CallApi, hz: i64, ms: i64| -> ScriptResult<()> {
                c.queue(tone(hz as f64, ms)?);
                Ok(())
            },
        )
        .register_fn(
            "tone",
            |c: &mut CallApi, hz: f64, ms: i64| -> ScriptResult<()> {
                c.queue(tone(hz, ms)?);
                Ok(())
            },
        )
        .register_fn("send_dtmf", CallApi::send_dtmf)
        .register_fn("stream", |c: &mut CallApi, url: &str| {
            c.stream(url, Map::new())
        })
        .register_fn("stream", CallApi::stream)
        .register_fn("stop_stream", |c: &mut CallApi| {
            c.push(CallCommand::StopStream);
        })
        .register_fn("hold", |c: &mut CallApi| c.queue(Action::Hold))
        .register_fn("resume", |c: &mut CallApi| c.queue(Action::Resume))
        .register_fn("transfer", CallApi::transfer)
        .register_fn("attended_transfer", CallApi::attended_transfer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DialPattern;

    /// Runs `source` with `call` and `bot` (whose config sets `detect_machine: { greeting_ms:
    /// 2000 }`) in scope; the commands it gave, or its error.
    fn run(source: &str) -> Result<Vec<CallCommand>, String> {
        let mut engine = super::super::engine::engine("t.rhai", super::super::Limits::default());
        register(&mut engine);
        let (bot_commands, _) = mpsc::unbounded_channel();
        let allow = DialPolicy::new(vec![DialPattern::parse("5??").expect("pattern")]);
        let bot = BotApi::new(
            "t",
            "500",
            &BTreeMap::new(),
            "prompts".into(),
            allow,
            super::super::DEFAULT_MEMORY_BYTES,
            bot_commands,
        )
        .with_detect_machine(Some(AmdSettings {
            greeting_ms: 2000,
            ..AmdSettings::default()
        }));
        let (inbox, _) = call::inbox();
        let sink = Arc::new(CommandSink::buffered(inbox));
        let info = CallInfo::new(
            CallId::random(),
            Direction::Inbound,
            ("502", ""),
            "500",
            BTreeMap::new(),
        );
        let call = CallApi::new(Arc::new(info), sink.clone(), bot.clone(), bot.call_store());
        let mut scope = rhai::Scope::new();
        scope.push("call", call);
        scope.push("bot", bot);
        engine
            .run_with_scope(&mut scope, source)
            .map_err(|e| e.to_string())?;
        Ok(sink.take())
    }

    #[test]
    fn good_values_queue_their_actions() {
        let commands =
            run("call.pause(500); call.tone(440, 200); call.tone(1000.5, 20);").expect("valid");
        assert_eq!(
            commands,
            vec![
                CallCommand::Queue(Action::Pause { ms: 500 }),
                CallCommand::Queue(Action::Tone { hz: 440.0, ms: 200 }),
                CallCommand::Queue(Action::Tone { hz: 1000.5, ms: 20 }),
            ]
        );
        assert_eq!(
            run(r#"call.set_timer("t", 0)"#).expect("valid"),
            vec![CallCommand::SetTimer("t".into(), Duration::ZERO)]
        );
    }

    #[test]
    fn bad_lengths_and_frequencies_are_script_errors_not_zeros() {
        for source in [
            "call.pause(-1)",
            "call.pause(99999999999)",
            "call.tone(440, -5)",
            "call.tone(-440, 100)",
            "call.tone(0, 100)",
            "call.tone(20000, 100)",
            "call.tone(440.0, 99999999999)",
            r#"call.set_timer("t", -1)"#,
            r#"call.set_timer("t", 9223372036854775807)"#,
            r#"bot.set_timer("t", -1)"#,
            r#"call.gather(#{ timeout_ms: 9223372036854775807 })"#,
        ] {
            assert!(run(source).is_err(), "{source} was accepted");
        }
    }

    #[test]
    fn a_stream_queues_its_request_and_bad_options_are_script_errors() {
        let commands = run(
            r#"call.stream("wss://a.example/s", #{ params: #{ n: 1 }, tracks: "both" });
                call.stream("ws://127.0.0.1:9/");
                call.stop_stream();"#,
        )
        .expect("valid");
        let request = StreamRequest {
            url: "wss://a.example/s".into(),
            params: BTreeMap::from([("n".to_owned(), "1".to_owned())]),
            tracks: Tracks::Both,
        };
        let plain = StreamRequest {
            url: "ws://127.0.0.1:9/".into(),
            ..StreamRequest::default()
        };
        assert_eq!(
            commands,
            vec![
                CallCommand::Queue(Action::Stream(request)),
                CallCommand::Queue(Action::Stream(plain)),
                CallCommand::StopStream,
            ]
        );
        let many: Vec<String> = (0..=MAX_STREAM_PARAMS)
            .map(|i| format!("p{i}: 1"))
            .collect();
        let many = format!(
            r#"call.stream("wss://a/", #{{ params: #{{ {} }} }})"#,
            many.join(", ")
        );
        for source in [
            r#"call.stream("https://a.example/")"#,
            r#"call.stream("not a url")"#,
            r#"call.stream("wss://a/", #{ tracks: "outbound" })"#,
            r#"call.stream("wss://a/", #{ params: "x" })"#,
            r#"call.stream("wss://a/", #{ loud: true })"#,
            many.as_str(),
        ] {
            assert!(run(source).is_err(), "{source} was accepted");
        }
    }

    #[test]
    fn stream_events_reach_scripts_as_maps() {
        let value = stream_event_value(&StreamEvent::Closed("bye".into()));
        let map = value.cast::<Map>();
        assert_eq!(map["kind"].to_string(), "closed");
        assert_eq!(map["name"].to_string(), "");
        assert_eq!(map["reason"].to_string(), "bye");
    }

    #[test]
    fn detect_machine_starts_from_the_bots_settings() {
        let commands =
            run("call.detect_machine(#{ max_words: 5, voice_threshold: 0.6 });").expect("valid");
        let [CallCommand::DetectMachine(settings)] = &commands[..] else {
            panic!("{commands:?}");
        };
        assert_eq!(
            (
                settings.greeting_ms,
                settings.max_words,
                settings.voice_threshold
            ),
            (2000, 5, 0.6)
        );
        let error = run("call.detect_machine(#{ greting_ms: 1 });").unwrap_err();
        assert!(error.contains("greting_ms"), "{error}");
        let error = run("call.detect_machine(#{ greeting_ms: \"long\" });").unwrap_err();
        assert!(error.contains("greeting_ms must be a number"), "{error}");
    }

    #[test]
    fn say_is_queued_with_its_voice_and_refuses_what_espeak_must_not_get() {
        let commands =
            run("call.say(\"Hello\"); call.say(\"Bye\", #{ voice: \"en+f3\", rate: 200 });")
                .expect("valid");
        assert_eq!(
            commands,
            [
                CallCommand::Queue(Action::Say(
                    speech::Utterance::new("Hello", "en-us", 160).expect("valid")
                )),
                CallCommand::Queue(Action::Say(
                    speech::Utterance::new("Bye", "en+f3", 200).expect("valid")
                )),
            ]
        );
        for (source, problem) in [
            ("call.say(\"\");", "empty"),
            ("call.say(\"x\", #{ voice: \"--help\" });", "voice"),
            ("call.say(\"x\", #{ rate: 5000 });", "rate"),
            ("call.say(\"x\", #{ speed: 1 });", "unknown option"),
            (
                "let t = \"\"; t.pad(2000, \"y\"); call.say(t);",
                "at most 1000",
            ),
        ] {
            let error = run(source).unwrap_err();
            assert!(error.contains(problem), "{source}: {error}");
        }
    }
}
