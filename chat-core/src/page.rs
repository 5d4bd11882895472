//! Pagination: history pages and cursors, conversation lists.

use crate::error::{Error, ValidationCode, ValidationErrors};
use crate::ids::{MessageId, UserId};
use crate::message::Message;

/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// How a caller wants to walk a conversation's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Numbered pages, newest first, with a total (`page` ≥ 1, `per_page` 1–100).
    Page {
        /// 1-based page number.
        page: u32,
        /// Messages per page.
        per_page: u32,
    },
    /// The newest messages older than `before_id` (or the newest of all), newest first.
    Before {
        /// Exclusive upper bound; `None` for the latest messages.
        before_id: Option<MessageId>,
        /// At most this many (1–100).
        limit: u32,
    },
    /// The oldest messages newer than `after_id`, oldest first (catch-up).
    After {
        /// Exclusive lower bound; 0 for the beginning.
        after_id: MessageId,
        /// At most this many (1–100).
        limit: u32,
    },
}

/// A history request as a transport received it, every parameter optional: page
/// mode (`page`, `per_page`) or cursor mode (`before_id` or `after_id`, with `limit`).
/// [`HistoryQuery::from_request`] checks that the modes are not mixed and fills in
/// the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Messages per page.
    pub per_page: Option<u32>,
    /// Newest messages older than this id.
    pub before_id: Option<MessageId>,
    /// Oldest messages newer than this id.
    pub after_id: Option<MessageId>,
    /// Messages per cursor page.
    pub limit: Option<u32>,
}

impl HistoryQuery {
    /// The query a request asks for: cursor mode when it names a cursor or a `limit`,
    /// else page mode (page 1 by default); sizes default to `default_size`. Mixing the
    /// modes, or `before_id` with `after_id`, is `Error::Validation`.
    pub fn from_request(request: HistoryRequest, default_size: u32) -> Result<Self, Error> {
        let HistoryRequest {
            page,
            per_page,
            before_id,
            after_id,
            limit,
        } = request;
        let mut errors = ValidationErrors::default();
        let cursor = before_id.is_some() || after_id.is_some() || limit.is_some();
        if before_id.is_some() && after_id.is_some() {
            errors.add(
                "after_id",
                ValidationCode::Exclusive,
                "The after_id field cannot be used with before_id.",
            );
        }
        if cursor && (page.is_some() || per_page.is_some()) {
            errors.add(
                "page",
                ValidationCode::Exclusive,
                "The page and per_page fields cannot be used with before_id, after_id or limit.",
            );
        }
        errors.into_result()?;
        let limit = limit.unwrap_or(default_size);
        Ok(match (before_id, after_id) {
            (_, Some(after_id)) => Self::After { after_id, limit },
            (before_id, None) if cursor => Self::Before { before_id, limit },
            _ => Self::Page {
                page: page.unwrap_or(1),
                per_page: per_page.unwrap_or(default_size),
            },
        })
    }
}

/// One page of `MessageRepository::history_page`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// Newest first.
    pub messages: Vec<Message>,
    /// Messages in the whole conversation.
    pub total: u64,
}

/// The position of a history answer, for building `meta` and `links`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryPosition {
    /// Page mode.
    Page {
        /// 1-based page number.
        current_page: u32,
        /// Requested page size.
        per_page: u32,
        /// Last page with messages (1 for an empty conversation).
        last_page: u64,
        /// Messages in the conversation.
        total: u64,
        /// 1-based position of the first message on this page, if any.
        from: Option<u64>,
        /// 1-based position of the last message on this page, if any.
        to: Option<u64>,
    },
    /// Cursor mode.
    Cursor {
        /// Requested limit.
        limit: u32,
        /// Whether more messages lie beyond this page in its direction.
        has_more: bool,
    },
}

/// The answer of `ChatService::history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// Newest first in page and `Before` mode, oldest first in `After` mode.
    pub messages: Vec<Message>,
    /// Where this page sits.
    pub position: HistoryPosition,
}

/// One row of a user's conversation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The other participant.
    pub counterpart: UserId,
    /// The newest message between the two.
    pub last_message: Message,
    /// Messages from the counterpart the user has not read.
    pub unread_count: u64,
}

/// The answer of `ChatService::conversations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversations {
    /// Newest activity first.
    pub items: Vec<ConversationSummary>,
    /// Unread messages over all conversations.
    pub total_unread: u64,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next_before: Option<MessageId>,
    /// The presence of each item's counterpart, in the items' order, as the caller
    /// may see it (offline and never seen across a block or where the policy says no).
    pub presence: Vec<crate::ports::UserPresence>,
}
