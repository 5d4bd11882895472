//! Reading messages: one by id, history, backlogs, conversation lists and counts.

use chat_core::{Change, ConversationSummary, FeedEntry, HistoryPage, Message, MessageId, UserId};
use sqlx::postgres::PgArguments;
use sqlx::{Executor, Postgres, Row};

use crate::error::StoreError;
use crate::{PostgresStore, sql};

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn count(value: i64, column: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::ValueOutOfRange(column))
}

impl PostgresStore {
    /// The messages a query selects, mapped row by row.
    pub(crate) async fn messages(&self, query: Query<'_>) -> Result<Vec<Message>, StoreError> {
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(sql::message_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub(crate) async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(sql::GET)
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(sql::message_from_row).transpose()?)
    }

    pub(crate) async fn page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        let (low, high) = sql::conversation_key(a, b);
        let mut tx = self.pool.begin().await?;
        // One snapshot for the page and its total.
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let total: Option<i64> = sqlx::query_scalar(sql::CONVERSATION_TOTAL)
            .bind(a.get())
            .bind(b.get())
            .fetch_optional(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::HISTORY_PAGE)
            .bind(low)
            .bind(high)
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(HistoryPage {
            messages: rows
                .iter()
                .map(sql::message_from_row)
                .collect::<Result<_, _>>()?,
            total: count(total.unwrap_or(0), "message_count")?,
        })
    }

    /// Messages between `a` and `b` on one side of `bound`, by `statement`.
    pub(crate) async fn conversation_slice(
        &self,
        statement: &'static str,
        (a, b): (UserId, UserId),
        bound: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let (low, high) = sql::conversation_key(a, b);
        let query = sqlx::query(statement)
            .bind(low)
            .bind(high)
            .bind(bound)
            .bind(i64::from(limit));
        self.messages(query).await
    }

    /// `user`'s feed after position `after`: new messages and changes.
    pub(crate) async fn feed(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let rows = sqlx::query(sql::FEED_AFTER)
            .bind(user.get())
            .bind(after.get())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let message = sql::message_from_row(row)?;
            let position = MessageId::new(row.try_get("position")?);
            entries.push(if position == message.id {
                FeedEntry::New(message)
            } else {
                FeedEntry::Changed(Change {
                    revision: position,
                    message,
                })
            });
        }
        Ok(entries)
    }

    /// A user's messages after `after`, by `statement` (the undelivered backlog).
    pub(crate) async fn user_slice(
        &self,
        statement: &'static str,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let query = sqlx::query(statement)
            .bind(user.get())
            .bind(after.get())
            .bind(i64::from(limit));
        self.messages(query).await
    }

    pub(crate) async fn conversation_list(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = sqlx::query(sql::CONVERSATIONS)
            .bind(user.get())
            .bind(before.map_or(i64::MAX, MessageId::get))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ConversationSummary {
                    last_message: sql::message_from_row(row)?,
                    counterpart: UserId::new(row.try_get("peer_id")?),
                    unread_count: count(row.try_get("unread")?, "unread")?,
                })
            })
            .collect()
    }

    pub(crate) async fn unread(&self, user: UserId) -> Result<u64, StoreError> {
        let total: i64 = sqlx::query_scalar(sql::UNREAD_TOTAL)
            .bind(user.get())
            .fetch_one(&self.pool)
            .await?;
        count(total, "unread")
    }

    pub(crate) async fn answer(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
