//! The first messages by id across several conversations, each read in id order.
//!
//! Catch-up and the undelivered backlog both read one ascending range per
//! conversation and keep the `limit` smallest ids overall. Once `limit` messages are
//! held, only smaller ids can still make the result, so each later conversation is
//! read only below [`FirstById::below`].

use chat_core::Message;

use crate::error::StoreError;

/// Collects the first `limit` messages by id from ascending per-conversation reads.
pub(crate) struct FirstById {
    found: Vec<Message>,
    limit: usize,
    below: i64,
}

impl FirstById {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            found: Vec::new(),
            limit,
            below: i64::MAX,
        }
    }

    /// Ids at or above this can no longer make the result.
    pub(crate) fn below(&self) -> i64 {
        self.below
    }

    /// The most one conversation can still contribute, as a SQL `LIMIT`.
    pub(crate) fn sql_limit(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }

    /// Adds one conversation's messages.
    pub(crate) fn add(
        &mut self,
        rows: impl Iterator<Item = rusqlite::Result<Message>>,
    ) -> Result<(), StoreError> {
        let held = self.found.len();
        for message in rows {
            self.found.push(message?);
        }
        // Once the result is full, keep the `limit` smallest (a selection, not a sort:
        // this runs for each conversation); most conversations then add nothing.
        if self.found.len() > held && self.found.len() >= self.limit {
            let last = self.limit.saturating_sub(1);
            self.found.select_nth_unstable_by_key(last, |m| m.id);
            self.found.truncate(self.limit);
            self.below = self.found.get(last).map_or(i64::MAX, |m| m.id.get());
        }
        Ok(())
    }

    /// The messages, ascending by id.
    pub(crate) fn finish(mut self) -> Vec<Message> {
        self.found.sort_unstable_by_key(|m| m.id);
        self.found.truncate(self.limit);
        self.found
    }
}
