//! Blocks, acquaintance and last-seen times: what the store keeps about users.

use chat_core::{Block, Blocked, UserId};
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::{PostgresStore, sql};

fn ids(users: &[UserId]) -> Vec<i64> {
    let mut ids: Vec<i64> = users.iter().map(|user| user.get()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl PostgresStore {
    pub(crate) async fn add_block(
        &self,
        blocker: UserId,
        blocked: UserId,
        at: OffsetDateTime,
    ) -> Result<Blocked, StoreError> {
        // The insert answers only when it made the row; otherwise the stored one.
        let row = sqlx::query(sql::BLOCK)
            .bind(blocker.get())
            .bind(blocked.get())
            .bind(at)
            .fetch_one(&self.pool)
            .await?;
        Ok(Blocked {
            block: Block {
                user_id: blocked,
                created_at: row.try_get("created_at")?,
            },
            created: row.try_get("created")?,
        })
    }

    pub(crate) async fn remove_block(
        &self,
        blocker: UserId,
        blocked: UserId,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::UNBLOCK)
            .bind(blocker.get())
            .bind(blocked.get())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn list_blocks(&self, blocker: UserId) -> Result<Vec<Block>, StoreError> {
        let rows = sqlx::query(sql::BLOCKS)
            .bind(blocker.get())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Block {
                    user_id: UserId::new(row.try_get("blocked_id")?),
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Of `others`, those `statement` (`$1` the user, `$2` the others) selects.
    pub(crate) async fn users_among(
        &self,
        statement: &'static str,
        user: UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, StoreError> {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<i64> = sqlx::query_scalar(statement)
            .bind(user.get())
            .bind(ids(others))
            .fetch_all(&self.pool)
            .await?;
        Ok(found.into_iter().map(UserId::new).collect())
    }

    pub(crate) async fn store_last_seen(
        &self,
        user: UserId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::SET_LAST_SEEN)
            .bind(user.get())
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn stored_last_seen(
        &self,
        users: &[UserId],
    ) -> Result<Vec<(UserId, OffsetDateTime)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql::LAST_SEEN)
            .bind(ids(users))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    UserId::new(row.try_get("user_id")?),
                    row.try_get("seen_at")?,
                ))
            })
            .collect()
    }
}
