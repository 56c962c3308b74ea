//! One call's answering-machine detection, sans-IO: the far end's audio goes in (any rate, in
//! order, gaps filled by the caller), the verdict and then the end of a machine's greeting come
//! out. Time is the audio's own: 16 ms per frame, so a recording gives the same answer as a
//! live call, and a benchmark can run an hour of calls in seconds.

use super::frames::{FRAME_MS, Framer};
use super::greeting::{AmdReason, AmdResult, GreetingAnalysis, Verdict};
use super::settings::AmdSettings;
use super::tone::ToneDetector;

/// How a machine's greeting was seen to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeepKind {
    /// A steady tone, which has just stopped.
    Tone,
    /// `end_silence_ms` of silence after the greeting's speech.
    Silence,
    /// `beep_timeout_ms` passed without either.
    Timeout,
}

impl BeepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BeepKind::Tone => "tone",
            BeepKind::Silence => "silence",
            BeepKind::Timeout => "timeout",
        }
    }
}

/// The end of a machine's greeting: a message played now lands in the voicemail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Beep {
    pub how: BeepKind,
    /// Since detection started.
    pub ms: u32,
}

/// What the detection tells its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmdEvent {
    Verdict(Verdict),
    Beep(Beep),
}

/// Where the detection is.
#[derive(Debug)]
enum Phase {
    /// Deciding who answered.
    Greeting,
    /// A machine: waiting for its greeting to end.
    AwaitingBeep {
        /// Speech has been heard since detection started.
        heard_speech: bool,
        silence_ms: u32,
        tone_ms: u32,
    },
    Done,
}

/// One call's detector.
pub struct MachineListener {
    settings: AmdSettings,
    framer: Framer,
    vad: Box<earshot::Detector>,
    tones: ToneDetector,
    greeting: GreetingAnalysis,
    phase: Phase,
    /// Audio analysed so far.
    elapsed_ms: u32,
}

impl std::fmt::Debug for MachineListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineListener")
            .field("phase", &self.phase)
            .field("elapsed_ms", &self.elapsed_ms)
            .finish_non_exhaustive()
    }
}

impl MachineListener {
    pub fn new(settings: AmdSettings) -> Self {
        Self {
            settings,
            framer: Framer::default(),
            vad: earshot::Detector::default_boxed(),
            tones: ToneDetector::default(),
            greeting: GreetingAnalysis::new(settings),
            phase: Phase::Greeting,
            elapsed_ms: 0,
        }
    }

    pub fn settings(&self) -> &AmdSettings {
        &self.settings
    }

    /// Nothing more will be reported.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Audio analysed so far, in milliseconds.
    pub fn elapsed_ms(&self) -> u32 {
        self.elapsed_ms
    }

    /// The far end's next audio, `pcm` at `rate` Hz; what it decided, in order.
    pub fn push(&mut self, pcm: &[i16], rate: u32) -> Vec<AmdEvent> {
        let mut events = Vec::new();
        if self.is_done() {
            return events;
        }
        let Self {
            framer, vad, tones, ..
        } = self;
        let mut frames = Vec::new();
        framer.push(pcm, rate, |window| {
            let frame = &window[window.len() - super::frames::FRAME..];
            let speech = vad.predict_i16(frame);
            frames.push((speech, tones.push(window).hz.is_some()));
        });
        for (score, tone) in frames {
            self.frame(score >= self.settings.voice_threshold, tone, &mut events);
            if self.is_done() {
                break;
            }
        }
        events
    }

    /// The call's clock says time is up `now_ms` after the start without the audio having
    /// decided (no audio arrives, or too little): NOTSURE while still deciding, the beep
    /// timeout while waiting for a beep.
    pub fn time_up(&mut self, now_ms: u32) -> Option<AmdEvent> {
        self.elapsed_ms = self.elapsed_ms.max(now_ms);
        match self.phase {
            Phase::Greeting => {
                self.phase = Phase::Done;
                self.greeting
                    .no_audio(self.elapsed_ms)
                    .map(AmdEvent::Verdict)
            }
            Phase::AwaitingBeep { .. } => Some(self.beep(BeepKind::Timeout)),
            Phase::Done => None,
        }
    }

