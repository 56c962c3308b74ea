//! What answering-machine detection listens for: Asterisk `AMD()`'s parameters (same names in
//! milliseconds, same meaning), the voice detector's threshold, and how the end of a machine's
//! greeting is recognised. Every one is configurable: per bot (`detect_machine:` in the config)
//! and per call (`call.detect_machine(#{ … })`).

use serde::{Deserialize, Serialize};

/// The detector's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmdSettings {
    /// Silence before the first word longer than this: a machine (Asterisk `initial_silence`).
    pub initial_silence_ms: u32,
    /// Speech in the greeting longer than this: a machine (`greeting`).
    pub greeting_ms: u32,
    /// Silence after a greeting shorter than `greeting_ms`: a person waiting for an answer
    /// (`after_greeting_silence`).
    pub after_greeting_silence_ms: u32,
    /// Undecided after this long: NOTSURE (`total_analysis_time`).
    pub total_analysis_ms: u32,
    /// Speech this long is a word (`min_word_length`).
    pub min_word_ms: u32,
    /// Silence this long ends a word (`between_words_silence`).
    pub between_words_ms: u32,
    /// This many words: a machine (`maximum_number_of_words`).
    pub max_words: u32,
    /// One word longer than this: a machine (`maximum_word_length`).
    pub max_word_ms: u32,
    /// The voice detector's score (0 to 1) from which a frame is speech.
    pub voice_threshold: f32,
    /// After a MACHINE verdict: silence this long after the greeting's speech ends it (a
    /// machine without a beep).
    pub end_silence_ms: u32,
    /// A steady tone this long is a beep; the greeting ends when it stops.
    pub min_beep_ms: u32,
    /// `on_beep` comes at the latest this long after detection started.
    pub beep_timeout_ms: u32,
}

/// Asterisk's documented `AMD()` defaults, with our own for what Asterisk lacks (the voice
/// threshold and the end of the greeting).
pub const ASTERISK: AmdSettings = AmdSettings {
    initial_silence_ms: 2500,
    greeting_ms: 1500,
    after_greeting_silence_ms: 800,
    total_analysis_ms: 5000,
    min_word_ms: 100,
    between_words_ms: 50,
    max_words: 3,
    max_word_ms: 5000,
    voice_threshold: 0.5,
    end_silence_ms: 1200,
    min_beep_ms: 120,
    beep_timeout_ms: 30_000,
};

impl Default for AmdSettings {
    /// Asterisk's: tried on tests/fixtures/amd against 729 other combinations of the word,
    /// greeting and threshold parameters, none was more accurate, and those that decided
    /// sooner did so by a shorter greeting or after-greeting silence, which cuts a person's
    /// longer "Hello, Maria speaking" into a machine (BENCHMARKS.md, "Answering-machine
    /// detection").
    fn default() -> Self {
        ASTERISK
    }
}

/// Bounds for each parameter: wide enough for any real use, narrow enough that a typo (or a
/// script's arithmetic) cannot make detection wait for hours.
const MS_LIMIT: u32 = 60_000;
const BEEP_TIMEOUT_LIMIT: u32 = 120_000;

impl AmdSettings {
    /// The settings from a JSON object of overrides (a script's map, a config block): unknown
    /// keys and values out of range are errors that say which.
    pub fn from_overrides(overrides: serde_json::Value) -> Result<Self, String> {
        let settings: Self = serde_json::from_value(overrides).map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every value within its bounds, and the analysis long enough to decide anything.
    pub fn validate(&self) -> Result<(), String> {
        let ms = [
            ("initial_silence_ms", self.initial_silence_ms),
            ("greeting_ms", self.greeting_ms),
            ("after_greeting_silence_ms", self.after_greeting_silence_ms),
            ("total_analysis_ms", self.total_analysis_ms),
            ("min_word_ms", self.min_word_ms),
            ("between_words_ms", self.between_words_ms),
            ("max_word_ms", self.max_word_ms),
            ("end_silence_ms", self.end_silence_ms),
            ("min_beep_ms", self.min_beep_ms),
        ];
        for (name, value) in ms {
            if value > MS_LIMIT {
                return Err(format!("{name}: {value} is over {MS_LIMIT} ms"));
            }
        }
        if self.total_analysis_ms < 500 {
            return Err(format!(
                "total_analysis_ms: {} is under 500 ms",
                self.total_analysis_ms
            ));
        }
        if !(1..=100).contains(&self.max_words) {
            return Err(format!("max_words: {} is not 1 to 100", self.max_words));
        }
        if !(0.05..=0.95).contains(&self.voice_threshold) {
            return Err(format!(
                "voice_threshold: {} is not 0.05 to 0.95",
                self.voice_threshold
            ));
        }
        if !(self.total_analysis_ms..=BEEP_TIMEOUT_LIMIT).contains(&self.beep_timeout_ms) {
            return Err(format!(
                "beep_timeout_ms: {} is not total_analysis_ms ({}) to {BEEP_TIMEOUT_LIMIT}",
                self.beep_timeout_ms, self.total_analysis_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_change_only_what_they_name() {
        let settings = AmdSettings::from_overrides(json!({ "greeting_ms": 2000 })).unwrap();
        assert_eq!(settings.greeting_ms, 2000);
        assert_eq!(
            settings.initial_silence_ms,
            AmdSettings::default().initial_silence_ms
        );
        assert_eq!(
            AmdSettings::from_overrides(json!({})),
            Ok(AmdSettings::default())
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_say_which() {
        let error = AmdSettings::from_overrides(json!({ "greting_ms": 1 })).unwrap_err();
        assert!(error.contains("greting_ms"), "{error}");
        let error = AmdSettings::from_overrides(json!({ "max_words": 0 })).unwrap_err();
        assert!(error.contains("max_words"), "{error}");
        let error = AmdSettings::from_overrides(json!({ "greeting_ms": -5 })).unwrap_err();
        assert!(error.contains("-5"), "{error}");
        let error =
            AmdSettings::from_overrides(json!({ "total_analysis_ms": 3_600_000 })).unwrap_err();
        assert!(error.contains("total_analysis_ms"), "{error}");
        let error = AmdSettings::from_overrides(json!({ "voice_threshold": 2.0 })).unwrap_err();
        assert!(error.contains("voice_threshold"), "{error}");
    }

    #[test]
    fn both_presets_are_valid() {
        ASTERISK.validate().unwrap();
        AmdSettings::default().validate().unwrap();
    }
}
