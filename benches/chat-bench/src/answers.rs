//! What the server answered to a run's sends. A run's figures stand only when every
//! send was stored as new: a replay of an earlier run's `client_message_id`, a refusal
//! or a lost answer would make a throughput or a "lost 0" mean nothing, so the run
//! stops with the tally instead of printing figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A key of this run, different in every run: in `client_message_id`s, so a run never
/// replays an earlier run's sends on the same database.
pub(crate) fn run_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = (nanos ^ (u128::from(std::process::id()) << 64)) as u64;
    format!("{:x}", mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Answers to sends, by kind.
#[derive(Debug, Default, Clone)]
pub(crate) struct Answers {
    created: u64,
    other: BTreeMap<u16, u64>,
    unanswered: u64,
}

impl Answers {
    /// Counts one answer; whether it stored a new message (201).
    pub(crate) fn record(&mut self, answer: &Result<reqwest::Response, reqwest::Error>) -> bool {
        self.count(answer.as_ref().ok().map(|a| a.status().as_u16()))
    }

    /// Counts an answer of `status`, or none.
    fn count(&mut self, status: Option<u16>) -> bool {
        match status {
            Some(201) => {
                self.created += 1;
                true
            }
            Some(status) => {
                *self.other.entry(status).or_default() += 1;
                false
            }
            None => {
                self.unanswered += 1;
                false
            }
        }
    }

    /// Sends stored as new.
    pub(crate) fn created(&self) -> u64 {
        self.created
    }

    /// Adds `other`'s counts.
    pub(crate) fn merge(&mut self, other: &Self) {
        self.created += other.created;
        self.unanswered += other.unanswered;
        for (status, count) in &other.other {
            *self.other.entry(*status).or_default() += count;
        }
    }

    /// `Ok` when every send was stored as new; otherwise what went wrong, and what to
    /// change.
    pub(crate) fn all_new(&self, what: &str) -> Result<(), String> {
        let refused: u64 = self.other.values().sum::<u64>() + self.unanswered;
        if refused == 0 {
            return Ok(());
        }
        let total = self.created + refused;
        let mut text = format!(
            "{refused} of {total} {what} were not stored as new messages, so no figures are printed:"
        );
        for (status, count) in &self.other {
            let why = match status {
                200 => "a replay of a client_message_id already stored",
                401 => "the token was refused: is --secret the server's CHAT_JWT_SECRET?",
                403 => "refused by the server's rules or policy",
                422 => "refused as invalid",
                429 => {
                    "over the send limit: start the server with CHAT_SEND_RATE_PER_MINUTE \
                     and CHAT_SEND_BURST raised"
                }
                503 => "the store was unavailable",
                _ => "unexpected",
            };
            let _ = write!(text, "\n  {status} × {count}: {why}");
        }
        if self.unanswered > 0 {
            let _ = write!(
                text,
                "\n  no answer × {}: connection failed or timed out",
                self.unanswered
            );
        }
        Err(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_stand_only_when_every_send_was_new() {
        let mut answers = Answers::default();
        for _ in 0..3 {
            assert!(answers.count(Some(201)));
        }
        assert_eq!(answers.all_new("sends"), Ok(()));

        let mut replays = Answers::default();
        for _ in 0..5 {
            assert!(!replays.count(Some(200)));
        }
        replays.count(Some(429));
        replays.count(None);
        answers.merge(&replays);
        assert_eq!(answers.created(), 3);
        let why = answers.all_new("sends").unwrap_err();
        assert!(why.starts_with("7 of 10 sends were not stored"), "{why}");
        assert!(why.contains("200 × 5: a replay"), "{why}");
        assert!(why.contains("429 × 1: over the send limit"), "{why}");
        assert!(why.contains("no answer × 1"), "{why}");
    }

    #[test]
    fn run_keys_differ() {
        let first = run_key();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_ne!(first, run_key());
    }
}
