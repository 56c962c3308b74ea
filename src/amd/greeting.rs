//! The greeting analysis of Asterisk's `AMD()`, sans-IO: fed one voice-detector frame at a
//! time (speech or not, and its length), it tells a person's short "Hello?" followed by silence
//! from a machine's long greeting, many words, one endless word or a silent start.

use super::settings::AmdSettings;

/// What answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AmdResult {
    Human,
    Machine,
    #[serde(rename = "NOTSURE")]
    NotSure,
}

impl AmdResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AmdResult::Human => "HUMAN",
            AmdResult::Machine => "MACHINE",
            AmdResult::NotSure => "NOTSURE",
        }
    }
}

/// Why: the rule that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmdReason {
    /// HUMAN: a short greeting, then silence (waiting for the caller).
    ShortGreeting,
    /// MACHINE: nothing said for `initial_silence_ms`.
    InitialSilence,
    /// MACHINE: more than `greeting_ms` of speech.
    LongGreeting,
    /// MACHINE: `max_words` words.
    TooManyWords,
    /// MACHINE: one word longer than `max_word_ms`.
    LongWord,
    /// NOTSURE: `total_analysis_ms` passed without a decision.
    TooLong,
    /// NOTSURE: no audio arrived from the far end in time.
    NoAudio,
}

impl AmdReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AmdReason::ShortGreeting => "short_greeting",
            AmdReason::InitialSilence => "initial_silence",
            AmdReason::LongGreeting => "long_greeting",
            AmdReason::TooManyWords => "too_many_words",
            AmdReason::LongWord => "long_word",
            AmdReason::TooLong => "too_long",
            AmdReason::NoAudio => "no_audio",
        }
    }
}

/// The decision, and how far into the audio it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub result: AmdResult,
    pub reason: AmdReason,
    pub ms: u32,
}

/// One call's greeting analysis.
#[derive(Debug)]
pub struct GreetingAnalysis {
    settings: AmdSettings,
    total_ms: u32,
    /// Silence since the last speech.
    silence_ms: u32,
    /// All speech so far.
    voice_ms: u32,
    /// Speech since the last silence of `between_words_ms`.
    word_ms: u32,
    words: u32,
    in_word: bool,
    /// Nothing said yet.
    in_initial_silence: bool,
    verdict: Option<Verdict>,
}

impl GreetingAnalysis {
    pub fn new(settings: AmdSettings) -> Self {
        Self {
            settings,
            total_ms: 0,
            silence_ms: 0,
            voice_ms: 0,
            word_ms: 0,
            words: 0,
            in_word: false,
            in_initial_silence: true,
            verdict: None,
        }
    }

    /// The verdict, once there is one.
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// One frame of `ms` that is speech or not; the verdict when this frame decides.
    pub fn push(&mut self, speech: bool, ms: u32) -> Option<Verdict> {
        if self.verdict.is_some() {
            return None;
        }
        self.total_ms += ms;
        let decided = if speech {
            self.speech(ms)
        } else {
            self.silence(ms)
        };
        let decided = decided.or_else(|| {
            (self.total_ms >= self.settings.total_analysis_ms)
                .then_some((AmdResult::NotSure, AmdReason::TooLong))
        });
        self.verdict = decided.map(|(result, reason)| Verdict {
            result,
            reason,
            ms: self.total_ms,
        });
        self.verdict
    }

    /// Not enough audio came in time (`ms` after the start): NOTSURE, unless already decided.
    pub fn no_audio(&mut self, ms: u32) -> Option<Verdict> {
        if self.verdict.is_some() {
            return None;
        }
        self.verdict = Some(Verdict {
            result: AmdResult::NotSure,
            reason: AmdReason::NoAudio,
            ms: ms.max(self.total_ms),
        });
        self.verdict
    }

    fn silence(&mut self, ms: u32) -> Option<(AmdResult, AmdReason)> {
        let s = &self.settings;
        self.silence_ms += ms;
        if self.silence_ms >= s.between_words_ms {
            self.in_word = false;
            self.word_ms = 0;
        }
        if self.in_initial_silence && self.silence_ms >= s.initial_silence_ms {
            return Some((AmdResult::Machine, AmdReason::InitialSilence));
        }
        if !self.in_initial_silence && self.silence_ms >= s.after_greeting_silence_ms {
            return Some((AmdResult::Human, AmdReason::ShortGreeting));
        }
        None
    }

