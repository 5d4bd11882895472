use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::UserId;

/// A live connection's place in presence, handed back when the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seat {
    /// Whose connection it is.
    pub user: UserId,
    /// Which of the user's connections, unique within the presence that issued it.
    pub id: u64,
}

/// Whether a user has a live connection anywhere, and when they last had one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserPresence {
    /// The user.
    pub user_id: UserId,
    /// At least one connection is live on some node.
    pub online: bool,
    /// The last time the user was known to be connected: when the last connection
    /// closed, or (for a node that died) its last refresh; `None` for a user never
    /// seen, and while online it may lag by up to a refresh period.
    #[serde(with = "crate::timestamp::serde_micros::option")]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// Which users hold live connections, on this node or on many, and how many.
///
/// # Contract
///
/// - **Seats.** `join(user, limit)` takes a seat for one more connection of `user` and
///   answers it, unless the user already holds `limit` seats across every node sharing
///   this presence: then `Ok(None)` and nothing changes. `leave(seat)` gives the seat
///   back; leaving a seat twice, or one that expired, does nothing.
/// - **Online.** A user is online while they hold a seat. A seat of a node that stops
///   without leaving (a crash) expires within the presence's time to live: no ghost
///   presence. Within one process there is nothing to expire.
/// - **Last seen.** When a user's last seat is left (or expires), `last_seen_at` is
///   about that moment; it never goes back in time, and a user never seen has none.
/// - **Lookup.** `lookup(users)` answers one entry per requested user, in order,
///   repeats included.
/// - **Errors.** `Error::Unavailable` when the shared state cannot be reached; the
///   caller then falls back to what its own node knows.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Takes a seat for a new connection of `user`, unless they hold `limit` already.
    async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error>;

    /// Gives a seat back.
    async fn leave(&self, seat: Seat) -> Result<(), Error>;

    /// The presence of each of `users`, in order.
    async fn lookup(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error>;
}
