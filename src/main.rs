//! The `callbot` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A file-size limit (RLIMIT_FSIZE) must make a write fail, not kill the daemon: recordings
    // report the error and the calls go on.
    // SAFETY: setting a signal's disposition to "ignore" has no other effect.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = cli::Cli::parse();
    cli::init_logging(cli.verbose, cli.log_format, cli.watched());
    cli.run()
}
