//! Events published through a `Notifier` after the store has committed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{MessageId, UserId};
use crate::message::{Change, Message, MessageStatus};
use crate::timestamp::serde_micros;

/// Something a connected user should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new message to or from the user. Shared, because one message fans out to every
    /// device of both participants.
    Message(Arc<Message>),
    /// A message the user sent became delivered or read.
    Receipt(Receipt),
    /// The counterpart is typing.
    Typing(Typing),
    /// A message to or from the user was edited or deleted by its sender.
    Changed(Arc<Change>),
}

/// A status change of a message, sent to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The message.
    pub id: MessageId,
    /// Its sender (the user who receives this receipt).
    pub sender_id: UserId,
    /// Its receiver (the user whose device confirmed it).
    pub receiver_id: UserId,
    /// The new status.
    pub status: MessageStatus,
    /// When the status changed.
    #[serde(with = "serde_micros")]
    pub at: OffsetDateTime,
}

/// A typing indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// Who is typing.
    pub user_id: UserId,
}
