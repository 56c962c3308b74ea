//! When a campaign may dial: only inside the daily window (the calls-per-second limit is
//! [`crate::call::Pacer`]).

use std::time::Duration;

use chrono::{NaiveTime, Timelike};

/// The hours of the day when calls may be placed (local time), e.g. `09:00-18:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: expected HH:MM-HH:MM"))?;
        let parse = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("{t:?}: expected HH:MM"))
        };
        Ok(Self {
            start: parse(start)?,
            end: parse(end)?,
        })
    }
}

impl Window {
    /// How long until the window is open at `now` (zero when it is). A window whose end is
    /// before its start runs over midnight.
    pub fn wait(&self, now: NaiveTime) -> Duration {
        let open = if self.start <= self.end {
            now >= self.start && now < self.end
        } else {
            now >= self.start || now < self.end
        };
        if open {
            return Duration::ZERO;
        }
        let seconds = |t: NaiveTime| i64::from(t.num_seconds_from_midnight());
        let wait = (seconds(self.start) - seconds(now)).rem_euclid(24 * 3600);
        Duration::from_secs(wait as u64)
    }
}

/// `10m`, `30s`, `2h`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, ""), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 10m, 30s or 2h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_or_say_why_not() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(
            parse_duration("99999999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn window_waits_until_it_opens() {
        let window: Window = "09:00-18:00".parse().unwrap();
        let at = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(window.wait(at(10, 0)), Duration::ZERO);
        assert_eq!(window.wait(at(8, 30)), Duration::from_secs(1800));
        assert_eq!(window.wait(at(18, 0)), Duration::from_secs(15 * 3600));
        let night: Window = "22:00-06:00".parse().unwrap();
        assert_eq!(night.wait(at(23, 0)), Duration::ZERO);
        assert_eq!(night.wait(at(12, 0)), Duration::from_secs(10 * 3600));
        assert!("9-5".parse::<Window>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 days").is_err());
    }
}
