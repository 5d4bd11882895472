//! The messages a connection sent itself, so their live echo is not written back.

use std::collections::VecDeque;

use chat_core::MessageId;

/// Ids of this connection's own new messages whose notifier event has not come back
/// yet. A `send` is answered by `sent`; the same message arriving again from the
/// notifier is the echo of that send and is skipped, while the user's other
/// connections get it as a `message`.
///
/// The service publishes a message before `send` returns, and one connection's sends
/// run one at a time, so their echoes arrive in the order they were recorded: when an
/// echo arrives, the ids recorded before it are echoes that will not come (the
/// notifier dropped them) and are forgotten. Every pending echo sits in the
/// connection's bounded notifier queue, so at most `capacity` are ever pending.
#[derive(Debug)]
pub(crate) struct OwnSends {
    pending: VecDeque<MessageId>,
    capacity: usize,
}

impl OwnSends {
    /// Remembers at most `capacity` (at least 1) pending echoes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a message this connection has just sent (and the service published).
    pub(crate) fn record(&mut self, id: MessageId) {
        if self.pending.len() == self.capacity {
            self.pending.pop_front();
        }
        self.pending.push_back(id);
    }

    /// Whether `id` is the echo of one of this connection's sends; forgets it if so.
    pub(crate) fn take_echo(&mut self, id: MessageId) -> bool {
        let Some(position) = self.pending.iter().position(|pending| *pending == id) else {
            return false;
        };
        self.pending.drain(..=position);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &[i64]) -> Vec<MessageId> {
        raw.iter().copied().map(MessageId::new).collect()
    }

    #[test]
    fn skips_each_echo_once_and_forgets_echoes_that_were_dropped() {
        let mut own = OwnSends::new(8);
        for id in ids(&[3, 5, 9]) {
            own.record(id);
        }
        assert!(!own.take_echo(MessageId::new(4)), "not an own send");
        // The echo of 3 was dropped by the notifier; 5's arrival says so.
        assert!(own.take_echo(MessageId::new(5)));
        assert!(!own.take_echo(MessageId::new(3)));
        assert!(!own.take_echo(MessageId::new(5)), "skipped once only");
        assert!(own.take_echo(MessageId::new(9)));
        assert!(own.pending.is_empty());
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let mut own = OwnSends::new(2);
        for id in ids(&[1, 2, 3]) {
            own.record(id);
        }
        assert_eq!(own.pending, ids(&[2, 3]));
    }
}
