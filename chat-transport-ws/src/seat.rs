//! A connection's seat in presence, given back when the connection ends.

use chat_core::{ChatService, Seat};

/// Gives its seat back when dropped (in the background: a drop cannot wait), and
/// settles its user's presence once the grace has passed: offline, with a stored
/// last-seen time, unless they came back meanwhile.
#[derive(Debug)]
pub struct HeldSeat {
    pub(crate) chat: ChatService,
    pub(crate) seat: Seat,
}

impl HeldSeat {
    /// Holds `seat` of `chat` until dropped.
    pub fn new(chat: ChatService, seat: Seat) -> Self {
        Self { chat, seat }
    }
}

impl Drop for HeldSeat {
    fn drop(&mut self) {
        let (chat, seat) = (self.chat.clone(), self.seat);
        // Without a runtime (the process is ending) the seat expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                chat.release(seat).await;
                tokio::time::sleep(chat.presence_grace()).await;
                chat.settle_presence(seat.user).await;
            });
        }
    }
}
