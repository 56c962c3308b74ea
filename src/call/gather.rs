//! Digit collection (`call.gather`, docs/scripting.md "Immediate commands"): up to `max` digits,
//! ended early by the terminator, or by silence — `timeout` after the prompt for the first digit,
//! `interdigit` between digits.

use std::time::Duration;

/// `gather()` options, with the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GatherOptions {
    pub max: usize,
    pub timeout: Duration,
    pub interdigit: Duration,
    pub terminator: Option<char>,
    /// Played first (a path already resolved in the prompt folder).
    pub prompt: Option<std::path::PathBuf>,
    /// A digit cuts the prompt off.
    pub barge_in: bool,
}

impl Default for GatherOptions {
    fn default() -> Self {
        Self {
            max: 1,
            timeout: Duration::from_millis(5000),
            interdigit: Duration::from_millis(3000),
            terminator: Some('#'),
            prompt: None,
            barge_in: true,
        }
    }
}

/// Why a gather ended (`call.gather_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatherReason {
    Max,
    Terminator,
    Timeout,
}

impl GatherReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GatherReason::Max => "max",
            GatherReason::Terminator => "terminator",
            GatherReason::Timeout => "timeout",
        }
    }
}

/// What a finished gather hands the script (`on_digits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gathered {
    pub digits: String,
    pub reason: GatherReason,
}

/// What to do after a digit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatherStep {
    /// Keep collecting; (re)start the timer with this duration; cut the prompt when asked.
    Continue {
        wait: Duration,
        cut_prompt: bool,
    },
    Done(Gathered),
}

#[derive(Debug)]
pub struct Gather {
    options: GatherOptions,
    digits: String,
    prompt_playing: bool,
}

impl Gather {
    /// Starts collecting. Returns the gather and the timer to start now (none while the
    /// prompt plays: the timeout counts from its end).
    pub fn start(options: GatherOptions) -> (Self, Option<Duration>) {
        let prompt_playing = options.prompt.is_some();
        let wait = (!prompt_playing).then_some(options.timeout);
        (
            Self {
                options,
                digits: String::new(),
                prompt_playing,
            },
            wait,
        )
    }

    pub fn prompt(&self) -> Option<&std::path::Path> {
        self.options.prompt.as_deref()
    }

    /// The prompt ended: the first-digit timeout starts, unless digits are already coming.
    pub fn prompt_done(&mut self) -> Option<Duration> {
        let was_playing = std::mem::replace(&mut self.prompt_playing, false);
        (was_playing && self.digits.is_empty()).then_some(self.options.timeout)
    }

    pub fn digit(&mut self, digit: char) -> GatherStep {
        if self.options.terminator == Some(digit) {
            return GatherStep::Done(self.done(GatherReason::Terminator));
        }
        self.digits.push(digit);
        if self.digits.chars().count() >= self.options.max {
            return GatherStep::Done(self.done(GatherReason::Max));
        }
        let cut_prompt = self.prompt_playing && self.options.barge_in;
        if cut_prompt {
            self.prompt_playing = false;
        }
        GatherStep::Continue {
            wait: self.options.interdigit,
            cut_prompt,
        }
    }

    /// The timer ran out.
    pub fn timed_out(&mut self) -> Gathered {
        self.done(GatherReason::Timeout)
    }

    fn done(&mut self, reason: GatherReason) -> Gathered {
        Gathered {
            digits: std::mem::take(&mut self.digits),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max: usize, prompt: bool) -> GatherOptions {
        GatherOptions {
            max,
            prompt: prompt.then(|| "menu.wav".into()),
            ..GatherOptions::default()
        }
    }

    #[test]
    fn without_prompt_the_timeout_starts_now() {
        let (_, wait) = Gather::start(options(1, false));
        assert_eq!(wait, Some(Duration::from_secs(5)));
    }

    #[test]
    fn with_prompt_the_timeout_starts_when_it_ends() {
        let (mut gather, wait) = Gather::start(options(1, true));
        assert_eq!(wait, None);
        assert_eq!(gather.prompt_done(), Some(Duration::from_secs(5)));
        assert_eq!(gather.prompt_done(), None);
    }

    #[test]
    fn max_digits_end_it() {
        let (mut gather, _) = Gather::start(options(2, false));
        assert!(matches!(
            gather.digit('1'),
            GatherStep::Continue {
                cut_prompt: false,
                ..
            }
        ));
        assert_eq!(
            gather.digit('2'),
            GatherStep::Done(Gathered {
                digits: "12".into(),
                reason: GatherReason::Max
            })
        );
    }

    #[test]
    fn terminator_ends_it_and_is_not_a_digit() {
        let (mut gather, _) = Gather::start(options(4, false));
        gather.digit('7');
        assert_eq!(
            gather.digit('#'),
            GatherStep::Done(Gathered {
                digits: "7".into(),
                reason: GatherReason::Terminator
            })
        );
    }

    #[test]
    fn first_digit_cuts_the_prompt_and_starts_the_interdigit_timer() {
        let (mut gather, _) = Gather::start(options(3, true));
        assert_eq!(
            gather.digit('5'),
            GatherStep::Continue {
                wait: Duration::from_secs(3),
                cut_prompt: true
            }
        );
        assert_eq!(
            gather.prompt_done(),
            None,
            "digits are coming: no first-digit timeout"
        );
        assert_eq!(
            gather.timed_out(),
            Gathered {
                digits: "5".into(),
                reason: GatherReason::Timeout
            }
        );
    }
}
