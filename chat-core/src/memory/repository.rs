use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::block::{Block, Blocked};
use crate::error::Error;
use crate::ids::JobId;
use crate::ids::{MessageId, UserId};
use crate::memory::InMemoryJobStore;
use crate::message::{
    Amendment, Change, FeedEntry, Inserted, Message, MessageStatus, NewMessageRecord,
};
use crate::page::{ConversationSummary, HistoryPage};
use crate::ports::{Claimed, Job, JobState, JobStore, MessageRepository, NewJob, Outcome};

/// A [`MessageRepository`] in process memory. Nothing survives the process; otherwise
/// it keeps the full contract, and it is the reference the conformance suite is
/// written against.
#[derive(Debug, Default)]
pub struct InMemoryRepository {
    state: Mutex<State>,
    /// Its job outbox: jobs written with a message are enqueued under the message
    /// lock, so no one sees one without the other.
    jobs: InMemoryJobStore,
}

#[derive(Debug, Default)]
struct State {
    /// Every message, by ascending id.
    messages: Vec<Message>,
    /// The last id or revision given out: both come from this one sequence.
    last_position: i64,
    /// The message each revision changed, by revision; a message's older revisions
    /// are removed when it changes again.
    changes: BTreeMap<MessageId, MessageId>,
    /// The current revision of each changed message.
    revisions: HashMap<MessageId, MessageId>,
    by_client_id: HashMap<(UserId, String), MessageId>,
    /// Ids of each conversation, ascending, keyed by `(smaller user, larger user)`.
    conversations: HashMap<(UserId, UserId), Vec<MessageId>>,
    /// Ids to or from each user, ascending.
    by_user: HashMap<UserId, Vec<MessageId>>,
    /// When each block was made, by (blocker, blocked).
    blocks: HashMap<(UserId, UserId), OffsetDateTime>,
    /// The last time each user was seen connected.
    last_seen: HashMap<UserId, OffsetDateTime>,
}

impl InMemoryRepository {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path leaves the state half-changed, so a panic elsewhere cannot
        // poison it in a way that matters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn conversation_key(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}

impl State {
    fn message(&self, id: MessageId) -> Option<&Message> {
        let index = self.messages.binary_search_by_key(&id, |m| m.id).ok()?;
        self.messages.get(index)
    }

    fn message_mut(&mut self, id: MessageId) -> Option<&mut Message> {
        let index = self.messages.binary_search_by_key(&id, |m| m.id).ok()?;
        self.messages.get_mut(index)
    }

    /// The next number of the id and revision sequence.
    fn next_position(&mut self) -> MessageId {
        self.last_position += 1;
        MessageId::new(self.last_position)
    }

    fn conversation(&self, a: UserId, b: UserId) -> &[MessageId] {
        self.conversations
            .get(&conversation_key(a, b))
            .map_or(&[], Vec::as_slice)
    }

    fn collect<'a>(&self, ids: impl Iterator<Item = &'a MessageId>, limit: u32) -> Vec<Message> {
        ids.filter_map(|&id| self.message(id).cloned())
            .take(limit as usize)
            .collect()
    }

    fn blocked_between(&self, a: UserId, b: UserId) -> bool {
        self.blocks.contains_key(&(a, b)) || self.blocks.contains_key(&(b, a))
    }

    fn unread_from(&self, receiver: UserId, sender: UserId) -> u64 {
        self.conversation(receiver, sender)
            .iter()
            .filter_map(|&id| self.message(id))
            .filter(|m| m.receiver_id == receiver && m.status != MessageStatus::Read)
            .count() as u64
    }
}

/// Moves `message` forward to `status` at `at`; `false` if it already was there.
fn advance(message: &mut Message, status: MessageStatus, at: OffsetDateTime) -> bool {
    if status == MessageStatus::Sent || message.status >= status {
        return false;
    }
    message.status = status;
    message.updated_at = at;
    message.delivered_at.get_or_insert(at);
    if status == MessageStatus::Read {
        message.read_at = Some(at);
    }
    true
}

