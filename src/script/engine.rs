//! The Rhai engine every bot's script runs in: sandboxed (no files, modules, network or
//! processes: Rhai has none unless given), with strict variables, the budgets of
//! docs/scripting.md "Limits and errors", and `print`/`debug` routed to the log.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, Token};

/// Budgets per handler run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub operations: u64,
    pub call_depth: usize,
    pub string_bytes: usize,
    pub collection_items: usize,
    /// Wall-clock time a handler may take.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            operations: 1_000_000,
            call_depth: 64,
            string_bytes: 1 << 20,
            collection_items: 10_000,
            time: Duration::from_secs(1),
        }
    }
}

thread_local! {
    /// When the handler running on this thread must stop.
    static DEADLINE: RefCell<Option<Instant>> = const { RefCell::new(None) };
}

/// Runs `f` (a handler) with the time budget armed.
pub fn with_deadline<T>(budget: Duration, f: impl FnOnce() -> T) -> T {
    let previous = DEADLINE.with(|d| d.replace(Some(Instant::now() + budget)));
    let result = f();
    DEADLINE.with(|d| *d.borrow_mut() = previous);
    result
}

/// Operations between two looks at the clock.
const CLOCK_EVERY: u64 = 4096;

/// A fresh engine with limits and the sandbox, logging `print`/`debug` under `script`.
pub fn engine(script: &str, limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine.set_module_resolver(DummyModuleResolver::new());
    // A misspelt variable is a compile error, not a `()` that fails (or worse, does not) at
    // run time. `bot` is declared to the compiler as a constant (see `compile`).
    engine.set_strict_variables(true);
    // Rhai reserves `call` (for function pointers), but the scripting contract names every
    // call handler's parameter `call`: let it be an ordinary name. `f.call(x)` keeps working,
    // as method calls are dispatched by name. (`on_parse_token` is marked volatile upstream.)
    #[allow(deprecated)]
    engine.on_parse_token(|token, _, _| match token {
        Token::Reserved(word) if word.as_str() == "call" => Token::Identifier(word),
        other => other,
    });
    engine.set_max_operations(limits.operations);
    engine.set_max_call_levels(limits.call_depth);
    engine.set_max_expr_depths(limits.call_depth, limits.call_depth);
    engine.set_max_string_size(limits.string_bytes);
    engine.set_max_array_size(limits.collection_items);
    engine.set_max_map_size(limits.collection_items);
    engine.on_progress(|operations| {
        if operations % CLOCK_EVERY != 0 {
            return None;
        }
        let late = DEADLINE.with(|d| d.borrow().is_some_and(|at| Instant::now() > at));
        late.then(|| Dynamic::from("the handler ran over its time budget"))
    });
    let name = script.to_owned();
    engine.on_print(move |text| tracing::info!(script = %name, "{text}"));
    let name = script.to_owned();
    engine.on_debug(move |text, _source, position| {
        tracing::info!(script = %name, line = position.line().unwrap_or(0), "{text}");
    });
    engine
}

/// `file:line:column: message` for an error, from the innermost position Rhai knows (an error
/// inside a function is reported where it happened, not where the function was called). Some
/// errors carry no position (a budget running out inside a handler): `handler_line`, where
/// the handler is defined, is named instead.
pub fn describe(file: &str, error: &EvalAltResult, handler_line: Option<usize>) -> String {
    let mut inner = error;
    let mut position = error.position();
    while let EvalAltResult::ErrorInFunctionCall(_, _, cause, at) = inner {
        if !at.is_none() {
            position = *at;
        }
        inner = cause;
        if !inner.position().is_none() {
            position = inner.position();
        }
    }
    let message = match inner {
        EvalAltResult::ErrorTerminated(value, _) => value.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => {
            "the handler ran over its operations budget".to_owned()
        }
        other => strip_position(&other.to_string()),
    };
    match (position.line(), position.position(), handler_line) {
        (Some(line), Some(column), _) => format!("{file}:{line}:{column}: {message}"),
        (Some(line), None, _) | (None, _, Some(line)) => format!("{file}:{line}: {message}"),
        (None, _, None) => format!("{file}: {message}"),
    }
}

/// The line of each `fn name(` at the start of a line, for [`describe`].
pub fn function_lines(source: &str) -> std::collections::HashMap<String, usize> {
    source
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let rest = line.trim_start().strip_prefix("fn ")?;
            let name = rest.split('(').next()?.trim();
            Some((name.to_owned(), index + 1))
        })
        .collect()
}

/// Rhai appends ` (line N, position M)` to messages; the prefix says it already.
fn strip_position(message: &str) -> String {
    match message.rfind(" (line ") {
        Some(index) if message.ends_with(')') => message[..index].to_owned(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_hit_the_operation_budget() {
        let engine = engine(
            "t.rhai",
            Limits {
                operations: 10_000,
                ..Limits::default()
            },
        );
        let error = engine.run("loop {}").unwrap_err();
        assert!(
            describe("t.rhai", &error, None).contains("t.rhai:1:"),
            "{error}"
        );
    }

    #[test]
    fn the_time_budget_stops_a_slow_handler() {
        let engine = engine(
            "t.rhai",
            Limits {
                operations: u64::MAX,
                ..Limits::default()
            },
        );
        let result = with_deadline(Duration::from_millis(50), || engine.run("loop {}"));
        let text = describe("t.rhai", &result.unwrap_err(), None);
        assert!(text.contains("time budget"), "{text}");
    }

    #[test]
    fn call_is_an_ordinary_name_and_function_pointers_still_work() {
        let engine = engine("t.rhai", Limits::default());
        let value: i64 = engine
            .eval("fn twice(x) { x * 2 }\nfn f(call) { call + 1 }\nlet g = Fn(\"twice\");\nf(1) + g.call(5)")
            .unwrap();
        assert_eq!(value, 12);
    }

    #[test]
    fn errors_without_a_position_name_the_handler_line() {
        let source = "// budget\nfn on_start() {\n  loop {}\n}\n";
        let lines = function_lines(source);
        assert_eq!(lines["on_start"], 2);
        let error = EvalAltResult::ErrorTooManyOperations(rhai::Position::NONE);
        assert_eq!(
            describe("t.rhai", &error, lines.get("on_start").copied()),
            "t.rhai:2: the handler ran over its operations budget"
        );
    }

    #[test]
    fn modules_cannot_be_imported() {
        let engine = engine("t.rhai", Limits::default());
        assert!(engine.run(r#"import "/etc/passwd" as p;"#).is_err());
    }

    #[test]
    fn errors_inside_functions_name_their_own_line() {
        let engine = engine("t.rhai", Limits::default());
        let error = engine
            .run("fn boom() {\n  let x = 1;\n  throw \"bad\";\n}\nboom();")
            .unwrap_err();
        let text = describe("t.rhai", &error, None);
        assert!(text.starts_with("t.rhai:3:"), "{text}");
        assert!(text.contains("bad"), "{text}");
    }
}
