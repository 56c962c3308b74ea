//! Prometheus metrics of the daemon (`GET /metrics`), each per bot: calls by direction, final
//! state and end reason; call duration and setup time; the media quality of finished calls
//! (loss and jitter); active calls; link state and reconnects; script errors and reloads;
//! recording failures; and `callbot_build_info`. docs/deploy/ has a Grafana dashboard and
//! alert rules built on these names (a test checks that each name they use is served).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::call::{CallInfo, Direction};
use crate::protocol::CallState;
use crate::voice::{StreamFamilies, StreamMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BotLabel {
    bot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    bot: String,
    direction: String,
    state: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    bot: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    bot: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn setup_histogram() -> Histogram {
    // 1 ms … ~4 s: offer received → answer sent is a few ms when all is well.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

fn duration_histogram() -> Histogram {
    // 1 s … ~2.3 h: from a hang-up after a greeting to a long support call.
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn loss_histogram() -> Histogram {
    // 0.1 % … ~51 %: fractions of the far end's packets that never arrived.
    Histogram::new(exponential_buckets(0.001, 2.0, 10))
}

fn jitter_histogram() -> Histogram {
    // 0.5 ms … ~256 ms of interarrival jitter (RFC 3550).
    Histogram::new(exponential_buckets(0.0005, 2.0, 10))
}

/// All metrics; one per daemon.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    duration: HistogramFamily<DirectionLabels>,
    active: Family<BotLabel, Gauge>,
    setup: HistogramFamily<BotLabel>,
    loss: HistogramFamily<BotLabel>,
    jitter: HistogramFamily<BotLabel>,
    script_errors: Family<BotLabel, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    recording_failures: Family<BotLabel, Counter>,
    reconnects: Family<BotLabel, Counter>,
    connected: Family<BotLabel, Gauge>,
    streams: StreamFamilies,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("callbot");
        let metrics = Self {
            calls: Family::default(),
            duration: HistogramFamily::new_with_constructor(duration_histogram),
            active: Family::default(),
            setup: HistogramFamily::new_with_constructor(setup_histogram),
            loss: HistogramFamily::new_with_constructor(loss_histogram),
            jitter: HistogramFamily::new_with_constructor(jitter_histogram),
            script_errors: Family::default(),
            reloads: Family::default(),
            recording_failures: Family::default(),
            reconnects: Family::default(),
            connected: Family::default(),
            streams: StreamFamilies::register(&mut registry),
            registry: Registry::default(),
        };
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version of the running binary is its label",
            build,
        );
        registry.register(
            "calls",
            "Finished calls by direction, final state and end reason",
            metrics.calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Talk time of answered calls, answer to hang-up",
            metrics.duration.clone(),
        );
        registry.register("active_calls", "Calls in progress", metrics.active.clone());
        registry.register(
            "call_setup_seconds",
            "Offer received to answer sent (inbound), dial to answer (outbound)",
            metrics.setup.clone(),
        );
        registry.register(
            "media_loss_ratio",
            "Per answered call: the fraction of the far end's packets lost",
            metrics.loss.clone(),
        );
        registry.register(
            "media_jitter_seconds",
            "Per answered call: interarrival jitter of the far end's packets at the end",
            metrics.jitter.clone(),
        );
        registry.register(
            "script_errors",
            "Script handlers that failed",
            metrics.script_errors.clone(),
        );
        registry.register(
            "script_reloads",
            "Script reloads by result (ok, failed: the previous version stays)",
            metrics.reloads.clone(),
        );
        registry.register(
            "recording_failures",
            "Recordings that could not be written (full disk, file-size limit …)",
            metrics.recording_failures.clone(),
        );
        registry.register(
            "reconnects",
            "Links re-established after a drop",
            metrics.reconnects.clone(),
        );
        registry.register(
            "connected",
            "1 while the bot's link is registered",
            metrics.connected.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The metrics of one bot; every series it has is created at once (at zero), so
    /// dashboards and alerts see them before the first call.
    pub fn bot(&self, bot: &str) -> BotMetrics {
        let label = BotLabel {
            bot: bot.to_owned(),
        };
        let reloads = |result: &str| {
            self.reloads
                .get_or_create(&ReloadLabels {
                    bot: bot.to_owned(),
                    result: result.to_owned(),
                })
                .clone()
        };
        for direction in [Direction::Inbound, Direction::Outbound] {
            drop(self.duration.get_or_create(&DirectionLabels {
                bot: bot.to_owned(),
                direction: direction.as_str().to_owned(),
            }));
        }
        BotMetrics {
            bot: bot.to_owned(),
            calls: self.calls.clone(),
            duration: self.duration.clone(),
            active: self.active.get_or_create(&label).clone(),
            setup: self.setup.get_or_create(&label).clone(),
            loss: self.loss.get_or_create(&label).clone(),
            jitter: self.jitter.get_or_create(&label).clone(),
            script_errors: self.script_errors.get_or_create(&label).clone(),
            reloads_ok: reloads("ok"),
            reloads_failed: reloads("failed"),
            recording_failures: self.recording_failures.get_or_create(&label).clone(),
            reconnects: self.reconnects.get_or_create(&label).clone(),
            connected: self.connected.get_or_create(&label).clone(),
            stream: self.streams.bot(bot),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Handles on one bot's series.
#[derive(Clone)]
pub struct BotMetrics {
    bot: String,
    calls: Family<CallLabels, Counter>,
    duration: HistogramFamily<DirectionLabels>,
    pub active: Gauge,
    pub setup: Histogram,
    loss: Histogram,
    jitter: Histogram,
    pub script_errors: Counter,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
    pub recording_failures: Counter,
    pub reconnects: Counter,
    pub connected: Gauge,
    /// Voice-agent streams.
    pub stream: StreamMetrics,
}

impl BotMetrics {
    /// A call that ended before it had a call of its own (refused as busy).
    pub fn call_refused(&self, direction: Direction) {
        self.count(direction, CallState::Busy, "busy");
    }

    fn count(&self, direction: Direction, state: CallState, reason: &str) {
        let labels = CallLabels {
            bot: self.bot.clone(),
            direction: direction.as_str().to_owned(),
            state: state.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        self.calls.get_or_create(&labels).inc();
    }

    /// Everything a finished call adds: its count, times, media quality and recording errors.
    pub fn call_ended(&self, info: &CallInfo) {
        if let Some(state) = info.state {
            let reason = info.end.map_or("unknown", |e| e.reason.as_str());
            self.count(info.direction, state, reason);
        }
        if info.recording_error.is_some() {
            self.recording_failures.inc();
        }
        if info.answered.is_none() {
            return;
        }
        if let Some(setup) = info.setup_time {
            self.setup.observe(setup.as_secs_f64());
        }
        let labels = DirectionLabels {
            bot: self.bot.clone(),
            direction: info.direction.as_str().to_owned(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(info.duration().as_secs_f64());
        let stats = &info.stats;
        let expected = stats.packets_received + stats.packets_lost;
        if expected > 0 {
            self.loss
                .observe(stats.packets_lost as f64 / expected as f64);
            self.jitter.observe(stats.jitter_ms / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::call::{CallEnd, EndReason};
    use crate::protocol::CallId;

    #[test]
    fn renders_per_bot_series() {
        let metrics = Metrics::default();
        let bot = metrics.bot("ivr");
        let mut info = CallInfo::new(
            CallId::random(),
            Direction::Inbound,
            ("502", ""),
            "500",
            BTreeMap::new(),
        );
        let now = SystemTime::now();
        info.answered = Some(now - Duration::from_secs(12));
        info.ended = Some(now);
        info.state = Some(CallState::Completed);
        info.end = Some(CallEnd {
            reason: EndReason::RemoteHangup,
            code: None,
        });
        info.setup_time = Some(Duration::from_millis(4));
        info.stats.packets_received = 990;
        info.stats.packets_lost = 10;
        info.recording_error = Some("disk full".into());
        bot.call_ended(&info);
        bot.active.set(2);
        let text = metrics.render();
        for expected in [
            r#"callbot_calls_total{bot="ivr",direction="inbound",state="COMPLETED",reason="remote_hangup"} 1"#,
            r#"callbot_active_calls{bot="ivr"} 2"#,
            r#"callbot_call_duration_seconds_count{bot="ivr",direction="inbound"} 1"#,
            r#"callbot_call_duration_seconds_bucket{le="16.0",bot="ivr",direction="inbound"} 1"#,
            r#"callbot_call_duration_seconds_count{bot="ivr",direction="outbound"} 0"#,
            r#"callbot_media_loss_ratio_bucket{le="0.016",bot="ivr"} 1"#,
            r#"callbot_recording_failures_total{bot="ivr"} 1"#,
            r#"callbot_script_reloads_total{bot="ivr",result="failed"} 0"#,
            r#"callbot_build_info{version=""#,
            "callbot_call_setup_seconds_count",
            "callbot_media_jitter_seconds_count",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
    }
}
