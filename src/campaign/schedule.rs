//! When each contact may be dialled: not before its retry time, only inside the daily window
//! in the contact's own time zone (its `tz` column; the machine's otherwise), and not more
//! often than the daily cap in its own calendar day.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::journal::Entry;
use super::pacing::Window;

/// What the next dial is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The entry at this index may be dialled now.
    Now(usize),
    /// None may be before this long.
    Wait(Duration),
    /// Nothing is queued.
    Idle,
}

/// The daily rules of a campaign.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    window: Option<Window>,
    per_day: Option<u32>,
    /// When each contact (by line) was dialled, unix ms, for the daily cap.
    starts: HashMap<u64, Vec<u64>>,
}

/// A time zone's view of one moment: the time of day, and where its day begins and ends.
#[derive(Clone, Copy, Debug)]
struct Day {
    time: chrono::NaiveTime,
    start_ms: u64,
    end_ms: u64,
}

fn unix_ms(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

/// Midnight of `date` in `zone`, as a moment (the first such moment where a DST change makes
/// it ambiguous, the next hour where midnight does not exist).
fn midnight<Z: TimeZone>(zone: &Z, date: NaiveDate) -> DateTime<Utc> {
    let at = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    zone.from_local_datetime(&at)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(at + chrono::TimeDelta::hours(1)))
                .earliest()
        })
        .map_or_else(|| at.and_utc(), |d| d.with_timezone(&Utc))
}

fn day_in<Z: TimeZone>(zone: &Z, now: DateTime<Utc>) -> Day {
    let local = now.with_timezone(zone).naive_local();
    let date = local.date();
    let next = date.succ_opt().unwrap_or(date);
    Day {
        time: local.time(),
        start_ms: unix_ms(midnight(zone, date)),
        end_ms: unix_ms(midnight(zone, next)),
    }
}

impl Schedule {
    /// `starts`: the attempts already made (a resumed campaign's, from the journal).
    pub fn new(
        window: Option<Window>,
        per_day: Option<u32>,
        starts: HashMap<u64, Vec<u64>>,
    ) -> Self {
        Self {
            window,
            per_day,
            starts,
        }
    }

    /// `line` is being dialled at `at_ms`.
    pub fn started(&mut self, line: u64, at_ms: u64) {
        if self.per_day.is_some() {
            self.starts.entry(line).or_default().push(at_ms);
        }
    }

    /// The first queued entry that may be dialled at `now`, or how long until one may.
    pub fn next(&self, queue: &VecDeque<Entry>, now: DateTime<Utc>) -> Next {
        if queue.is_empty() {
            return Next::Idle;
        }
        let now_ms = unix_ms(now);
        // Each zone's view of now, worked out once per look however many contacts share it.
        let mut days: HashMap<Option<Tz>, Day> = HashMap::new();
        let mut soonest = Duration::MAX;
        for (index, entry) in queue.iter().enumerate() {
            let zone = entry.contact.time_zone();
            let day = *days.entry(zone).or_insert_with(|| match zone {
                Some(tz) => day_in(&tz, now),
                None => day_in(&Local, now),
            });
            let wait = self.wait(entry, day, now_ms);
            if wait.is_zero() {
                return Next::Now(index);
            }
            soonest = soonest.min(wait);
        }
        Next::Wait(soonest)
    }

    /// How long `entry` must wait: the latest of its retry time, its window and its cap.
    fn wait(&self, entry: &Entry, day: Day, now_ms: u64) -> Duration {
        let retry = Duration::from_millis(entry.next_at.saturating_sub(now_ms));
        let window = self.window.map_or(Duration::ZERO, |w| w.wait(day.time));
        let capped = self.per_day.is_some_and(|cap| {
            let today = self.starts.get(&entry.contact.line).map_or(0, |starts| {
                starts.iter().filter(|&&at| at >= day.start_ms).count()
            });
            today >= cap as usize
        });
        let cap = if capped {
            Duration::from_millis(day.end_ms.saturating_sub(now_ms))
        } else {
            Duration::ZERO
        };
        retry.max(window).max(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Contact;

    fn entry(line: u64, tz: &str, next_at: u64) -> Entry {
        Entry {
            contact: Contact {
                line,
                number: format!("70{line}"),
                vars: [("tz".to_owned(), tz.to_owned())].into(),
            },
            attempts: 0,
            next_at,
            outcome: None,
            done: false,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_window_applies_in_each_contacts_own_time() {
        let window: Window = "09:00-17:00".parse().unwrap();
        let schedule = Schedule::new(Some(window), None, HashMap::new());
        // 14:00 UTC: 16:00 in Berlin (open), 07:00 in Los Angeles (opens in 2 h).
        let now = at("2025-06-02T14:00:00Z");
        let la = VecDeque::from([entry(2, "America/Los_Angeles", 0)]);
        assert_eq!(
            schedule.next(&la, now),
            Next::Wait(Duration::from_secs(2 * 3600))
        );
        let both = VecDeque::from([
            entry(2, "America/Los_Angeles", 0),
            entry(3, "Europe/Berlin", 0),
        ]);
        assert_eq!(schedule.next(&both, now), Next::Now(1), "Berlin goes first");
        assert_eq!(schedule.next(&VecDeque::new(), now), Next::Idle);
    }

    #[test]
    fn retries_wait_for_their_time() {
        let schedule = Schedule::default();
        let now = at("2025-06-02T14:00:00Z");
        let later = unix_ms(now) + 5000;
        let queue = VecDeque::from([entry(2, "UTC", later)]);
        assert_eq!(
            schedule.next(&queue, now),
            Next::Wait(Duration::from_secs(5))
        );
    }

    #[test]
    fn the_daily_cap_counts_the_contacts_own_day() {
        let now = at("2025-06-02T14:00:00Z");
        // Tokyo: 23:00 on June 2nd; its day began at 15:00 UTC on June 1st.
        let earlier_today = unix_ms(at("2025-06-01T16:00:00Z"));
        let yesterday = unix_ms(at("2025-06-01T14:00:00Z"));
        let mut schedule = Schedule::new(
            None,
            Some(2),
            HashMap::from([(2, vec![yesterday, earlier_today])]),
        );
        let queue = VecDeque::from([entry(2, "Asia/Tokyo", 0)]);
        assert_eq!(
            schedule.next(&queue, now),
            Next::Now(0),
            "one today, one yesterday"
        );
        schedule.started(2, unix_ms(now));
        assert_eq!(
            schedule.next(&queue, now),
            Next::Wait(Duration::from_secs(3600)),
            "two today: wait for Tokyo's midnight"
        );
    }

    #[test]
    fn midnight_that_does_not_exist_is_the_hour_after() {
        // Santiago skipped from 00:00 to 01:00 on 2025-09-07.
        let zone: Tz = "America/Santiago".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2025, 9, 7).unwrap();
        assert_eq!(midnight(&zone, date), at("2025-09-07T04:00:00Z"));
    }
}
