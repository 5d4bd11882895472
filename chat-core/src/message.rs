//! Messages and their delivery status.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{MessageId, UserId};
use crate::ports::NewJob;
use crate::timestamp::serde_micros;

/// Where a message is on its way to the receiver. The order is meaningful: a status
/// only ever moves forward (`sent` < `delivered` < `read`), and `read` implies
/// `delivered`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Stored; no device of the receiver has confirmed it yet.
    Sent,
    /// A device of the receiver confirmed receipt.
    Delivered,
    /// The receiver read it.
    Read,
}

impl MessageStatus {
    /// The lowercase name used in JSON and in store columns.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for MessageStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sent" => Ok(Self::Sent),
            "delivered" => Ok(Self::Delivered),
            "read" => Ok(Self::Read),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// A stored message, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Ascending identifier.
    pub id: MessageId,
    /// Who sent it.
    pub sender_id: UserId,
    /// Who it is for.
    pub receiver_id: UserId,
    /// The text, trimmed, exactly as stored.
    pub message: String,
    /// Delivery status.
    pub status: MessageStatus,
    /// The sender's idempotency key, if it gave one.
    pub client_message_id: Option<String>,
    /// When it was stored.
    #[serde(with = "serde_micros")]
    pub created_at: OffsetDateTime,
    /// When anything about it last changed.
    #[serde(with = "serde_micros")]
    pub updated_at: OffsetDateTime,
    /// When a device of the receiver first confirmed it (set on read at the latest).
    #[serde(with = "serde_micros::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// When the receiver read it.
    #[serde(with = "serde_micros::option")]
    pub read_at: Option<OffsetDateTime>,
    /// When its sender last changed the text, if ever.
    #[serde(default, with = "serde_micros::option")]
    pub edited_at: Option<OffsetDateTime>,
    /// When its sender deleted it for everyone, if they did: the text is then empty
    /// and the message stays as a tombstone in its place.
    #[serde(default, with = "serde_micros::option")]
    pub deleted_at: Option<OffsetDateTime>,
}

impl Message {
    /// Whether `user` is the sender or the receiver.
    pub fn is_participant(&self, user: UserId) -> bool {
        self.sender_id == user || self.receiver_id == user
    }

    /// The other participant, seen from `user`.
    pub fn counterpart(&self, user: UserId) -> UserId {
        if self.sender_id == user {
            self.receiver_id
        } else {
            self.sender_id
        }
    }
}

/// What a caller asks `ChatService::send` to send. Raw and unchecked: the service
/// validates every field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessage {
    /// Who the message is for.
    pub receiver_id: UserId,
    /// The text; surrounding whitespace is trimmed.
    pub message: String,
    /// Optional idempotency key chosen by the client (≤ 64 of `[A-Za-z0-9._:-]`).
    pub client_message_id: Option<String>,
}

/// A validated message handed to a `MessageRepository` for insertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessageRecord {
    /// Who sent it.
    pub sender_id: UserId,
    /// Who it is for.
    pub receiver_id: UserId,
    /// The text to store byte for byte.
    pub message: String,
    /// The sender's idempotency key.
    pub client_message_id: Option<String>,
    /// The creation time (also the first `updated_at`).
    pub created_at: OffsetDateTime,
    /// Background jobs the message causes (webhooks, say): stored in the same
    /// transaction as the message, each with the new message's id as its subject, or
    /// not at all. A replay of an idempotency key stores none.
    pub jobs: Vec<NewJob>,
}

impl NewMessageRecord {
    /// The message as stored under `id` with status `sent`.
    pub fn into_message(self, id: MessageId) -> Message {
        Message {
            id,
            sender_id: self.sender_id,
            receiver_id: self.receiver_id,
            message: self.message,
            status: MessageStatus::Sent,
            client_message_id: self.client_message_id,
            created_at: self.created_at,
            updated_at: self.created_at,
            delivered_at: None,
            read_at: None,
            edited_at: None,
            deleted_at: None,
        }
    }
}

/// What a sender changes about a message already sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Amendment {
    /// Replaces the text (validated and trimmed as a sent one) and sets `edited_at`.
    Edit(String),
    /// Removes the text for everyone and sets `deleted_at`; the row stays.
    Delete,
}

/// A message its sender edited or deleted, at its place in the participants' feeds.
///
/// A change takes a `revision` from the same ascending sequence as message ids, so a
/// device that resumes "after `n`" (the largest id or revision it received) hears of
/// every change made since, as it hears of every new message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Where the change stands among ids and revisions: above every one committed
    /// before it for either participant.
    pub revision: MessageId,
    /// The message as it is after the change.
    pub message: Message,
}

impl Change {
    /// Whether the change deleted the message (else it edited it).
    pub fn is_deletion(&self) -> bool {
        self.message.deleted_at.is_some()
    }
}

/// One entry of a user's feed: a new message, or a change to an older one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEntry {
    /// A message to or from the user, as it is now, at its id.
    New(Message),
    /// A message edited or deleted, at its revision.
    Changed(Change),
}

impl FeedEntry {
    /// Where the entry stands in the feed: the id of a new message, the revision of a
    /// change. A device resumes after the largest position it received.
    pub fn position(&self) -> MessageId {
        match self {
            Self::New(message) => message.id,
            Self::Changed(change) => change.revision,
        }
    }

    /// The message the entry is about.
    pub fn message(&self) -> &Message {
        match self {
            Self::New(message) => message,
            Self::Changed(change) => &change.message,
        }
    }
}

/// The outcome of `MessageRepository::insert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The stored row: the new one, or the one that already held the idempotency key.
    pub message: Message,
    /// `true` when this call created the row.
    pub created: bool,
}

/// The outcome of `ChatService::send`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// The stored message.
    pub message: Message,
    /// `true` when the `client_message_id` had already been used with the same content and
    /// the original is returned instead of a new message.
    pub replay: bool,
}
