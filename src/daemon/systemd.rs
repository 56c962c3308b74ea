//! Running under systemd (docs/deploy/callbot.service, `Type=notify`): readiness once the
//! daemon serves, a status line with the registered bots and live calls, watchdog pings
//! while the runtime is responsive, and "stopping" on shutdown. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use super::Daemon;
use crate::protocol::ConnectionState;

/// Tells systemd the daemon is up; keeps its status line current and, when the unit has
/// `WatchdogSec=`, pings the watchdog at half that period. Stop the returned task on shutdown.
pub fn started(daemon: &std::sync::Arc<Daemon>) -> JoinHandle<()> {
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(daemon)),
    ]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    let daemon = daemon.clone();
    tokio::spawn(async move {
        let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                _ = ping.tick() => if watchdog.is_some() {
                    notify(&[NotifyState::Watchdog]);
                },
                alive = daemon.status_changed() => {
                    if !alive {
                        return;
                    }
                    notify(&[NotifyState::Status(&status_line(&daemon))]);
                }
            }
        }
    })
}

/// Tells systemd the daemon is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn status_line(daemon: &Daemon) -> String {
    let statuses = daemon.statuses();
    let registered = statuses
        .iter()
        .filter(|(_, s)| s.connection == Some(ConnectionState::AccessGranted))
        .count();
    let calls: usize = statuses.iter().map(|(_, s)| s.active_calls).sum();
    format!(
        "{registered}/{} bots registered, {calls} live calls",
        statuses.len()
    )
}

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
