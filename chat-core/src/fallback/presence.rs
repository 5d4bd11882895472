//! Shared presence with this node's own to fall back on.

use std::sync::Arc;

use async_trait::async_trait;

use super::Switch;
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
/// answered locally is counted ([`fallbacks`]).
///
/// `shared` must issue seat ids below 2⁶³ (every adapter here counts up from zero).
///
/// [`fallbacks`]: FallbackPresence::fallbacks
pub struct FallbackPresence {
    shared: Arc<dyn Presence>,
    local: Arc<dyn Presence>,
    switch: Switch,
}

impl std::fmt::Debug for FallbackPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackPresence")
            .field("falling_back", &self.falling_back())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl FallbackPresence {
    /// `shared`, with `local` while `shared` is unavailable.
    pub fn new(shared: Arc<dyn Presence>, local: Arc<dyn Presence>) -> Self {
        Self {
            shared,
            local,
            switch: Switch::new(
                "shared presence is unavailable; counting connections on this node alone",
                "shared presence answers again",
            ),
        }
    }

    /// After the shared presence was found unavailable, answers locally for `wait`
    /// before asking it again ([`FALLBACK_RETRY_AFTER`] unless set), so connections are
    /// not each held up by an unreachable backend's timeouts.
    ///
    /// [`FALLBACK_RETRY_AFTER`]: crate::FALLBACK_RETRY_AFTER
    #[must_use]
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.switch.set_retry_after(wait);
        self
    }

    /// Whether the last request was answered by the local presence.
    pub fn falling_back(&self) -> bool {
        self.switch.falling_back()
    }

    /// How many requests the local presence answered so far.
    pub fn fallbacks(&self) -> u64 {
        self.switch.fallbacks()
    }
}

impl FallbackPresence {
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
impl Presence for FallbackPresence {
    async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
        if !self.switch.worth_trying() {
            self.switch.skipped();
            return self.join_locally(user, limit).await;
        }
        match self.shared.join(user, limit).await {
            Err(Error::Unavailable { source }) => {
                self.switch.fell_back(&source);
                self.join_locally(user, limit).await
            }
            answer => {
                if answer.is_ok() {
                    self.switch.answered();
                }
                answer
            }
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
        if !self.switch.worth_trying() {
            self.switch.skipped();
            return self.local.lookup(users).await;
        }
        match self.shared.lookup(users).await {
            Err(Error::Unavailable { source }) => {
                self.switch.fell_back(&source);
                self.local.lookup(users).await
            }
            Ok(mut shared) => {
                self.switch.answered();
                // Seats taken here during an outage live only here until they are
                // given back: their users are online too.
                let local = self.local.lookup(users).await?;
                for (answer, here) in shared.iter_mut().zip(local) {
                    answer.online |= here.online;
                }
                Ok(shared)
            }
            other => other,
        }
    }
}
