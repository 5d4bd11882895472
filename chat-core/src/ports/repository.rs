use async_trait::async_trait;
use time::OffsetDateTime;

use crate::block::{Block, Blocked};
use crate::error::Error;
use crate::ids::{MessageId, UserId};
use crate::message::{
    Amendment, Change, FeedEntry, Inserted, Message, MessageStatus, NewMessageRecord,
};
use crate::page::{ConversationSummary, HistoryPage};
use crate::ports::NewJob;

/// Durable storage of messages.
///
/// A store keeps bytes and answers queries; it decides nothing. Every rule (who may
/// do what, which input is valid) lives in `ChatService`, which calls the store only
/// with validated arguments. The conformance suite in `chat_core::testing` checks this
/// contract; every implementation runs it.
///
/// # Contract
///
/// - **Durability.** When a writing method returns `Ok`, its change is committed and
///   survives a crash of the process.
/// - **Ids and revisions.** `insert` assigns ids, and `amend` revisions, from one
///   sequence that ascends in commit order for each user: a message or change
///   committed after `feed_after` returned some position `n` as its largest must get
///   an id or revision above `n`, so a reader that resumes "after `n`" never misses
///   it. (Ids need not be consecutive: revisions take numbers between them.)
/// - **Blocks.** `insert` stores nothing and answers `Error::Forbidden` when either
///   participant blocks the other, checked in the insert's own transaction: a send
///   committed after a block never slips through. (A key already used answers its
///   message first, as below.) `block` is idempotent and keeps the first block's time;
///   `unblock` of nothing does nothing.
/// - **Idempotency.** `insert` is idempotent on `(sender_id, client_message_id)` when the
///   key is present: if a row with that pair exists (also one committed concurrently by
///   another caller), it returns that row with `created: false` and changes nothing.
///   Concurrent inserts of one pair produce exactly one row. Content is not compared
///   here; the service decides whether a match is a replay or a conflict.
/// - **Text.** `message` and `client_message_id` are stored and returned byte for byte,
///   whatever characters they hold.
/// - **Times.** Timestamps are handed in by the caller at microsecond precision and come
///   back equal.
/// - **Status.** Status only moves forward (`sent` → `delivered` → `read`). A change
///   touches only rows whose `receiver_id` is the given receiver and whose status is
///   below the target; moving to `read` also sets `delivered_at` when it is unset.
///   `updated_at` becomes the given time. The methods return exactly the rows they
///   changed, in ascending id order; rows already at or past the target are left as
///   they are and not returned.
/// - **Amendments.** `amend` changes only a message of the given sender that is not
///   deleted: an edit replaces the text and sets `edited_at`, a deletion stores an
///   empty text and sets `deleted_at`; both set `updated_at`, keep the row (its id,
///   status and place in counts and history) and take a new revision. Anything else
///   (no such message, another sender's, one already deleted) changes nothing and
///   answers `None`.
/// - **Jobs.** The jobs of a new message (`NewMessageRecord::jobs`) and of a status
///   change (`jobs`, a copy per changed message) are committed with the change or not
///   at all, each naming its message as subject. A store that is also a
///   [`JobStore`](crate::JobStore) hands them out from there; one that is not is never
///   given any (`ChatService` needs a job store to make them).
/// - **Ordering.** Lists are ordered by id: descending for history pages and
///   `history_before`, ascending for `history_after` and `undelivered`;
///   `feed_after` is ordered by position (ids and revisions together). Conversation lists are ordered by their last message id,
///   descending.
/// - **Last seen.** `set_last_seen` never moves a user's stored time back.
/// - **Errors.** A lost or unreachable backend is `Error::Unavailable`; a unique
///   violation other than the idempotency key is `Error::Conflict`; anything else
///   unexpected is `Error::Internal`. Driver messages never leak into other variants.
///
/// # Implementing a store
///
/// Every method, on a backend of your own (here an [`InMemoryRepository`] stands for
/// it, a key-value store or a remote service say), plugged into a [`ChatService`].
/// With the `testing` feature, `chat_core::message_repository_suite!` runs the contract
/// against it in your tests, as it does for the stores of this project.
///
/// [`InMemoryRepository`]: crate::InMemoryRepository
/// [`ChatService`]: crate::ChatService
///
/// ```
/// use std::sync::Arc;
///
/// use chat_core::{
///     Amendment, Block, Blocked, Change, ChatService, ConversationSummary, Error, FeedEntry,
///     HistoryPage,
///     InMemoryRepository, InProcessNotifier, Inserted, Message, MessageId,
///     MessageRepository, MessageStatus, NewJob, NewMessageRecord, UserId, async_trait,
/// };
/// use time::OffsetDateTime;
///
/// #[derive(Default)]
/// struct MyStore {
///     backend: InMemoryRepository,
/// }
///
/// #[async_trait]
/// impl MessageRepository for MyStore {
///     async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
///         self.backend.insert(record).await
///     }
///     async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
///         self.backend.get(id).await
///     }
///     async fn history_page(
///         &self, a: UserId, b: UserId, offset: u64, limit: u32,
///     ) -> Result<HistoryPage, Error> {
///         self.backend.history_page(a, b, offset, limit).await
///     }
///     async fn history_before(
///         &self, a: UserId, b: UserId, before: Option<MessageId>, limit: u32,
///     ) -> Result<Vec<Message>, Error> {
///         self.backend.history_before(a, b, before, limit).await
///     }
///     async fn history_after(
///         &self, a: UserId, b: UserId, after: MessageId, limit: u32,
///     ) -> Result<Vec<Message>, Error> {
///         self.backend.history_after(a, b, after, limit).await
///     }
///     async fn set_status(
///         &self, receiver: UserId, ids: &[MessageId], status: MessageStatus,
///         at: OffsetDateTime, jobs: &[NewJob],
///     ) -> Result<Vec<Message>, Error> {
///         self.backend.set_status(receiver, ids, status, at, jobs).await
///     }
///     async fn mark_conversation_read(
///         &self, receiver: UserId, sender: UserId, up_to: Option<MessageId>,
///         at: OffsetDateTime, jobs: &[NewJob],
///     ) -> Result<Vec<MessageId>, Error> {
///         self.backend.mark_conversation_read(receiver, sender, up_to, at, jobs).await
///     }
///     async fn undelivered(
///         &self, receiver: UserId, after: MessageId, limit: u32,
///     ) -> Result<Vec<Message>, Error> {
///         self.backend.undelivered(receiver, after, limit).await
///     }
///     async fn feed_after(
///         &self, user: UserId, after: MessageId, limit: u32,
///     ) -> Result<Vec<FeedEntry>, Error> {
///         self.backend.feed_after(user, after, limit).await
///     }
///     async fn amend(
///         &self, sender: UserId, id: MessageId, amendment: Amendment, at: OffsetDateTime,
///     ) -> Result<Option<Change>, Error> {
///         self.backend.amend(sender, id, amendment, at).await
///     }
///     async fn block(
///         &self, blocker: UserId, blocked: UserId, at: OffsetDateTime,
///     ) -> Result<Blocked, Error> {
///         self.backend.block(blocker, blocked, at).await
///     }
///     async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, Error> {
///         self.backend.unblock(blocker, blocked).await
///     }
///     async fn blocks(&self, blocker: UserId) -> Result<Vec<Block>, Error> {
///         self.backend.blocks(blocker).await
///     }
///     async fn blocked_among(
///         &self, user: UserId, others: &[UserId],
///     ) -> Result<Vec<UserId>, Error> {
///         self.backend.blocked_among(user, others).await
///     }
///     async fn acquainted_among(
///         &self, user: UserId, others: &[UserId],
///     ) -> Result<Vec<UserId>, Error> {
///         self.backend.acquainted_among(user, others).await
///     }
///     async fn set_last_seen(&self, user: UserId, at: OffsetDateTime) -> Result<(), Error> {
///         self.backend.set_last_seen(user, at).await
///     }
///     async fn last_seen(
///         &self, users: &[UserId],
///     ) -> Result<Vec<(UserId, OffsetDateTime)>, Error> {
///         self.backend.last_seen(users).await
///     }
///     async fn conversations(
///         &self, user: UserId, before: Option<MessageId>, limit: u32,
///     ) -> Result<Vec<ConversationSummary>, Error> {
///         self.backend.conversations(user, before, limit).await
///     }
///     async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
///         self.backend.unread_total(user).await
///     }
///     async fn ping(&self) -> Result<(), Error> {
///         self.backend.ping().await
///     }
/// }
///
/// let chat = ChatService::new(
///     Arc::new(MyStore::default()),
///     Arc::new(InProcessNotifier::new()),
/// );
/// # let _ = chat;
/// ```
#[async_trait]
pub trait MessageRepository: Send + Sync + 'static {
    /// Stores a new message with status `sent`, or returns the existing row holding the
    /// same `(sender_id, client_message_id)`.
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error>;

    /// The message with this id, if any.
    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error>;

    /// The messages between `a` and `b` (either direction), newest first, skipping
    /// `offset` and returning at most `limit`, with the conversation's total.
    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error>;

    /// At most `limit` messages between `a` and `b` with an id below `before` (all
    /// when `None`), newest first.
    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error>;

    /// At most `limit` messages between `a` and `b` with an id above `after`, oldest
    /// first.
    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error>;

    /// Moves the listed messages received by `receiver` to `status` (`Delivered` or
    /// `Read`) at time `at`; returns the rows that changed. Ids of other users'
    /// messages, unknown ids and duplicates are ignored. Asking for `Sent` changes
    /// nothing. For each message that changed, a copy of every job in `jobs` is stored
    /// with that message as its subject, in the same transaction (see
    /// [`JobStore`](crate::JobStore)); a store without a job outbox is only ever given
    /// none.
    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<Message>, Error>;

    /// Marks every message from `sender` to `receiver` with an id up to `up_to`
    /// (inclusive; all when `None`) as read at `at`; returns the ids that changed,
    /// ascending. `jobs` are stored for each of them as for
    /// [`set_status`](Self::set_status).
    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<MessageId>, Error>;

    /// At most `limit` messages to `receiver` still `sent`, with an id above `after`
    /// (0 for all), oldest first.
    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error>;

    /// The first `limit` entries of `user`'s feed after position `after`, by position:
    /// every message to or from `user` with an id above `after`, as it is now, at its
    /// id ([`FeedEntry::New`]), and every one with a revision above `after` at its
    /// revision ([`FeedEntry::Changed`]); a message new and changed since `after` is
    /// both. The catch-up of a reconnecting device.
    async fn feed_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, Error>;

    /// Edits or deletes message `id` of `sender` at `at` under a new revision (see
    /// *Amendments*); `None` when there is no such message of theirs that is not
    /// deleted.
    async fn amend(
        &self,
        sender: UserId,
        id: MessageId,
        amendment: Amendment,
        at: OffsetDateTime,
    ) -> Result<Option<Change>, Error>;

    /// At most `limit` of `user`'s conversations whose last message id is below
    /// `before` (all when `None`), by last message id descending, each with the count
    /// of messages from the counterpart not yet read.
    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error>;

    /// Messages to `user` not yet read, over all conversations.
    async fn unread_total(&self, user: UserId) -> Result<u64, Error>;

    /// Records that `blocker` blocks `blocked` from `at` on, unless it already does:
    /// the block as stored, and whether this call made it.
    async fn block(
        &self,
        blocker: UserId,
        blocked: UserId,
        at: OffsetDateTime,
    ) -> Result<Blocked, Error>;

    /// Lifts `blocker`'s block of `blocked`; whether there was one.
    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, Error>;

    /// Every user `blocker` blocks, the newest block first.
    async fn blocks(&self, blocker: UserId) -> Result<Vec<Block>, Error>;

    /// Of `others`, each user with a block between them and `user`, either way
    /// (each once, in any order).
    async fn blocked_among(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>, Error>;

    /// Of `others`, each user `user` has a conversation with (each once, in any order).
    async fn acquainted_among(&self, user: UserId, others: &[UserId])
    -> Result<Vec<UserId>, Error>;

    /// Stores `at` as the last time `user` was connected, unless a later time is
    /// stored.
    async fn set_last_seen(&self, user: UserId, at: OffsetDateTime) -> Result<(), Error>;

    /// The stored last-seen time of each of `users` that has one (each once, in any
    /// order).
    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<(UserId, OffsetDateTime)>, Error>;

    /// Checks the store can answer queries (for readiness probes).
    async fn ping(&self) -> Result<(), Error>;
}
