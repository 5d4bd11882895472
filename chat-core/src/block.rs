//! Blocks: one user refusing another.

use serde::Serialize;
use time::OffsetDateTime;

use crate::ids::UserId;
use crate::timestamp::serde_micros;

/// A user someone blocks, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Block {
    /// The blocked user.
    pub user_id: UserId,
    /// When the block was made.
    #[serde(with = "serde_micros")]
    pub created_at: OffsetDateTime,
}

/// The outcome of `MessageRepository::block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The block as stored: the new one, or the one already there.
    pub block: Block,
    /// `true` when this call made it.
    pub created: bool,
}
