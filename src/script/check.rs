//! `callbot check` for one bot's script: it compiles (with strict variables), and then it is
//! held to the contract and to the bot's config, so that mistakes which would only show when
//! a call comes in show now, each with its file and line:
//!
//! - errors: a function named like a handler that is none (`on_incomming_call`), a handler
//!   with the wrong parameters, a call of a function or method the API does not have, a
//!   literal prompt missing from the bot's prompt folder, a literal `dial`/`transfer` number
//!   outside `allow_dial`, and a `bot.vars.X` (in those places) the config does not give;
//! - warnings: no `on_incoming_call` (every call is rejected with 480), a `bot.vars.X`
//!   elsewhere that the config does not give.
//!
//! What a script computes at run time (a prompt name from digits, a number from a variable)
//! is not second-guessed: only what the script spells out.

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use rhai::{AST, ASTNode, Engine, Expr, FnCallExpr, Position, Stmt};
use tokio::sync::mpsc;

use super::api::{self, BotApi, CallApi};
use super::contract::{HANDLER_PREFIX, HANDLERS, Handler, handler_named};
use super::{Limits, ScriptError, engine, parse, prompts, read};
use crate::config::BotConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a script, where it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: {}", self.message)
    }
}

/// Rhai's own function-like keywords: not registered anywhere, always there.
const KEYWORDS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "eval",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_var",
    "is_def_fn",
];

/// Checks `bot`'s script against the contract and the bot's config; findings in file order.
pub fn check_bot(bot: &BotConfig) -> Vec<Finding> {
    let (engine, ast, text) = match compile(bot) {
        Ok(compiled) => compiled,
        Err(error) => return vec![Finding::from(error)],
    };
    let file = bot.script.display().to_string();
    let mut checker = Checker::new(bot, file, &engine, &ast, &text);
    checker.handlers();
    checker.bodies(&ast, &text);
    let mut findings = checker.findings;
    findings.sort();
    findings.dedup();
    findings
}

/// The script compiled as the daemon would for this bot, but with literals and positions as
/// written (no optimisation).
fn compile(bot: &BotConfig) -> Result<(Engine, AST, String), ScriptError> {
    let file = bot.script.display().to_string();
    let text = read(&bot.script)?;
    let api = BotApi::for_bot(bot, mpsc::unbounded_channel().0);
    let mut engine = engine::engine(&file, Limits::default());
    api::register(&mut engine);
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    let ast = parse(&engine, &file, &text, &api)?;
    Ok((engine, ast, text))
}

impl From<ScriptError> for Finding {
    fn from(error: ScriptError) -> Self {
        match error {
            ScriptError::Compile {
                file,
                line,
                column,
                message,
            } => Finding {
                file,
                line,
                column,
                severity: Severity::Error,
                message,
            },
            ScriptError::Unreadable { path, problem } => Finding {
                file: path,
                line: None,
                column: None,
                severity: Severity::Error,
                message: problem,
            },
        }
    }
}

fn finding(file: &str, at: Position, severity: Severity, message: String) -> Finding {
    Finding {
        file: file.to_owned(),
        line: at.line(),
        column: at.position(),
        severity,
        message,
    }
}

/// Names by arity: what a script may call.
type Arities = HashMap<String, BTreeSet<usize>>;

struct Checker<'a> {
    bot: &'a BotConfig,
    file: String,
    /// Every function the engine has, by name: arities (a method's receiver counts).
    functions: Arities,
    /// Methods and properties (`get$name`) of `call` and `bot`, arities with the receiver.
    call_methods: Arities,
    bot_methods: Arities,
    /// The script's own functions.
    script: Arities,
    /// Where each script function is defined.
    lines: HashMap<String, usize>,
    /// Every variable and parameter name the script declares: a call through one of them is
    /// a function pointer's, not a missing function.
    locals: HashSet<String>,
    findings: Vec<Finding>,
}

