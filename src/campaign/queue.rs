//! Campaigns larger than one machine (docs/architecture.md "Campaigns"): contacts go to a NATS
//! JetStream work-queue stream; any number of workers pull them with explicit acks; results go to a
//! second stream. A key-value bucket holds one claim per attempt, taken before the call is placed,
//! so a contact redelivered after its worker died is never dialled again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::{self, AckKind, Context};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::contacts::Contact;
use super::journal::now_ms;
use super::outcome::{Outcome, RetryRule};
use super::results::Row;
use crate::call::Pacer;
use crate::daemon::Daemon;

/// How long a stopping worker waits for its calls in progress to finish and report.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A contact to dial, as queued.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    contact: Contact,
    /// Attempts made before this one.
    attempts: u32,
    /// Unix ms before which it must not be dialled (a retry).
    not_before: u64,
}

/// The names one campaign uses in NATS.
struct Names {
    contacts: String,
    contacts_subject: String,
    results: String,
    results_subject: String,
    claims: String,
}

impl Names {
    fn new(campaign: &str) -> Result<Self, Error> {
        if campaign.is_empty()
            || !campaign
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("campaign name {campaign:?}: use letters, digits, - and _").into());
        }
        let upper = campaign.to_ascii_uppercase().replace('-', "_");
        Ok(Self {
            contacts: format!("CALLBOT_{upper}_CONTACTS"),
            contacts_subject: format!("callbot.{campaign}.contacts"),
            results: format!("CALLBOT_{upper}_RESULTS"),
            results_subject: format!("callbot.{campaign}.results"),
            claims: format!("callbot_{}_claims", campaign.replace('-', "_")),
        })
    }
}

/// A connection to the campaign's streams.
pub struct Queue {
    js: Context,
    names: Names,
}

