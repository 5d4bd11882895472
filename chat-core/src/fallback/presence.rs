//! Shared presence with this node's own to fall back on.

use std::sync::Arc;

use async_trait::async_trait;

use super::Fallback;
use crate::error::Error;
use crate::ids::UserId;
use crate::ports::{Presence, Seat, UserPresence};

/// Marks the seats the local presence issued, so each is given back where it came from.
const LOCAL: u64 = 1 << 63;

/// Seats on `shared` (presence every node shares, on Redis say) and, while it answers
/// `Error::Unavailable`, on `local`: the connection limit then holds per node, and a
/// lookup answers what this node knows. Seats taken locally stay local until given
/// back: a lookup counts them as online also once `shared` answers again (the shared
/// limit does not see them meanwhile). A user is never refused a connection because
/// the shared backend is away. The switch is logged once each way, and every request
/// answered locally is counted ([`fallbacks`](Fallback::fallbacks)).
///
/// `shared` must issue seat ids below 2⁶³ (every adapter here counts up from zero).
pub type FallbackPresence = Fallback<dyn Presence>;

impl Fallback<dyn Presence> {
    /// `shared`, with `local` while `shared` is unavailable.
    pub fn new(shared: Arc<dyn Presence>, local: Arc<dyn Presence>) -> Self {
        Self::with_messages(
            shared,
            local,
            "shared presence is unavailable; counting connections on this node alone",
            "shared presence answers again",
        )
    }

    /// A seat on the local presence, marked as one.
    async fn join_locally(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
        let seat = self.local.join(user, limit).await?;
        Ok(seat.map(|seat| Seat {
            id: seat.id | LOCAL,
            ..seat
        }))
    }
}

#[async_trait]
impl Presence for Fallback<dyn Presence> {
    async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
        match self.switch.ask(self.shared.join(user, limit)).await {
            Some(answer) => answer,
            None => self.join_locally(user, limit).await,
        }
    }

    async fn leave(&self, seat: Seat) -> Result<(), Error> {
        if seat.id & LOCAL == 0 {
            self.shared.leave(seat).await
        } else {
            self.local
                .leave(Seat {
                    id: seat.id & !LOCAL,
                    ..seat
                })
                .await
        }
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
        match self.switch.ask(self.shared.lookup(users)).await {
            None => self.local.lookup(users).await,
            Some(Ok(mut shared)) => {
                // Seats taken here during an outage live only here until they are
                // given back: their users are online too.
                let local = self.local.lookup(users).await?;
                for (answer, here) in shared.iter_mut().zip(local) {
                    answer.online |= here.online;
                }
                Ok(shared)
            }
            Some(error) => error,
        }
    }
}
