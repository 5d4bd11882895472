//! Blocks, acquaintance and last-seen times: what the store keeps about users.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use chat_core::timestamp::to_unix_micros;
use chat_core::{Block, Blocked, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::sql;

/// The users who take part in a block, either side, so that a send between two
/// others (almost every send) skips the check of the blocks table. Read and grown
/// only by the single writer, in its order of writes, so a send written after a
/// block always sees it. It only grows while the store is open: lifting a block
/// leaves its users to the table's check, which answers correctly either way.
#[derive(Clone, Debug, Default)]
pub(crate) struct InBlocks(Arc<Mutex<HashSet<i64>>>);

impl InBlocks {
    /// Everyone in the blocks table.
    pub(crate) fn load(conn: &Connection) -> Result<Self, StoreError> {
        let users: HashSet<i64> = conn
            .prepare(sql::USERS_IN_BLOCKS)?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Self(Arc::new(Mutex::new(users))))
    }

    /// Whether either user takes part in some block.
    pub(crate) fn either(&self, a: UserId, b: UserId) -> bool {
        let users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        !users.is_empty() && (users.contains(&a.get()) || users.contains(&b.get()))
    }

    pub(crate) fn add(&self, a: UserId, b: UserId) {
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        users.insert(a.get());
        users.insert(b.get());
    }
}

/// Records the block unless it exists; the stored one either way.
pub(crate) fn block(
    conn: &Connection,
    blocker: UserId,
    blocked: UserId,
    at: OffsetDateTime,
) -> Result<Blocked, StoreError> {
    let created = conn.prepare_cached(sql::BLOCK)?.execute(params![
        blocker.get(),
        blocked.get(),
        to_unix_micros(at)
    ])? > 0;
    let created_at = conn
        .prepare_cached(sql::BLOCK_TIME)?
        .query_row(params![blocker.get(), blocked.get()], |row| {
            sql::time_at(row, 0)
        })?;
    Ok(Blocked {
        block: Block {
            user_id: blocked,
            created_at,
        },
        created,
    })
}

pub(crate) fn unblock(
    conn: &Connection,
    blocker: UserId,
    blocked: UserId,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(sql::UNBLOCK)?
        .execute(params![blocker.get(), blocked.get()])?
        > 0)
}

pub(crate) fn blocks(conn: &Connection, blocker: UserId) -> Result<Vec<Block>, StoreError> {
    let mut stmt = conn.prepare_cached(sql::BLOCKS)?;
    let rows = stmt.query_map([blocker.get()], |row| {
        Ok(Block {
            user_id: UserId::new(row.get(0)?),
            created_at: sql::time_at(row, 1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Of `others`, those `statement` (asked of `user` and one other at a time) finds.
fn among(
    conn: &Connection,
    statement: &str,
    user: UserId,
    others: &[UserId],
) -> Result<Vec<UserId>, StoreError> {
    let mut stmt = conn.prepare_cached(statement)?;
    let mut found = Vec::new();
    for &other in others {
        if !found.contains(&other)
            && stmt
                .query_row(params![user.get(), other.get()], |_| Ok(()))
                .optional()?
                .is_some()
        {
            found.push(other);
        }
    }
    Ok(found)
}

pub(crate) fn blocked_among(
    conn: &Connection,
    user: UserId,
    others: &[UserId],
) -> Result<Vec<UserId>, StoreError> {
    among(conn, sql::BLOCKED_BETWEEN, user, others)
}

pub(crate) fn acquainted_among(
    conn: &Connection,
    user: UserId,
    others: &[UserId],
) -> Result<Vec<UserId>, StoreError> {
    among(conn, sql::CONVERSATION_TOTAL, user, others)
}

pub(crate) fn set_last_seen(
    conn: &Connection,
    user: UserId,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    conn.prepare_cached(sql::SET_LAST_SEEN)?
        .execute(params![user.get(), to_unix_micros(at)])?;
    Ok(())
}

pub(crate) fn last_seen(
    conn: &Connection,
    users: &[UserId],
) -> Result<Vec<(UserId, OffsetDateTime)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql::LAST_SEEN)?;
    let mut found: Vec<(UserId, OffsetDateTime)> = Vec::new();
    for &user in users {
        if found.iter().any(|(seen, _)| *seen == user) {
            continue;
        }
        if let Some(at) = stmt
            .query_row([user.get()], |row| sql::time_at(row, 0))
            .optional()?
        {
            found.push((user, at));
        }
    }
    Ok(found)
}