impl<'a> Checker<'a> {
    fn new(bot: &'a BotConfig, file: String, engine: &Engine, ast: &AST, text: &str) -> Self {
        let signatures = engine.collect_fn_metadata(
            None,
            |info| {
                let metadata = info.metadata;
                let receiver = metadata.param_types.first().copied();
                Some((metadata.name.to_string(), metadata.num_params, receiver))
            },
            true,
        );
        let (mut functions, mut call_methods, mut bot_methods) =
            (Arities::new(), Arities::new(), Arities::new());
        for (name, arity, receiver) in signatures {
            if receiver == Some(TypeId::of::<CallApi>()) {
                call_methods.entry(name.clone()).or_default().insert(arity);
            }
            if receiver == Some(TypeId::of::<BotApi>()) {
                bot_methods.entry(name.clone()).or_default().insert(arity);
            }
            functions.entry(name).or_default().insert(arity);
        }
        let mut script = Arities::new();
        let mut locals = HashSet::new();
        for function in ast.iter_functions() {
            script
                .entry(function.name.to_owned())
                .or_default()
                .insert(function.params.len());
            locals.extend(function.params.iter().map(|p| (*p).to_owned()));
        }
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Stmt(stmt)) = path.last() {
                match stmt {
                    Stmt::Var(var, ..) => {
                        locals.insert(var.0.name.to_string());
                    }
                    Stmt::For(for_loop, _) => {
                        locals.insert(for_loop.0.name.to_string());
                        if let Some(counter) = &for_loop.1 {
                            locals.insert(counter.name.to_string());
                        }
                    }
                    _ => {}
                }
            }
            true
        });
        Self {
            bot,
            file,
            functions,
            call_methods,
            bot_methods,
            script,
            lines: engine::function_lines(text),
            locals,
            findings: Vec::new(),
        }
    }

    fn report(&mut self, at: Position, severity: Severity, message: String) {
        self.findings
            .push(finding(&self.file, at, severity, message));
    }

    /// At a function's definition (positions of definitions are not kept in the AST).
    fn report_at_fn(&mut self, name: &str, severity: Severity, message: String) {
        let line = self.lines.get(name).copied();
        self.findings.push(Finding {
            file: self.file.clone(),
            line,
            column: None,
            severity,
            message,
        });
    }

    /// Script functions named like handlers must be handlers, with the contract's parameters.
    fn handlers(&mut self) {
        let defined: Vec<(String, usize)> = self
            .script
            .iter()
            .flat_map(|(name, arities)| arities.iter().map(move |a| (name.clone(), *a)))
            .filter(|(name, _)| !name.contains('$')) // closures
            .collect();
        for (name, arity) in defined {
            match handler_named(&name) {
                Some(handler) if handler.params.len() != arity => {
                    let message = format!(
                        "{name} has {arity} parameter(s); the daemon calls {}",
                        handler.signature()
                    );
                    self.report_at_fn(&name, Severity::Error, message);
                }
                Some(_) => {}
                None => {
                    let names = HANDLERS.iter().map(|h| h.name);
                    let near = suggest(&name, names);
                    if name.starts_with(HANDLER_PREFIX) || near.is_some() {
                        let hint = near.map_or_else(
                            || format!(" (handlers: {})", handler_list()),
                            |near| format!("; did you mean {near}?"),
                        );
                        let message =
                            format!("{name} is not a handler, so the daemon never calls it{hint}");
                        self.report_at_fn(&name, Severity::Error, message);
                    }
                }
            }
        }
        if !self.script.contains_key("on_incoming_call") {
            let message = format!(
                "bot {}: the script has no on_incoming_call, so every call to {} is rejected \
                 with 480",
                self.bot.name, self.bot.extension
            );
            self.findings.push(Finding {
                file: self.file.clone(),
                line: None,
                column: None,
                severity: Severity::Warning,
                message,
            });
        }
    }

    /// Every expression of the script, knowing which names are `call` objects where it is.
    fn bodies(&mut self, ast: &AST, text: &str) {
        let scopes = call_scopes(text);
        // A node's parent is visited first: what a parent checked, its children skip.
        let mut checked = HashSet::new();
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(expr)) = path.last() {
                let line = expr.position().line().unwrap_or(0);
                let calls = scopes
                    .iter()
                    .rev()
                    .find(|(start, _)| *start <= line)
                    .map(|(_, calls)| calls);
                self.expr(expr, calls.unwrap_or(&HashSet::new()), &mut checked);
            }
            true
        });
    }

    fn expr(&mut self, expr: &Expr, calls: &HashSet<String>, checked: &mut HashSet<Position>) {
        match expr {
            Expr::FnCall(call, at) => self.function(call, *at),
            Expr::Dot(chain, ..) => {
                if let Some(name) = variable(&chain.lhs) {
                    let receiver = if calls.contains(name) {
                        Some(Receiver::Call)
                    } else if name == "bot" {
                        Some(Receiver::Bot)
                    } else {
                        None
                    };
                    if let Some(receiver) = receiver {
                        self.member(receiver, first_link(&chain.rhs), checked);
                    }
                }
                if let Some((name, at)) = bot_var(expr)
                    && !checked.contains(&at)
                    && !self.bot.vars.contains_key(name)
                {
                    let message = format!("{}: it is () here", self.missing_var(name));
                    self.report(at, Severity::Warning, message);
                }
            }
            _ => {}
        }
    }

    /// A call of a function that is not a method.
    fn function(&mut self, call: &FnCallExpr, at: Position) {
        let name = call.name.as_str();
        if call.op_token.is_some()
            || !call.namespace.is_empty()
            || !is_identifier(name)
            || KEYWORDS.contains(&name)
            || self.locals.contains(name)
        {
            return;
        }
        let arity = call.args.len();
        let arities: BTreeSet<usize> = [&self.functions, &self.script]
            .into_iter()
            .filter_map(|known| known.get(name))
            .flatten()
            .copied()
            .collect();
        if arities.contains(&arity) {
            return;
        }
        let message = if arities.is_empty() {
            let names = self
                .functions
                .keys()
                .chain(self.script.keys())
                .map(String::as_str)
                .filter(|n| is_identifier(n));
            let hint =
                suggest(name, names).map_or_else(String::new, |n| format!("; did you mean {n}?"));
            format!("there is no function {name}{hint}")
        } else {
            format!("{name} takes {} argument(s), not {arity}", list(&arities))
        };
        self.report(at, Severity::Error, message);
    }

    /// The first member used on a `call` or `bot`: a method or a property it must have, and
    /// the literal arguments the config can vouch for.
    fn member(&mut self, receiver: Receiver, link: &Expr, checked: &mut HashSet<Position>) {
        let methods = match receiver {
            Receiver::Call => &self.call_methods,
            Receiver::Bot => &self.bot_methods,
        };
        let (name, arity, at) = match link {
            Expr::MethodCall(call, at) => (call.name.to_string(), Some(call.args.len() + 1), *at),
            Expr::Property(property, at) => (property.2.to_string(), None, *at),
            _ => return,
        };
        checked.insert(at);
        let problem = match arity {
            Some(arity) => match methods.get(&name) {
                Some(arities) if arities.contains(&arity) => None,
                // A script function called as a method, with `this`.
                _ if self
                    .script
                    .get(&name)
                    .is_some_and(|a| a.contains(&(arity - 1))) =>
                {
                    None
                }
                Some(arities) => Some(format!(
                    "{}.{name} takes {} argument(s), not {}",
                    receiver.noun(),
                    list(&arities.iter().map(|a| a - 1).collect()),
                    arity - 1
                )),
                None => Some(format!("{} has no method {name}", receiver.noun())),
            },
            None if methods.contains_key(&format!("get${name}")) => None,
            None => Some(format!("{} has no property {name}", receiver.noun())),
        };
        if let Some(problem) = problem {
            let members = methods
                .keys()
                .map(|n| n.strip_prefix("get$").unwrap_or(n))
                .filter(|n| is_identifier(n));
            let hint = suggest(&name, members)
                .map_or_else(String::new, |n| format!("; did you mean {n}?"));
            self.report(at, Severity::Error, format!("{problem}{hint}"));
            return;
        }
        let Expr::MethodCall(call, _) = link else {
            return;
        };
        match (receiver, name.as_str(), call.args.first()) {
            (Receiver::Call, "play", Some(prompt)) => self.prompt(prompt, checked),
            (Receiver::Call, "gather", Some(Expr::Map(map, _))) => {
                if let Some((_, prompt)) = map.0.iter().find(|(key, _)| key.name == "prompt") {
                    self.prompt(prompt, checked);
                }
            }
            (Receiver::Call, "transfer", Some(number)) => {
                self.number("transfer to", number, checked)
            }
            (Receiver::Bot, "dial", Some(number)) => self.number("dialling", number, checked),
            _ => {}
        }
    }

    /// What a literal argument (or `bot.vars.X`) is, when the script says.
    fn value(
        &mut self,
        expr: &Expr,
        checked: &mut HashSet<Position>,
    ) -> Option<(String, Position)> {
        if let Expr::StringConstant(text, at) = expr {
            return Some((text.to_string(), *at));
        }
        let (name, at) = bot_var(expr)?;
        checked.insert(at);
        match self.bot.vars.get(name) {
            Some(value) => Some((value.clone(), at)),
            None => {
                let message = format!("{}: the call gets () and fails", self.missing_var(name));
                self.report(at, Severity::Error, message);
                None
            }
        }
    }

    fn prompt(&mut self, expr: &Expr, checked: &mut HashSet<Position>) {
        let Some((name, at)) = self.value(expr, checked) else {
            return;
        };
        let folder = prompts::root(&self.bot.prompts);
        let problem = match prompts::resolve(&folder, &name) {
            Err(problem) => problem,
            Ok(path) if path.is_file() => return,
            Ok(_) => {
                let present = prompt_files(&folder);
                let hint = suggest(&name, present.iter().map(String::as_str))
                    .map_or_else(String::new, |n| format!("; did you mean {n}?"));
                format!(
                    "prompt {name:?} is not in bot {}'s prompt folder {}{hint}",
                    self.bot.name,
                    self.bot.prompts.display()
                )
            }
        };
        self.report(at, Severity::Error, problem);
    }

    fn number(&mut self, what: &str, expr: &Expr, checked: &mut HashSet<Position>) {
        let Some((number, at)) = self.value(expr, checked) else {
            return;
        };
        if !self.bot.allow_dial.allows(&number) {
            let message = format!(
                "{what} {number:?} is refused: not in allow_dial of bot {}",
                self.bot.name
            );
            self.report(at, Severity::Error, message);
        }
    }

    fn missing_var(&self, name: &str) -> String {
        let given: Vec<&str> = self.bot.vars.keys().map(String::as_str).collect();
        let given = if given.is_empty() {
            "none".to_owned()
        } else {
            given.join(", ")
        };
        format!(
            "bot.vars.{name} is not in bot {}'s vars (it has: {given})",
            self.bot.name
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    Call,
    Bot,
}

impl Receiver {
    fn noun(self) -> &'static str {
        match self {
            Receiver::Call => "call",
            Receiver::Bot => "bot",
        }
    }
}

