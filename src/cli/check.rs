//! `callbot check`: validate a config.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callbot::config::Config;
use callbot::script::{Finding, Severity, check_bot};

use super::EXIT_CONFIG_ERRORS;

/// Validate a bots.yaml and its scripts; report every problem with file, line and key.
///
/// Checks the YAML against the config model (unknown keys are errors), substitutes
/// ${VAR}s from the environment (unset ones are errors), checks that scripts and prompt
/// folders exist, that bot names and extensions are unique and that allow_dial patterns
/// are valid. Then each bot's script: it compiles (undeclared variables are errors), its
/// handlers are those of the scripting contract (a misspelt one gets "did you mean"), every
/// function and `call`/`bot` method it calls exists, every prompt it names is in the bot's
/// prompt folder, and every number it dials or transfers to is in the bot's allow_dial.
/// Warnings (a bot without on_incoming_call rejects every call) do not fail the check.
/// Exits 0 when there are no errors, 2 when there are.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE", default_value = "bots.yaml")]
    config: PathBuf,
}

pub fn run(args: &CheckArgs) -> ExitCode {
    check(&args.config)
}

fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            return ExitCode::from(EXIT_CONFIG_ERRORS);
        }
    };
    // Bots sharing a script would report its own problems once each.
    let findings: BTreeSet<Finding> = config.bots.iter().flat_map(check_bot).collect();
    for finding in &findings {
        eprintln!("{finding}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if errors > 0 {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s)",
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG_ERRORS);
    }
    let bots: Vec<String> = config
        .bots
        .iter()
        .map(|bot| format!("{} (extension {})", bot.name, bot.extension))
        .collect();
    let warned = if warnings > 0 {
        format!(" ({warnings} warning(s))")
    } else {
        String::new()
    };
    println!(
        "{}: OK{warned}, {} bot(s): {}",
        path.display(),
        bots.len(),
        bots.join(", ")
    );
    ExitCode::SUCCESS
}
