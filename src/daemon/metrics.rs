//! Prometheus metrics of the daemon (`GET /metrics`): calls by final state, active calls, call
//! setup latency, script errors, reconnects and link state, each per bot.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::protocol::CallState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BotLabel {
    bot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    bot: String,
    state: String,
}

type HistogramFamily = Family<BotLabel, Histogram, fn() -> Histogram>;

fn setup_histogram() -> Histogram {
    // 1 ms … ~4 s: offer received → answer sent is a few ms when all is well.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 13,
    ))
}

/// All metrics; one per daemon.
pub struct Metrics {
    registry: Registry,
    calls: Family<StateLabel, Counter>,
    active: Family<BotLabel, Gauge>,
    setup: HistogramFamily,
    script_errors: Family<BotLabel, Counter>,
    reconnects: Family<BotLabel, Counter>,
    connected: Family<BotLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("callbot");
        let calls = Family::<StateLabel, Counter>::default();
        let active = Family::<BotLabel, Gauge>::default();
        let setup = HistogramFamily::new_with_constructor(setup_histogram as fn() -> Histogram);
        let script_errors = Family::<BotLabel, Counter>::default();
        let reconnects = Family::<BotLabel, Counter>::default();
        let connected = Family::<BotLabel, Gauge>::default();
        registry.register("calls", "Finished calls by final state", calls.clone());
        registry.register("active_calls", "Calls in progress", active.clone());
        registry.register(
            "call_setup_seconds",
            "Offer received to answer sent (inbound), dial to answer (outbound)",
            setup.clone(),
        );
        registry.register(
            "script_errors",
            "Script handlers that failed",
            script_errors.clone(),
        );
        registry.register(
            "reconnects",
            "Links re-established after a drop",
            reconnects.clone(),
        );
        registry.register(
            "connected",
            "1 while the bot's link is registered",
            connected.clone(),
        );
        Self {
            registry,
            calls,
            active,
            setup,
            script_errors,
            reconnects,
            connected,
        }
    }
}

impl Metrics {
    /// The metrics of one bot.
    pub fn bot(&self, bot: &str) -> BotMetrics {
        let label = BotLabel {
            bot: bot.to_owned(),
        };
        BotMetrics {
            bot: bot.to_owned(),
            calls: self.calls.clone(),
            active: self.active.get_or_create(&label).clone(),
            setup: self.setup.get_or_create(&label).clone(),
            script_errors: self.script_errors.get_or_create(&label).clone(),
            reconnects: self.reconnects.get_or_create(&label).clone(),
            connected: self.connected.get_or_create(&label).clone(),
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
    calls: Family<StateLabel, Counter>,
    pub active: Gauge,
    pub setup: Histogram,
    pub script_errors: Counter,
    pub reconnects: Counter,
    pub connected: Gauge,
}

impl BotMetrics {
    pub fn call_ended(&self, state: CallState) {
        let label = StateLabel {
            bot: self.bot.clone(),
            state: state.as_str().to_owned(),
        };
        self.calls.get_or_create(&label).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_bot_series() {
        let metrics = Metrics::default();
        let bot = metrics.bot("ivr");
        bot.call_ended(CallState::Completed);
        bot.active.set(2);
        bot.setup.observe(0.004);
        let text = metrics.render();
        assert!(
            text.contains(r#"callbot_calls_total{bot="ivr",state="COMPLETED"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"callbot_active_calls{bot="ivr"} 2"#),
            "{text}"
        );
        assert!(text.contains("callbot_call_setup_seconds_count"), "{text}");
    }
}