/// Where each function starts (its `fn` line) and which of its parameters are `call` objects:
/// those a handler gets as `call` by the contract.
fn call_scopes(text: &str) -> Vec<(usize, HashSet<String>)> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let rest = line.trim_start();
            let rest = rest.strip_prefix("private ").unwrap_or(rest);
            let (name, params) = rest.strip_prefix("fn ")?.split_once('(')?;
            let params: Vec<&str> = params
                .split(')')
                .next()?
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let calls = handler_named(name.trim())
                .filter(|handler| handler.params.len() == params.len())
                .map(|handler: &Handler| {
                    params
                        .iter()
                        .enumerate()
                        .filter(|(index, _)| handler.is_call(*index))
                        .map(|(_, name)| (*name).to_owned())
                        .collect()
                })
                .unwrap_or_default();
            Some((index + 1, calls))
        })
        .collect()
}

/// The name of a plain variable.
fn variable(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Variable(variable, ..) if variable.2.is_empty() => Some(variable.1.as_str()),
        _ => None,
    }
}

/// The first member of a chain (`vars` in `bot.vars.x`).
fn first_link(expr: &Expr) -> &Expr {
    match expr {
        Expr::Dot(chain, ..) => &chain.lhs,
        other => other,
    }
}

/// `X` and where it is, for an expression `bot.vars.X`.
fn bot_var(expr: &Expr) -> Option<(&str, Position)> {
    let Expr::Dot(chain, ..) = expr else {
        return None;
    };
    if variable(&chain.lhs) != Some("bot") {
        return None;
    }
    let Expr::Dot(vars, ..) = &chain.rhs else {
        return None;
    };
    match (&vars.lhs, first_link(&vars.rhs)) {
        (Expr::Property(first, _), Expr::Property(second, at)) if first.2 == "vars" => {
            Some((second.2.as_str(), *at))
        }
        _ => None,
    }
}

fn is_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// `1 or 2`.
fn list(arities: &BTreeSet<usize>) -> String {
    let all: Vec<String> = arities.iter().map(usize::to_string).collect();
    all.join(" or ")
}

fn handler_list() -> String {
    let names: Vec<&str> = HANDLERS.iter().map(|h| h.name).collect();
    names.join(", ")
}

/// The closest of `candidates` to `name`, if one is close enough to be a likely misspelling.
fn suggest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.chars().count() / 4).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|candidate| *candidate != name)
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// The file names in a prompt folder (for "did you mean").
fn prompt_files(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
