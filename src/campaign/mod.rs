//! Outbound campaigns: a contact list dialled through a bot's script, paced, retried, journaled
//! so that a killed campaign resumes without calling anyone twice; across machines through a
//! NATS JetStream work queue.

mod contacts;
mod dnc;
mod eta;
mod journal;
mod outcome;
mod pacing;
pub mod queue;
mod results;
mod row_cap;
mod runner;
mod schedule;

pub use contacts::{Contact, ContactList, Screen, Skipped, TZ_COLUMN, load as load_contacts};
pub use dnc::DoNotCall;
pub use eta::Eta;
pub use journal::{Entry, Journal, JournalError};
pub use outcome::{Outcome, RetryOn, RetryRule};
pub use pacing::{Window, parse_duration};
pub use results::{Row, read as read_results, write as write_results};
pub use runner::{Pace, Summary, run};

/// Identifies a contact list's content (MD5 of its contacts), so a journal is never resumed
/// with another list.
pub fn fingerprint(contacts: &[Contact]) -> String {
    use md5::{Digest, Md5};
    let text = serde_json::to_vec(contacts).unwrap_or_default();
    format!("{}/{}", hex::encode(Md5::digest(&text)), contacts.len())
}