#[async_trait]
impl MessageRepository for InMemoryRepository {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        let mut state = self.state();
        if let Some(key) = &record.client_message_id {
            let existing = state
                .by_client_id
                .get(&(record.sender_id, key.clone()))
                .and_then(|&id| state.message(id));
            if let Some(existing) = existing {
                return Ok(Inserted {
                    message: existing.clone(),
                    created: false,
                });
            }
        }
        if state.blocked_between(record.sender_id, record.receiver_id) {
            return Err(Error::Forbidden {
                reason: "a block stands between these users",
            });
        }
        let id = state.next_position();
        let mut record = record;
        let jobs = std::mem::take(&mut record.jobs);
        if !jobs.is_empty() {
            self.jobs.enqueue_now(jobs, Some(id), record.created_at);
        }
        let message = record.into_message(id);
        if let Some(key) = &message.client_message_id {
            state
                .by_client_id
                .insert((message.sender_id, key.clone()), id);
        }
        state
            .conversations
            .entry(conversation_key(message.sender_id, message.receiver_id))
            .or_default()
            .push(id);
        for user in [message.sender_id, message.receiver_id] {
            state.by_user.entry(user).or_default().push(id);
        }
        state.messages.push(message.clone());
        Ok(Inserted {
            message,
            created: true,
        })
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        Ok(self.state().message(id).cloned())
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        let state = self.state();
        let ids = state.conversation(a, b);
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(HistoryPage {
            messages: state.collect(ids.iter().rev().skip(skip), limit),
            total: ids.len() as u64,
        })
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let state = self.state();
        let ids = state.conversation(a, b);
        let end = before.map_or(ids.len(), |before| ids.partition_point(|&id| id < before));
        Ok(state.collect(ids[..end].iter().rev(), limit))
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let state = self.state();
        let ids = state.conversation(a, b);
        let start = ids.partition_point(|&id| id <= after);
        Ok(state.collect(ids[start..].iter(), limit))
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<Message>, Error> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut state = self.state();
        let mut changed = Vec::new();
        for id in sorted {
            if let Some(message) = state.message_mut(id)
                && message.receiver_id == receiver
                && advance(message, status, at)
            {
                changed.push(message.clone());
            }
        }
        // Under the messages' lock, so the change and its jobs are seen together.
        if !jobs.is_empty() {
            for message in &changed {
                self.jobs.enqueue_now(jobs.to_vec(), Some(message.id), at);
            }
        }
        Ok(changed)
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<MessageId>, Error> {
        let mut state = self.state();
        let ids: Vec<MessageId> = state
            .conversation(receiver, sender)
            .iter()
            .copied()
            .filter(|&id| up_to.is_none_or(|up_to| id <= up_to))
            .collect();
        let mut changed = Vec::new();
        for id in ids {
            if let Some(message) = state.message_mut(id)
                && message.receiver_id == receiver
                && advance(message, MessageStatus::Read, at)
            {
                changed.push(id);
            }
        }
        if !jobs.is_empty() {
            for &id in &changed {
                self.jobs.enqueue_now(jobs.to_vec(), Some(id), at);
            }
        }
        Ok(changed)
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let state = self.state();
        let ids = state.by_user.get(&receiver).map_or(&[][..], Vec::as_slice);
        let start = ids.partition_point(|&id| id <= after);
        Ok(ids[start..]
            .iter()
            .filter_map(|&id| state.message(id))
            .filter(|m| m.receiver_id == receiver && m.status == MessageStatus::Sent)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn feed_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, Error> {
        let state = self.state();
        let ids = state.by_user.get(&user).map_or(&[][..], Vec::as_slice);
        let start = ids.partition_point(|&id| id <= after);
        let new = state
            .collect(ids[start..].iter(), limit)
            .into_iter()
            .map(FeedEntry::New);
        let changed = state
            .changes
            .range(MessageId::new(after.get().saturating_add(1))..)
            .filter_map(|(&revision, &id)| {
                let message = state.message(id)?;
                message.is_participant(user).then(|| {
                    FeedEntry::Changed(Change {
                        revision,
                        message: message.clone(),
                    })
                })
            })
            .take(limit as usize);
        let mut entries: Vec<FeedEntry> = new.chain(changed).collect();
        // Stable: a message new and changed keeps its new entry first.
        entries.sort_by_key(FeedEntry::position);
        entries.truncate(limit as usize);
        Ok(entries)
    }

    async fn amend(
        &self,
        sender: UserId,
        id: MessageId,
        amendment: Amendment,
        at: OffsetDateTime,
    ) -> Result<Option<Change>, Error> {
        let mut state = self.state();
        let amendable = state
            .message(id)
            .is_some_and(|m| m.sender_id == sender && m.deleted_at.is_none());
        if !amendable {
            return Ok(None);
        }
        let revision = state.next_position();
        if let Some(previous) = state.revisions.insert(id, revision) {
            state.changes.remove(&previous);
        }
        state.changes.insert(revision, id);
        let Some(message) = state.message_mut(id) else {
            return Ok(None);
        };
        match amendment {
            Amendment::Edit(text) => {
                message.message = text;
                message.edited_at = Some(at);
            }
            Amendment::Delete => {
                message.message = String::new();
                message.deleted_at = Some(at);
            }
        }
        message.updated_at = at;
        Ok(Some(Change {
            revision,
            message: message.clone(),
        }))
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        let state = self.state();
        // Last message id per counterpart, then newest first.
        let mut last: BTreeMap<UserId, MessageId> = BTreeMap::new();
        for &id in state.by_user.get(&user).map_or(&[][..], Vec::as_slice) {
            if let Some(m) = state.message(id) {
                last.insert(m.counterpart(user), id);
            }
        }
        let mut rows: Vec<(UserId, MessageId)> = last
            .into_iter()
            .filter(|&(_, id)| before.is_none_or(|before| id < before))
            .collect();
        rows.sort_unstable_by_key(|&(_, id)| std::cmp::Reverse(id));
        Ok(rows
            .into_iter()
            .take(limit as usize)
            .filter_map(|(counterpart, id)| {
                Some(ConversationSummary {
                    counterpart,
                    last_message: state.message(id)?.clone(),
                    unread_count: state.unread_from(user, counterpart),
                })
            })
            .collect())
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        let state = self.state();
        Ok(state
            .by_user
            .get(&user)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|&id| state.message(id))
            .filter(|m| m.receiver_id == user && m.status != MessageStatus::Read)
            .count() as u64)
    }

    async fn block(
        &self,
        blocker: UserId,
        blocked: UserId,
        at: OffsetDateTime,
    ) -> Result<Blocked, Error> {
        let mut state = self.state();
        let mut created = false;
        let created_at = *state.blocks.entry((blocker, blocked)).or_insert_with(|| {
            created = true;
            at
        });
        Ok(Blocked {
            block: Block {
                user_id: blocked,
                created_at,
            },
            created,
        })
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, Error> {
        Ok(self.state().blocks.remove(&(blocker, blocked)).is_some())
    }

    async fn blocks(&self, blocker: UserId) -> Result<Vec<Block>, Error> {
        let state = self.state();
        let mut blocks: Vec<Block> = state
            .blocks
            .iter()
            .filter(|((by, _), _)| *by == blocker)
            .map(|(&(_, user_id), &created_at)| Block {
                user_id,
                created_at,
            })
            .collect();
        blocks.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.user_id)));
        Ok(blocks)
    }

    async fn blocked_among(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>, Error> {
        let state = self.state();
        let mut found: Vec<UserId> = others
            .iter()
            .copied()
            .filter(|&other| state.blocked_between(user, other))
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn acquainted_among(
        &self,
        user: UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, Error> {
        let state = self.state();
        let mut found: Vec<UserId> = others
            .iter()
            .copied()
            .filter(|&other| !state.conversation(user, other).is_empty())
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn set_last_seen(&self, user: UserId, at: OffsetDateTime) -> Result<(), Error> {
        let mut state = self.state();
        let seen = state.last_seen.entry(user).or_insert(at);
        *seen = (*seen).max(at);
        Ok(())
    }

    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<(UserId, OffsetDateTime)>, Error> {
        let state = self.state();
        let mut found: Vec<(UserId, OffsetDateTime)> = users
            .iter()
            .filter_map(|user| Some((*user, *state.last_seen.get(user)?)))
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The outbox of the messages' jobs, kept beside them.
#[async_trait]
impl JobStore for InMemoryRepository {
    async fn enqueue(&self, jobs: Vec<NewJob>, now: OffsetDateTime) -> Result<Vec<JobId>, Error> {
        self.jobs.enqueue(jobs, now).await
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, Error> {
        self.jobs.claim(now, lease, limit).await
    }

    async fn finish(&self, id: JobId, lease: u64, outcome: Outcome) -> Result<bool, Error> {
        self.jobs.finish(id, lease, outcome).await
    }

    async fn list(&self, state: JobState, limit: u32) -> Result<Vec<Job>, Error> {
        self.jobs.list(state, limit).await
    }

    async fn retry(&self, id: JobId, now: OffsetDateTime) -> Result<bool, Error> {
        self.jobs.retry(id, now).await
    }

    async fn discard(&self, id: JobId) -> Result<bool, Error> {
        self.jobs.discard(id).await
    }
}
