//! A connection's seat in presence, given back when the connection ends.

use chat_core::{ChatService, Seat};

/// Gives its seat back when dropped (in the background: a drop cannot wait).
#[derive(Debug)]
pub(crate) struct HeldSeat {
    pub(crate) chat: ChatService,
    pub(crate) seat: Seat,
}

impl Drop for HeldSeat {
    fn drop(&mut self) {
        let (chat, seat) = (self.chat.clone(), self.seat);
        // Without a runtime (the process is ending) the seat expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { chat.release(seat).await });
        }
    }
}
