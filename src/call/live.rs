//! The calls in progress, as an operator sees them: each call actor keeps its entry up to date
//! and removes it when the call is over; the dashboard reads snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

use super::CallInfo;
use crate::media::MediaLeg;

/// The live calls of one bot. Cheap to clone; all clones share the table.
#[derive(Clone, Default)]
pub struct LiveCalls(Arc<Mutex<HashMap<u64, Entry>>>);

struct Entry {
    info: CallInfo,
    leg: Arc<MediaLeg>,
}

/// One live call, now.
#[derive(Clone, Debug, Serialize)]
pub struct LiveCall {
    pub id: String,
    pub direction: &'static str,
    pub from: String,
    pub from_name: String,
    pub to: String,
    /// `RINGING`, `IN_CALL`, `HOLD` …; `null` while the call is being set up.
    pub state: Option<&'static str>,
    /// Milliseconds since the call started, and since it was answered.
    pub age_ms: u64,
    pub talk_ms: Option<u64>,
    pub codec: Option<&'static str>,
    pub packets_received: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    /// The far end's loudness in dBFS.
    pub level_dbfs: Option<f32>,
}

fn millis_since(at: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(at)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LiveCalls {
    fn table(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, key: u64, info: &CallInfo, leg: Arc<MediaLeg>) {
        let info = info.clone();
        self.table().insert(key, Entry { info, leg });
    }

    pub(super) fn update(&self, key: u64, info: &CallInfo) {
        if let Some(entry) = self.table().get_mut(&key) {
            entry.info = info.clone();
        }
    }

    pub(super) fn remove(&self, key: u64) {
        self.table().remove(&key);
    }

    /// Every live call, oldest first.
    pub fn snapshot(&self) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .table()
            .values()
            .map(|Entry { info, leg }| {
                let stats = leg.stats();
                LiveCall {
                    id: info.id.to_string(),
                    direction: info.direction.as_str(),
                    from: info.from.clone(),
                    from_name: info.from_name.clone(),
                    to: info.to.clone(),
                    state: info.state.map(|s| s.as_str()),
                    age_ms: millis_since(info.started),
                    talk_ms: info.answered.map(millis_since),
                    codec: leg.negotiated().map(|n| n.codec.name()),
                    packets_received: stats.packets_received,
                    packets_lost: stats.packets_lost,
                    jitter_ms: stats.jitter_ms,
                    level_dbfs: stats.level_dbfs,
                }
            })
            .collect();
        calls.sort_by_key(|c| std::cmp::Reverse(c.age_ms));
        calls
    }
}
