//! Tunable limits of `ChatService`.

use std::time::Duration;

/// Limits applied by `ChatService`. `Default` gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatConfig {
    /// Longest message, in characters (Unicode scalar values) after trimming.
    pub max_message_chars: usize,
    /// Most ids one `mark_messages_delivered` / `mark_messages_read` call may list.
    pub max_batch_ids: usize,
    /// Messages in a history page or cursor page when the caller names no size.
    pub default_page_size: u32,
    /// Conversations in a list page when the caller names no limit.
    pub default_conversations_limit: u32,
    /// How long after sending its sender may still edit a message.
    pub edit_window: Duration,
    /// How long a user still shows online after their last connection closed, so a
    /// reconnecting phone does not flicker (at most `MAX_PRESENCE_GRACE`, 10 s).
    pub presence_grace: Duration,
}

impl ChatConfig {
    /// Sets the longest message, in characters.
    pub fn with_max_message_chars(mut self, max: usize) -> Self {
        self.max_message_chars = max;
        self
    }

    /// Sets the sizes used when a caller names none: of history pages and of
    /// conversation lists (each 1–100).
    pub fn with_default_sizes(mut self, page_size: u32, conversations: u32) -> Self {
        self.default_page_size = page_size.clamp(1, crate::MAX_PAGE_SIZE);
        self.default_conversations_limit = conversations.clamp(1, crate::MAX_PAGE_SIZE);
        self
    }

    /// Sets how long after sending a message its sender may edit it.
    pub fn with_edit_window(mut self, window: Duration) -> Self {
        self.edit_window = window;
        self
    }

    /// Sets how long a user still shows online after their last connection closed
    /// (capped at 10 s).
    pub fn with_presence_grace(mut self, grace: Duration) -> Self {
        self.presence_grace = grace.min(crate::MAX_PRESENCE_GRACE);
        self
    }

    /// Sets the most ids one batch status change may list.
    pub fn with_max_batch_ids(mut self, max: usize) -> Self {
        self.max_batch_ids = max;
        self
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 4000,
            max_batch_ids: 500,
            default_page_size: 50,
            default_conversations_limit: 20,
            edit_window: Duration::from_secs(15 * 60),
            presence_grace: Duration::from_secs(5),
        }
    }
}
