//! Running under systemd (docs/deploy/callbot.service, `Type=notify`): readiness once the
//! daemon serves, a status line with the registered bots and live calls, watchdog pings
//! while the runtime is responsive, and "stopping" on shutdown. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{BotStatus, Daemon};
use crate::protocol::ConnectionState;

type Statuses = Vec<(String, watch::Receiver<BotStatus>)>;

/// Tells systemd the daemon is up; keeps its status line current and, when the unit has
/// `WatchdogSec=`, pings the watchdog at half that period. Stop the returned task on shutdown.
pub fn started(daemon: &Daemon) -> JoinHandle<()> {
    let mut statuses = daemon.statuses();
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(&statuses)),
    ]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    tokio::spawn(async move {
        let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                _ = ping.tick() => if watchdog.is_some() {
                    notify(&[NotifyState::Watchdog]);
                },
                alive = changed(&mut statuses) => {
                    if !alive {
                        return;
                    }
                    notify(&[NotifyState::Status(&status_line(&statuses))]);
                }
            }
        }
    })
}

/// Waits until some bot's status changes; `false` when the bots are gone.
async fn changed(statuses: &mut Statuses) -> bool {
    if statuses.is_empty() {
        return std::future::pending().await;
    }
    let changes = statuses.iter_mut().map(|(_, w)| Box::pin(w.changed()));
    futures_util::future::select_all(changes).await.0.is_ok()
}

/// Tells systemd the daemon is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn status_line(statuses: &Statuses) -> String {
    let registered = statuses
        .iter()
        .filter(|(_, s)| s.borrow().connection == Some(ConnectionState::AccessGranted))
        .count();
    let calls: usize = statuses.iter().map(|(_, s)| s.borrow().active_calls).sum();
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
