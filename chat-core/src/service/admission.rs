//! Whether a new connection may join: the per-user connection limit across nodes.

use crate::ports::Seat;

/// The answer to [`ChatService::admit`](super::ChatService::admit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// The connection holds this seat until it gives it back with
    /// [`ChatService::release`](super::ChatService::release).
    Seated(Seat),
    /// Presence cannot be reached: the connection is let in without a seat, and only
    /// its node's own limit applies until presence is back.
    Unseated,
    /// The user already holds the most connections allowed across every node.
    Full,
}
