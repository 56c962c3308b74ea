//! `callbot check`: validate a config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callbot::config::Config;

use super::EXIT_CONFIG_ERRORS;

/// Validate a bots.yaml and its scripts; report every problem with file, line and key.
///
/// Checks the YAML against the config model (unknown keys are errors), substitutes
/// ${VAR}s from the environment (unset ones are errors), checks that scripts and prompt
/// folders exist, that bot names and extensions are unique and that allow_dial patterns
/// are valid, and compiles every script. Exits 0 when all is valid, 2 when not.
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
    match Config::load(path) {
        Ok(config) => {
            let script_errors: Vec<String> = config
                .bots
                .iter()
                .filter_map(|bot| callbot::script::check(&bot.script).err())
                .map(|e| e.to_string())
                .collect();
            if !script_errors.is_empty() {
                for error in &script_errors {
                    eprintln!("{error}");
                }
                eprintln!(
                    "{}: {} script error(s)",
                    path.display(),
                    script_errors.len()
                );
                return ExitCode::from(EXIT_CONFIG_ERRORS);
            }
            let bots: Vec<String> = config
                .bots
                .iter()
                .map(|bot| format!("{} (extension {})", bot.name, bot.extension))
                .collect();
            println!(
                "{}: OK, {} bot(s): {}",
                path.display(),
                bots.len(),
                bots.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::from(EXIT_CONFIG_ERRORS)
        }
    }
}
