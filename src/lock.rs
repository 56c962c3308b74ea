//! Locking a `std::sync::Mutex` without a panic path. The data behind our locks (caches,
//! tables, counters) stays consistent whatever a holder was doing when it panicked, so a
//! poisoned lock is used as it is rather than spreading the panic to every later caller.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
