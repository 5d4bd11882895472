//! A store wrapped by a layer that sees every call: for decorators (timing every call)
//! and test doubles (failing some calls) that would otherwise implement the whole
//! [`MessageRepository`] again to change one thing.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::MessageRepository;
use crate::block::{Block, Blocked};
use crate::error::Error;
use crate::ids::{MessageId, UserId};
use crate::message::{
    Amendment, Change, FeedEntry, Inserted, Message, MessageStatus, NewMessageRecord,
};
use crate::page::{ConversationSummary, HistoryPage};
use crate::ports::NewJob;

/// A method of [`MessageRepository`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// `insert`
    Insert,
    /// `get`
    Get,
    /// `history_page`
    HistoryPage,
    /// `history_before`
    HistoryBefore,
    /// `history_after`
    HistoryAfter,
    /// `set_status`
    SetStatus,
    /// `mark_conversation_read`
    MarkConversationRead,
    /// `undelivered`
    Undelivered,
    /// `feed_after`
    FeedAfter,
    /// `amend`
    Amend,
    /// `block`
    Block,
    /// `unblock`
    Unblock,
    /// `blocks`
    Blocks,
    /// `blocked_among`
    BlockedAmong,
    /// `acquainted_among`
    AcquaintedAmong,
    /// `set_last_seen`
    SetLastSeen,
    /// `last_seen`
    LastSeen,
    /// `conversations`
    Conversations,
    /// `unread_total`
    UnreadTotal,
    /// `ping`
    Ping,
}

impl StoreOperation {
    /// The method's name (`insert`, `history_page`...), for labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Get => "get",
            Self::HistoryPage => "history_page",
            Self::HistoryBefore => "history_before",
            Self::HistoryAfter => "history_after",
            Self::SetStatus => "set_status",
            Self::MarkConversationRead => "mark_conversation_read",
            Self::Undelivered => "undelivered",
            Self::FeedAfter => "feed_after",
            Self::Amend => "amend",
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::Blocks => "blocks",
            Self::BlockedAmong => "blocked_among",
            Self::AcquaintedAmong => "acquainted_among",
            Self::SetLastSeen => "set_last_seen",
            Self::LastSeen => "last_seen",
            Self::Conversations => "conversations",
            Self::UnreadTotal => "unread_total",
            Self::Ping => "ping",
        }
    }
}

/// What a layer does around each call of the store it wraps.
///
/// # Contract
///
/// - [`before`](Self::before) runs before every call; an `Err` is the call's answer
///   and the store is not called.
/// - [`after`](Self::after) runs after every call that reached the store, with how
///   long it took and whether it succeeded; it cannot change the answer.
/// - Both run on the caller's task and must not block.
pub trait RepositoryLayer: Send + Sync + 'static {
    /// Runs before `operation`; an error is answered instead of calling the store.
    fn before(&self, operation: StoreOperation) -> Result<(), Error> {
        let _ = operation;
        Ok(())
    }

    /// Runs after `operation` reached the store.
    fn after(&self, operation: StoreOperation, elapsed: Duration, succeeded: bool) {
        let _ = (operation, elapsed, succeeded);
    }
}

/// A [`MessageRepository`] that calls `inner` through `layer`.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use chat_core::{InMemoryRepository, Layered, StoreOperation, RepositoryLayer};
///
/// /// Counts the inserts.
/// #[derive(Default)]
/// struct Inserts(AtomicU64);
///
/// impl RepositoryLayer for Inserts {
///     fn after(&self, operation: StoreOperation, _: Duration, _: bool) {
///         if operation == StoreOperation::Insert {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let store = Layered::new(Arc::new(InMemoryRepository::new()), Inserts::default());
/// assert_eq!(store.layer().0.load(Ordering::Relaxed), 0);
/// ```
pub struct Layered<L> {
    inner: Arc<dyn MessageRepository>,
    layer: L,
}

impl<L> std::fmt::Debug for Layered<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layered").finish_non_exhaustive()
    }
}

impl<L: RepositoryLayer> Layered<L> {
    /// `inner`, called through `layer`.
    pub fn new(inner: Arc<dyn MessageRepository>, layer: L) -> Self {
        Self { inner, layer }
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    async fn call<T>(
        &self,
        operation: StoreOperation,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.layer.before(operation)?;
        let started = Instant::now();
        let result = call.await;
        self.layer
            .after(operation, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl<L: RepositoryLayer> MessageRepository for Layered<L> {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        self.call(StoreOperation::Insert, self.inner.insert(record))
            .await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        self.call(StoreOperation::Get, self.inner.get(id)).await
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        let call = self.inner.history_page(a, b, offset, limit);
        self.call(StoreOperation::HistoryPage, call).await
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let call = self.inner.history_before(a, b, before, limit);
        self.call(StoreOperation::HistoryBefore, call).await
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let call = self.inner.history_after(a, b, after, limit);
        self.call(StoreOperation::HistoryAfter, call).await
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<Message>, Error> {
        let call = self.inner.set_status(receiver, ids, status, at, jobs);
        self.call(StoreOperation::SetStatus, call).await
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<MessageId>, Error> {
        let call = self
            .inner
            .mark_conversation_read(receiver, sender, up_to, at, jobs);
        self.call(StoreOperation::MarkConversationRead, call).await
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let call = self.inner.undelivered(receiver, after, limit);
        self.call(StoreOperation::Undelivered, call).await
    }

    async fn feed_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, Error> {
        let call = self.inner.feed_after(user, after, limit);
        self.call(StoreOperation::FeedAfter, call).await
    }

    async fn amend(
        &self,
        sender: UserId,
        id: MessageId,
        amendment: Amendment,
        at: OffsetDateTime,
    ) -> Result<Option<Change>, Error> {
        let call = self.inner.amend(sender, id, amendment, at);
        self.call(StoreOperation::Amend, call).await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        let call = self.inner.conversations(user, before, limit);
        self.call(StoreOperation::Conversations, call).await
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        self.call(StoreOperation::UnreadTotal, self.inner.unread_total(user))
            .await
    }

    async fn block(
        &self,
        blocker: UserId,
        blocked: UserId,
        at: OffsetDateTime,
    ) -> Result<Blocked, Error> {
        let call = self.inner.block(blocker, blocked, at);
        self.call(StoreOperation::Block, call).await
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, Error> {
        let call = self.inner.unblock(blocker, blocked);
        self.call(StoreOperation::Unblock, call).await
    }

    async fn blocks(&self, blocker: UserId) -> Result<Vec<Block>, Error> {
        self.call(StoreOperation::Blocks, self.inner.blocks(blocker))
            .await
    }

    async fn blocked_among(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>, Error> {
        let call = self.inner.blocked_among(user, others);
        self.call(StoreOperation::BlockedAmong, call).await
    }

    async fn acquainted_among(
        &self,
        user: UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, Error> {
        let call = self.inner.acquainted_among(user, others);
        self.call(StoreOperation::AcquaintedAmong, call).await
    }

    async fn set_last_seen(&self, user: UserId, at: OffsetDateTime) -> Result<(), Error> {
        let call = self.inner.set_last_seen(user, at);
        self.call(StoreOperation::SetLastSeen, call).await
    }

    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<(UserId, OffsetDateTime)>, Error> {
        self.call(StoreOperation::LastSeen, self.inner.last_seen(users))
            .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.call(StoreOperation::Ping, self.inner.ping()).await
    }
}
