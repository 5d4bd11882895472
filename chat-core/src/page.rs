//! Pagination: history pages and cursors, conversation lists.

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
}
