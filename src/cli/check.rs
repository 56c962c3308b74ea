//! `callbot check`: validate a config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callbot::config::Config;

/// Exit status for a config with errors, so scripts can tell it from a crash (1).
const EXIT_CONFIG_ERRORS: u8 = 2;

/// Validate a bots.yaml and report every problem with file, line and key.
///
/// Checks the YAML against the config model (unknown keys are errors), substitutes
/// ${VAR}s from the environment (unset ones are errors), checks that scripts and prompt
/// folders exist, that bot names and extensions are unique and that allow_dial patterns
/// are valid. Exits 0 when the file is valid, 2 when it is not.
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
