//! A store decorator that times every call by operation and outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chat_core::{
    ConversationSummary, Error, HistoryPage, Inserted, Message, MessageId, MessageRepository,
    MessageStatus, NewMessageRecord, UserId,
};
use time::OffsetDateTime;

use super::Metrics;

/// A [`MessageRepository`] that records the latency of every call of `inner`.
pub struct MeasuredRepository {
    inner: Arc<dyn MessageRepository>,
    metrics: Metrics,
}

impl MeasuredRepository {
    /// Measures `inner` into `metrics`.
    pub fn new(inner: Arc<dyn MessageRepository>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .store_call(operation, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl MessageRepository for MeasuredRepository {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        self.timed("insert", self.inner.insert(record)).await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        self.timed("get", self.inner.get(id)).await
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        self.timed("history_page", self.inner.history_page(a, b, offset, limit))
            .await
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "history_before",
            self.inner.history_before(a, b, before, limit),
        )
        .await
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "history_after",
            self.inner.history_after(a, b, after, limit),
        )
        .await
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "set_status",
            self.inner.set_status(receiver, ids, status, at),
        )
        .await
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
    ) -> Result<Vec<MessageId>, Error> {
        self.timed(
            "mark_conversation_read",
            self.inner
                .mark_conversation_read(receiver, sender, up_to, at),
        )
        .await
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "undelivered",
            self.inner.undelivered(receiver, after, limit),
        )
        .await
    }

    async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "messages_after",
            self.inner.messages_after(user, after, limit),
        )
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        self.timed(
            "conversations",
            self.inner.conversations(user, before, limit),
        )
        .await
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        self.timed("unread_total", self.inner.unread_total(user))
            .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.timed("ping", self.inner.ping()).await
    }
}