impl Queue {
    /// Connects and creates the streams and the claims bucket if they do not exist.
    pub async fn connect(url: &str, campaign: &str) -> Result<Self, Error> {
        let names = Names::new(campaign)?;
        let client = async_nats::connect(url).await?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: names.contacts.clone(),
            subjects: vec![names.contacts_subject.clone()],
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        })
        .await?;
        js.get_or_create_stream(stream::Config {
            name: names.results.clone(),
            subjects: vec![names.results_subject.clone()],
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        })
        .await?;
        if js.get_key_value(&names.claims).await.is_err() {
            js.create_key_value(kv::Config {
                bucket: names.claims.clone(),
                history: 1,
                ..Default::default()
            })
            .await?;
        }
        Ok(Self { js, names })
    }

    async fn publish(&self, subject: &str, id: String, payload: Vec<u8>) -> Result<(), Error> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        self.js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await?
            .await?;
        Ok(())
    }

    /// Puts contacts on the work queue (publishing the same list twice adds nothing: message
    /// ids are the contact lines).
    pub async fn publish_contacts(&self, contacts: &[Contact]) -> Result<usize, Error> {
        for contact in contacts {
            let job = Job {
                contact: contact.clone(),
                attempts: 0,
                not_before: 0,
            };
            let id = format!("contact-{}-0", contact.line);
            self.publish(&self.names.contacts_subject, id, serde_json::to_vec(&job)?)
                .await?;
        }
        Ok(contacts.len())
    }

    async fn publish_result(&self, row: &Row) -> Result<(), Error> {
        let id = format!("result-{}-{}", row.line, row.attempts);
        let payload = serde_json::to_vec(row)?;
        self.publish(&self.names.results_subject, id, payload).await
    }

    /// Every result so far, the last per contact, sorted by line.
    pub async fn results(&self) -> Result<Vec<Row>, Error> {
        let mut stream = self.js.get_stream(&self.names.results).await?;
        let total = stream.info().await?.state.messages;
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await?;
        let mut latest = std::collections::BTreeMap::new();
        let mut messages = consumer.messages().await?;
        let mut seen = 0;
        while seen < total {
            let Some(message) = tokio::time::timeout(Duration::from_secs(5), messages.next())
                .await
                .ok()
                .flatten()
            else {
                break;
            };
            seen += 1;
            let Ok(row) = serde_json::from_slice::<Row>(&message?.payload) else {
                continue;
            };
            let newer = latest
                .get(&row.line)
                .is_none_or(|r: &Row| r.attempts <= row.attempts);
            if newer {
                latest.insert(row.line, row);
            }
        }
        Ok(latest.into_values().collect())
    }

    /// Pulls contacts and dials them through `bot` until the queue has been empty for `idle`
    /// (or forever with `None`). Returns how many contacts this worker finished.
    ///
    /// After `stop`, no message is pulled; calls in progress get [`STOP_GRACE`] to finish and
    /// report, then their tasks are dropped like a crashed worker's (the claims keep the
    /// contacts from being dialled twice).
    pub async fn work(
        self,
        daemon: Arc<Daemon>,
        bot: &str,
        settings: WorkSettings,
        stop: impl Future<Output = ()>,
    ) -> Result<u64, Error> {
        let stream = self.js.get_stream(&self.names.contacts).await?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                "workers",
                pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_ack_pending: settings.concurrency as i64,
                    ..Default::default()
                },
            )
            .await?;
        let claims = self.js.get_key_value(&self.names.claims).await?;
        let queue = Arc::new(self);
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let pacer = Arc::new(Pacer::new(settings.cps));
        let finished = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut messages = consumer.messages().await?;
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        let mut stopped = false;
        loop {
            while tasks.try_join_next().is_some() {}
            // `None`: the queue stayed empty for the idle time.
            let pulled = async {
                match settings.idle {
                    Some(idle) => tokio::time::timeout(idle, messages.next()).await.ok(),
                    None => Some(messages.next().await),
                }
            };
            let next = tokio::select! {
                pulled = pulled => match pulled {
                    Some(next) => next,
                    None if tasks.is_empty() => break,
                    None => continue,
                },
                () = &mut stop => {
                    stopped = true;
                    break;
                }
            };
            let Some(message) = next else { break };
            let message = message?;
            let Ok(job) = serde_json::from_slice::<Job>(&message.payload) else {
                tracing::warn!("dropping a malformed campaign message");
                let _ = message.ack().await;
                continue;
            };
            let wait = job.not_before.saturating_sub(now_ms());
            if wait > 0 {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_millis(wait))))
                    .await;
                continue;
            }
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit?,
                () = &mut stop => {
                    // Not dialled: back to the stream for another worker (or our next run).
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    stopped = true;
                    break;
                }
            };
            let (queue, daemon, claims, pacer, finished) = (
                queue.clone(),
                daemon.clone(),
                claims.clone(),
                pacer.clone(),
                finished.clone(),
            );
            let bot = bot.to_owned();
            let settings = settings.clone();
            tasks.spawn(async move {
                let _permit = permit;
                match handle(
                    &queue, &daemon, &bot, &claims, &pacer, &settings, job, &message,
                )
                .await
                {
                    Ok(true) => {
                        finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!("campaign job: {e}"),
                }
            });
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if stopped {
            let _ = tokio::time::timeout(STOP_GRACE, drain).await;
            tasks.shutdown().await;
        } else {
            drain.await;
        }
        Ok(finished.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// How a worker pulls and dials.
#[derive(Clone, Debug)]
pub struct WorkSettings {
    pub concurrency: usize,
    pub cps: f64,
    pub retry: RetryRule,
    /// A contact not acked in this time goes to another worker.
    pub ack_wait: Duration,
    /// Stop after the queue has been empty this long (`None`: run until stopped).
    pub idle: Option<Duration>,
    /// Names this worker in claims.
    pub worker: String,
    /// How long a contact's phone may ring (default: a minute).
    pub ring_timeout: Option<Duration>,
}

/// Claims the attempt, dials, publishes the result, acks. Returns whether the contact is done.
#[allow(clippy::too_many_arguments)]
async fn handle(
    queue: &Queue,
    daemon: &Daemon,
    bot: &str,
    claims: &kv::Store,
    pacer: &Pacer,
    settings: &WorkSettings,
    job: Job,
    message: &jetstream::Message,
) -> Result<bool, Error> {
    // Wait for our turn and a registered link first: a claim is only taken by a worker that
    // is about to dial.
    pacer.wait().await;
    if !daemon.connected(bot).await {
        return Err("the bot stopped".into());
    }
    let attempt = job.attempts + 1;
    let key = format!("{}-{attempt}", job.contact.line);
    let claimed = claims.create(&key, settings.worker.clone().into()).await;
    if let Err(e) = claimed {
        if e.kind() != kv::CreateErrorKind::AlreadyExists {
            return Err(e.into());
        }
        // A worker took this attempt and died before acking: it may have reached the contact,
        // so the contact is not dialled again.
        let row = Row {
            line: job.contact.line,
            number: job.contact.number.clone(),
            attempts: attempt,
            outcome: Outcome::interrupted(),
        };
        queue.publish_result(&row).await?;
        message.ack().await?;
        return Ok(true);
    }
    let Some(finished) = daemon
        .dial(
            bot,
            &job.contact.number,
            job.contact.vars.clone(),
            settings.ring_timeout,
        )
        .await
    else {
        return Err("the bot is shutting down".into());
    };
    tokio::pin!(finished);
    // Keep the message ours while the call lasts.
    let info = loop {
        tokio::select! {
            result = &mut finished => break result.ok(),
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    let outcome = info.map_or_else(Outcome::interrupted, |info| Outcome::from_call(&info));
    let retry = &settings.retry;
    if retry.again(&outcome, attempt) {
        let next = Job {
            contact: job.contact.clone(),
            attempts: attempt,
            not_before: now_ms() + retry.after.as_millis() as u64,
        };
        let id = format!("contact-{}-{attempt}", job.contact.line);
        queue
            .publish(
                &queue.names.contacts_subject,
                id,
                serde_json::to_vec(&next)?,
            )
            .await?;
        message.ack().await?;
        return Ok(false);
    }
    let row = Row {
        line: job.contact.line,
        number: job.contact.number,
        attempts: attempt,
        outcome,
    };
    queue.publish_result(&row).await?;
    message.ack().await?;
    Ok(true)
}
