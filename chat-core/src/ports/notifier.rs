use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::error::Error;
use crate::event::Event;
use crate::ids::UserId;

/// A user's events, in publication order, with the gaps the notifier knows of.
pub type EventStream = Pin<Box<dyn Stream<Item = Notice> + Send + 'static>>;

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// An event published for the user.
    Event(Event),
    /// Events published for the user may have been lost just before this point, for a
    /// reason other than the subscriber's pace (a broker connection was re-established,
    /// say). The subscriber re-reads from the store what it may have missed; the stream
    /// goes on.
    Gap,
}

/// Fans events out to the connections of a user, on this node or on many.
///
/// # Contract
///
/// - **Best effort.** The store is the source of truth; an event is a hint that
///   something new is there. A lost event must never lose a message: clients catch up
///   from the store on (re)connect.
/// - **Fan-out.** `publish(user, e)` delivers `e` to every stream currently subscribed
///   for `user` and to no stream of another user. A stream sees events in the order
///   they were published for its user.
/// - **No blocking on consumers.** `publish` never waits for a slow subscriber. A
///   subscriber that falls too far behind is dropped: its stream ends, and its owner
///   resumes from the store. A stream ends for no other reason while it is held.
/// - **Gaps.** When events may have been lost for any other reason (the broker
///   connection dropped and came back), the stream yields [`Notice::Gap`] where they
///   would have been and goes on; a notifier that cannot tell must say so with a gap
///   rather than stay silent. The live feed answers a gap by re-reading the store after
///   the last message it handed out, so a lost event never loses a message.
/// - **Lifetime.** A stream receives events published after `subscribe` returned, until
///   it is dropped; dropping it unsubscribes. Publishing for a user with no subscriber
///   succeeds and does nothing; nothing is kept for later subscribers, though across
///   processes an event still in flight when `subscribe` returns may reach the new
///   stream (events are hints, so a consumer tolerates one it already has).
/// - **Errors.** `Error::Unavailable` when the broker cannot be reached. A notifier
///   whose broker is away keeps serving the subscribers of its own process where it can
///   and says so through [`ping`](Notifier::ping) (readiness).
/// - **Health.** `ping` answers `Ok` while events published here reach the other
///   processes that share the broker; a notifier within one process is always healthy.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Publishes `event` to every current subscriber of `user`.
    async fn publish(&self, user: UserId, event: Event) -> Result<(), Error>;

    /// Subscribes to `user`'s events.
    async fn subscribe(&self, user: UserId) -> Result<EventStream, Error>;

    /// Whether events cross to the other processes (readiness); `Ok` by default.
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}
