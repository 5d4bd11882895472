//! Tunable limits of `ChatService`.

/// Limits applied by `ChatService`. `Default` gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatConfig {
    /// Longest message, in characters (Unicode scalar values) after trimming.
    pub max_message_chars: usize,
    /// Most ids one `mark_delivered` / `mark_read_ids` call may list.
    pub max_batch_ids: usize,
}

impl ChatConfig {
    /// Sets the longest message, in characters.
    pub fn with_max_message_chars(mut self, max: usize) -> Self {
        self.max_message_chars = max;
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
        }
    }
}
