//! The `callbot` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use callbot::config::Config;

/// Exit status for a config with errors, so scripts can tell it from a crash (1).
const EXIT_CONFIG_ERRORS: u8 = 2;

#[derive(Parser)]
#[command(
    name = "callbot",
    version,
    about = "Call-automation bots for PBXs that speak the Vodia websocket protocol",
    long_about = "Call-automation bots for PBXs that speak the Vodia websocket protocol.\n\n\
        Each bot is one PBX extension with its own websocket and a Rhai script that answers, \
        dials, plays prompts, collects DTMF, transfers and records calls. Bots are listed in a \
        YAML file (see bots.example.yaml and the README)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a bots.yaml and report every problem with file, line and key.
    ///
    /// Checks the YAML against the config model (unknown keys are errors), substitutes
    /// ${VAR}s from the environment (unset ones are errors), checks that scripts and prompt
    /// folders exist, that bot names and extensions are unique and that allow_dial patterns
    /// are valid. Exits 0 when the file is valid, 2 when it is not.
    Check {
        /// The config file.
        #[arg(short, long, value_name = "FILE", default_value = "bots.yaml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => check(&config),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
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
