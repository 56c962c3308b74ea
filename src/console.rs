//! The terminal: progress bars (campaign, bench, dial) and log lines share stderr without
//! tearing each other. Every bar is drawn through one [`MultiProgress`]; log lines are written
//! with the bars lifted, so a log line never lands in the middle of a bar. When stderr is not a
//! terminal no bar is drawn at all.

use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// A bar of `total` steps drawn with `template` (indicatif's syntax), redrawn a few times a
/// second so a bar whose message changes keeps up.
pub fn bar(total: u64, template: &str) -> ProgressBar {
    let bar = BARS.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// A spinner with a message (a call in progress).
pub fn spinner() -> ProgressBar {
    let spinner = BARS.add(ProgressBar::new_spinner());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(Duration::from_millis(250));
    spinner
}

/// Prints a line on stdout with the bars lifted (a result a script may read, even while a
/// bar is drawn on the terminal).
pub fn println(line: &str) {
    BARS.suspend(|| println!("{line}"));
}

/// Writes to stderr with the bars lifted (under tracing's writer).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        BARS.suspend(|| std::io::stderr().write_all(bytes))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `3m 05s`, `42s`, `1h 02m`: a duration as a person reads it.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(185)), "3m 05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h 02m");
    }
}
