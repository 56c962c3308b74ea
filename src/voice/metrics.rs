//! What streams count, per bot: open streams, media messages each way, audio dropped because a
//! queue was full, and how long the agent's marks took to come back (its audio's playout).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BotLabel {
    bot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    bot: String,
    /// `to_agent` or `from_agent`.
    direction: &'static str,
}

fn rtt_histogram() -> Histogram {
    // 20 ms … ~80 s: a mark comes back once the audio before it has played.
    Histogram::new(exponential_buckets(0.02, 2.0, 13))
}

type HistogramFamily = Family<BotLabel, Histogram, fn() -> Histogram>;

/// The stream series of every bot, registered once per daemon.
#[derive(Clone)]
pub struct StreamFamilies {
    open: Family<BotLabel, Gauge>,
    messages: Family<DirectionLabel, Counter>,
    dropped: Family<DirectionLabel, Counter>,
    mark_rtt: HistogramFamily,
}

impl StreamFamilies {
    /// Registers the series in `registry` (under its prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self {
            open: Family::default(),
            messages: Family::default(),
            dropped: Family::default(),
            mark_rtt: HistogramFamily::new_with_constructor(rtt_histogram as fn() -> Histogram),
        };
        registry.register(
            "open_streams",
            "Voice-agent streams open now",
            families.open.clone(),
        );
        registry.register(
            "stream_media_messages",
            "Media messages sent to (to_agent) and received from (from_agent) voice agents",
            families.messages.clone(),
        );
        registry.register(
            "stream_dropped_frames",
            "20 ms frames dropped because a queue was full: the agent's audio beyond the playout \
             buffer (from_agent), the caller's audio the agent did not take in time (to_agent)",
            families.dropped.clone(),
        );
        registry.register(
            "stream_mark_seconds",
            "From an agent's mark to its return (the audio before it has played)",
            families.mark_rtt.clone(),
        );
        families
    }

    /// The handles of one bot.
    pub fn bot(&self, bot: &str) -> StreamMetrics {
        let label = BotLabel {
            bot: bot.to_owned(),
        };
        let direction = |direction| DirectionLabel {
            bot: bot.to_owned(),
            direction,
        };
        // One series at a time: a family's guard must be gone before it is asked again.
        let messages = |direction| self.messages.get_or_create(&direction).clone();
        let dropped = |direction| self.dropped.get_or_create(&direction).clone();
        let open = self.open.get_or_create(&label).clone();
        let to_agent = messages(direction("to_agent"));
        let from_agent = messages(direction("from_agent"));
        let dropped_to_agent = dropped(direction("to_agent"));
        let dropped_from_agent = dropped(direction("from_agent"));
        let mark_rtt = self.mark_rtt.get_or_create(&label).clone();
        StreamMetrics {
            open,
            to_agent,
            from_agent,
            dropped_to_agent,
            dropped_from_agent,
            mark_rtt,
        }
    }
}

/// One bot's stream counters (standalone ones by default, for phones and tests).
#[derive(Clone, Debug)]
pub struct StreamMetrics {
    pub open: Gauge,
    pub to_agent: Counter,
    pub from_agent: Counter,
    pub dropped_to_agent: Counter,
    pub dropped_from_agent: Counter,
    pub mark_rtt: Histogram,
}

impl Default for StreamMetrics {
    fn default() -> Self {
        Self {
            open: Gauge::default(),
            to_agent: Counter::default(),
            from_agent: Counter::default(),
            dropped_to_agent: Counter::default(),
            dropped_from_agent: Counter::default(),
            mark_rtt: rtt_histogram(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_per_bot_and_direction() {
        let mut registry = Registry::with_prefix("callbot");
        let families = StreamFamilies::register(&mut registry);
        let bot = families.bot("agent");
        bot.open.inc();
        bot.to_agent.inc_by(3);
        bot.dropped_from_agent.inc_by(2);
        bot.mark_rtt.observe(0.5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"callbot_open_streams{bot="agent"} 1"#,
            r#"callbot_stream_media_messages_total{bot="agent",direction="to_agent"} 3"#,
            r#"callbot_stream_dropped_frames_total{bot="agent",direction="from_agent"} 2"#,
            r#"callbot_stream_mark_seconds_count{bot="agent"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