    fn speech(&mut self, ms: u32) -> Option<(AmdResult, AmdReason)> {
        let s = &self.settings;
        self.word_ms += ms;
        self.voice_ms += ms;
        if self.word_ms >= s.min_word_ms && !self.in_word {
            self.words += 1;
            self.in_word = true;
        }
        if self.word_ms >= s.max_word_ms {
            return Some((AmdResult::Machine, AmdReason::LongWord));
        }
        if self.words >= s.max_words {
            return Some((AmdResult::Machine, AmdReason::TooManyWords));
        }
        if !self.in_initial_silence && self.voice_ms >= s.greeting_ms {
            return Some((AmdResult::Machine, AmdReason::LongGreeting));
        }
        if self.voice_ms >= s.min_word_ms {
            self.silence_ms = 0;
        }
        if self.word_ms >= s.min_word_ms {
            // The greeting has begun.
            self.in_initial_silence = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amd::settings::ASTERISK;

    /// Feeds `(speech, ms)` runs in 20 ms frames; the verdict, if any.
    fn run(settings: AmdSettings, runs: &[(bool, u32)]) -> Option<Verdict> {
        let mut analysis = GreetingAnalysis::new(settings);
        for &(speech, ms) in runs {
            for _ in 0..ms / 20 {
                if let Some(verdict) = analysis.push(speech, 20) {
                    return Some(verdict);
                }
            }
        }
        None
    }

    fn decided(runs: &[(bool, u32)]) -> (AmdResult, AmdReason, u32) {
        let v = run(ASTERISK, runs).expect("a verdict");
        (v.result, v.reason, v.ms)
    }

    #[test]
    fn hello_then_silence_is_a_person() {
        assert_eq!(
            decided(&[(false, 400), (true, 500), (false, 2000)]),
            (AmdResult::Human, AmdReason::ShortGreeting, 1700)
        );
    }

    #[test]
    fn a_long_greeting_is_a_machine() {
        // Words with short pauses: the fourth word... would be too many, but the greeting's
        // length decides first when words run together.
        assert_eq!(
            decided(&[(false, 200), (true, 1600)]),
            (AmdResult::Machine, AmdReason::LongGreeting, 1700)
        );
    }

    #[test]
    fn three_words_are_a_machine() {
        let word = (true, 200);
        let gap = (false, 100);
        assert_eq!(
            decided(&[(false, 200), word, gap, word, gap, word]),
            (AmdResult::Machine, AmdReason::TooManyWords, 900)
        );
    }

    #[test]
    fn silence_from_the_start_is_a_machine() {
        assert_eq!(
            decided(&[(false, 3000)]),
            (AmdResult::Machine, AmdReason::InitialSilence, 2500)
        );
    }

    #[test]
    fn one_endless_word_is_a_machine() {
        let settings = AmdSettings {
            greeting_ms: 10_000,
            max_word_ms: 1000,
            ..ASTERISK
        };
        let verdict = run(settings, &[(true, 3000)]).unwrap();
        assert_eq!(
            (verdict.result, verdict.reason),
            (AmdResult::Machine, AmdReason::LongWord)
        );
    }

    #[test]
    fn undecided_at_the_end_of_the_analysis_is_not_sure() {
        // Clicks too short to be words keep resetting nothing: speech shorter than a word,
        // silences shorter than the after-greeting silence, after a first word.
        let mut runs = vec![(false, 200), (true, 200), (false, 400)];
        for _ in 0..20 {
            runs.extend([(true, 40), (false, 400)]);
        }
        assert_eq!(
            decided(&runs),
            (AmdResult::NotSure, AmdReason::TooLong, 5000)
        );
    }

    #[test]
    fn short_noises_are_not_words() {
        // 60 ms blips in the initial silence do not start a greeting.
        let mut runs = Vec::new();
        for _ in 0..10 {
            runs.extend([(true, 60), (false, 200)]);
        }
        let v = run(ASTERISK, &runs);
        assert_eq!(v, None, "2.6 s of blips and pauses: still listening");
    }

    #[test]
    fn after_a_verdict_nothing_changes() {
        let mut analysis = GreetingAnalysis::new(ASTERISK);
        for _ in 0..200 {
            analysis.push(false, 20);
        }
        let first = analysis.verdict().unwrap();
        assert_eq!(analysis.push(true, 20), None);
        assert_eq!(analysis.no_audio(9000), None);
        assert_eq!(analysis.verdict(), Some(first));
    }
}