    fn frame(&mut self, speech: bool, tone: bool, events: &mut Vec<AmdEvent>) {
        self.elapsed_ms += FRAME_MS;
        match &mut self.phase {
            Phase::Greeting => {
                // A tone is no word: a machine that beeps at once is still a machine.
                let Some(verdict) = self.greeting.push(speech && !tone, FRAME_MS) else {
                    return;
                };
                events.push(AmdEvent::Verdict(verdict));
                self.phase = if verdict.result == AmdResult::Machine {
                    Phase::AwaitingBeep {
                        heard_speech: verdict.reason != AmdReason::InitialSilence,
                        silence_ms: 0,
                        tone_ms: 0,
                    }
                } else {
                    Phase::Done
                };
            }
            Phase::AwaitingBeep {
                heard_speech,
                silence_ms,
                tone_ms,
            } => {
                let s = &self.settings;
                if tone {
                    *tone_ms += FRAME_MS;
                    *silence_ms = 0;
                    if self.elapsed_ms >= s.beep_timeout_ms {
                        events.push(self.beep(BeepKind::Timeout));
                    }
                    return;
                }
                if *tone_ms >= s.min_beep_ms {
                    events.push(self.beep(BeepKind::Tone));
                    return;
                }
                *tone_ms = 0;
                if speech {
                    *heard_speech = true;
                    *silence_ms = 0;
                } else {
                    *silence_ms += FRAME_MS;
                }
                if *heard_speech && *silence_ms >= s.end_silence_ms {
                    events.push(self.beep(BeepKind::Silence));
                } else if self.elapsed_ms >= s.beep_timeout_ms {
                    events.push(self.beep(BeepKind::Timeout));
                }
            }
            Phase::Done => {}
        }
    }

    fn beep(&mut self, how: BeepKind) -> AmdEvent {
        self.phase = Phase::Done;
        AmdEvent::Beep(Beep {
            how,
            ms: self.elapsed_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amd::settings::ASTERISK;

    fn beep_tone(ms: u32) -> Vec<i16> {
        (0..8 * ms)
            .map(|i| {
                (9000.0 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect()
    }

    /// Feeds `audio` (8 kHz) in 20 ms packets.
    fn feed(listener: &mut MachineListener, audio: &[i16]) -> Vec<AmdEvent> {
        audio
            .chunks(160)
            .flat_map(|packet| listener.push(packet, 8000))
            .collect()
    }

    #[test]
    fn a_silent_machine_is_found_and_its_beep_ends_the_greeting() {
        let mut listener = MachineListener::new(ASTERISK);
        let events = feed(&mut listener, &vec![0; 8 * 3000]);
        let [AmdEvent::Verdict(verdict)] = events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(
            (verdict.result, verdict.reason),
            (AmdResult::Machine, AmdReason::InitialSilence)
        );
        assert!((2500..2520).contains(&verdict.ms), "{verdict:?}");
        // A 400 ms beep, then silence: the beep is reported when it stops.
        let mut audio = beep_tone(400);
        audio.extend(vec![0; 8 * 500]);
        let events = feed(&mut listener, &audio);
        let [AmdEvent::Beep(beep)] = events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(beep.how, BeepKind::Tone);
        assert!(
            (3400..3460).contains(&beep.ms),
            "ends with the tone: {beep:?}"
        );
        assert!(listener.is_done());
        assert!(feed(&mut listener, &beep_tone(400)).is_empty());
    }

    #[test]
    fn a_blip_is_no_beep_and_without_a_sound_the_timeout_comes() {
        let settings = AmdSettings {
            beep_timeout_ms: 6000,
            ..ASTERISK
        };
        let mut listener = MachineListener::new(settings);
        let mut audio = vec![0; 8 * 3000];
        audio.extend(beep_tone(60));
        audio.extend(vec![0; 8 * 4000]);
        let events = feed(&mut listener, &audio);
        let [AmdEvent::Verdict(_), AmdEvent::Beep(beep)] = events[..] else {
            panic!("{events:?}");
        };
        assert_ne!(
            beep.how,
            BeepKind::Tone,
            "60 ms is too short for a beep: {beep:?}"
        );
        let mut silent = MachineListener::new(settings);
        let events = feed(&mut silent, &vec![0; 8 * 7000]);
        let [AmdEvent::Verdict(_), AmdEvent::Beep(beep)] = events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(
            beep.how,
            BeepKind::Timeout,
            "no greeting heard: no end of one"
        );
        assert!((6000..6020).contains(&beep.ms), "{beep:?}");
    }

    #[test]
    fn time_up_without_audio_is_not_sure_then_nothing() {
        let mut listener = MachineListener::new(ASTERISK);
        let Some(AmdEvent::Verdict(verdict)) = listener.time_up(6000) else {
            panic!("a verdict");
        };
        assert_eq!(
            (verdict.result, verdict.reason, verdict.ms),
            (AmdResult::NotSure, AmdReason::NoAudio, 6000)
        );
        assert_eq!(listener.time_up(7000), None);
    }

    #[test]
    fn time_up_while_awaiting_the_beep_ends_it() {
        let mut listener = MachineListener::new(ASTERISK);
        feed(&mut listener, &vec![0; 8 * 2600]);
        assert!(matches!(
            listener.time_up(31_000),
            Some(AmdEvent::Beep(Beep {
                how: BeepKind::Timeout,
                ..
            }))
        ));
    }
}
