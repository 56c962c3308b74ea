//! What a bot's script keeps between handler runs (`bot.set`, `call.set`, timer names) counted
//! in bytes against one budget per bot. Each handler run is already bounded; what it leaves
//! behind is not, and a timer storing a large string every tick would grow without end. A
//! `set` that would go over the budget is an error to the script; the value is not kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rhai::{Dynamic, Map};

/// The budget when the config names none (`script_memory_mb`).
pub const DEFAULT_BYTES: usize = 16 << 20;

/// What one kept entry costs besides its key and value (map node, `Dynamic` box).
const ENTRY_OVERHEAD: usize = 64;

/// The bytes a script may keep, and how many it keeps now.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes kept now, over all of the bot's stores.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more after giving back `freed`, or takes nothing and says why.
    fn exchange(&self, freed: usize, bytes: usize) -> Result<(), String> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.saturating_sub(freed).checked_add(bytes)?;
                (after <= self.limit).then_some(after)
            })
            .map(drop)
            .map_err(|used| {
                format!(
                    "the script's memory budget is spent: {} bytes kept of {} (script_memory_mb), \
                     {bytes} more asked",
                    used, self.limit
                )
            })
    }

    fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// The bytes a value takes, counted generously: strings and blobs by length, arrays and maps
/// by their items, everything else as one entry. (A string stored twice counts twice even
/// where Rhai shares it: the budget errs on the safe side.)
pub fn value_bytes(value: &Dynamic) -> usize {
    if let Ok(text) = value.as_immutable_string_ref() {
        return ENTRY_OVERHEAD + text.len();
    }
    if let Ok(items) = value.as_array_ref() {
        return ENTRY_OVERHEAD + items.iter().map(value_bytes).sum::<usize>();
    }
    if let Ok(map) = value.as_map_ref() {
        return ENTRY_OVERHEAD
            + map
                .iter()
                .map(|(key, value)| key.len() + value_bytes(value))
                .sum::<usize>();
    }
    if let Ok(blob) = value.as_blob_ref() {
        return ENTRY_OVERHEAD + blob.len();
    }
    ENTRY_OVERHEAD
}

#[derive(Default)]
struct Kept {
    values: Map,
    /// Timer names set and not yet fired or cancelled, with what each costs.
    timers: HashMap<String, usize>,
    bytes: usize,
}

/// One store: the bot's (`bot.set`) or a call's (`call.set`), with its timer names. Whatever
/// it keeps goes back to the budget when it is dropped (a call's store when the call ends).
pub struct Store {
    budget: Arc<MemoryBudget>,
    kept: Mutex<Kept>,
}

impl Store {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        Self {
            budget,
            kept: Mutex::default(),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` under `key` (replacing what was there), if the budget allows. `()` forgets
    /// the key (`get` gives `()` for a missing key anyway), so a script that keeps an entry per
    /// call can give it back.
    pub fn set(&self, key: &str, value: Dynamic) -> Result<(), String> {
        let mut kept = self.kept();
        let freed = kept
            .values
            .get(key)
            .map_or(0, |old| key.len() + value_bytes(old));
        if value.is_unit() {
            kept.values.remove(key);
            kept.bytes -= freed;
            self.budget.release(freed);
            return Ok(());
        }
        let bytes = key.len() + value_bytes(&value);
        self.budget
            .exchange(freed, bytes)
            .map_err(|e| format!("set({key:?}): {e}"))?;
        kept.bytes = kept.bytes - freed + bytes;
        kept.values.insert(key.into(), value);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Dynamic {
        self.kept()
            .values
            .get(key)
            .cloned()
            .unwrap_or(Dynamic::UNIT)
    }

    /// Counts timer `name` while it is set; setting it again costs nothing more.
    pub fn timer_set(&self, name: &str) -> Result<(), String> {
        let mut kept = self.kept();
        if kept.timers.contains_key(name) {
            return Ok(());
        }
        let bytes = ENTRY_OVERHEAD + name.len();
        self.budget
            .exchange(0, bytes)
            .map_err(|e| format!("set_timer({:?}): {e}", crate::untrusted::escaped(name)))?;
        kept.bytes += bytes;
        kept.timers.insert(name.to_owned(), bytes);
        Ok(())
    }

    /// Timer `name` fired or was cancelled.
    pub fn timer_done(&self, name: &str) {
        let mut kept = self.kept();
        if let Some(bytes) = kept.timers.remove(name) {
            kept.bytes -= bytes;
            self.budget.release(bytes);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let bytes = self.kept().bytes;
        self.budget.release(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_count_until_replaced_or_dropped() {
        let budget = MemoryBudget::new(10_000);
        let store = Store::new(budget.clone());
        store.set("a", Dynamic::from("x".repeat(1000))).unwrap();
        let one = budget.used();
        assert!(one > 1000, "{one}");
        store.set("a", Dynamic::from("y".repeat(1000))).unwrap();
        assert_eq!(budget.used(), one, "a replaced value is not counted twice");
        let call = Store::new(budget.clone());
        call.set("b", Dynamic::from("z".repeat(1000))).unwrap();
        assert_eq!(budget.used(), 2 * one);
        drop(call);
        assert_eq!(budget.used(), one, "a call's store goes back when it ends");
        assert_eq!(store.get("a").into_string().unwrap(), "y".repeat(1000));
        store.set("a", Dynamic::UNIT).unwrap();
        assert_eq!(budget.used(), 0, "setting () forgets the key");
        assert!(store.get("a").is_unit());
    }

    #[test]
    fn a_set_over_the_budget_is_an_error_and_keeps_nothing() {
        let budget = MemoryBudget::new(10_000);
        let store = Store::new(budget.clone());
        let mut kept = 0;
        let error = loop {
            match store.set(&format!("k{kept}"), Dynamic::from("x".repeat(1000))) {
                Ok(()) => kept += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(kept, 9);
        assert!(error.contains("memory budget"), "{error}");
        assert!(budget.used() <= budget.limit());
        assert!(store.get(&format!("k{kept}")).is_unit());
    }

    #[test]
    fn nested_values_count_their_items() {
        let list: rhai::Array = (0..10).map(|_| Dynamic::from("x".repeat(100))).collect();
        assert!(value_bytes(&Dynamic::from(list)) > 1000);
        let mut map = Map::new();
        map.insert("k".into(), Dynamic::from("v".repeat(500)));
        assert!(value_bytes(&Dynamic::from(map)) > 500);
    }

    #[test]
    fn timers_count_while_set() {
        let budget = MemoryBudget::new(1000);
        let store = Store::new(budget.clone());
        store.timer_set("tick").unwrap();
        store.timer_set("tick").unwrap();
        let one = budget.used();
        assert!(store.timer_set(&"t".repeat(2000)).is_err());
        store.timer_done("tick");
        assert_eq!(budget.used(), 0);
        assert!(one > 0);
    }
}
