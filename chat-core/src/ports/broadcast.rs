use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;

use crate::error::Error;

/// What a [`Broadcast`] subscription yields, in publication order.
pub type BroadcastStream = Pin<Box<dyn Stream<Item = Broadcasted> + Send + 'static>>;

/// One item of a [`BroadcastStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broadcasted {
    /// A payload some node published.
    Payload(Arc<[u8]>),
    /// Payloads may have been lost just before this point (the subscriber fell behind,
    /// or the broker connection was re-established). The subscriber rebuilds whatever
    /// it derives from the payloads; the stream goes on.
    Gap,
}

/// Carries opaque payloads to every subscriber on every node sharing it: how a
/// transport's own state (a Pusher channel's events, its presence members) crosses
/// nodes. Unlike [`Notifier`](crate::Notifier) events, these payloads are not backed by
/// the store; a consumer that must not miss them answers a gap by rebuilding its state.
///
/// # Contract
///
/// - **Fan-out.** `publish(p)` delivers `p` to every stream subscribed when it was
///   published, on every node, this node's own streams included, each once.
/// - **Order.** A stream sees the payloads of one publisher in the order they were
///   published.
/// - **No blocking on consumers.** `publish` never waits for a slow subscriber; a
///   subscriber that falls behind gets [`Broadcasted::Gap`] in place of what it missed
///   and goes on.
/// - **Gaps.** Whenever payloads may have been lost for any reason, the stream yields a
///   gap where they would have been; a broadcast that cannot tell must say so with a
///   gap rather than stay silent.
/// - **Lifetime.** A stream receives what is published after `subscribe` returned,
///   until it is dropped; nothing is kept for later subscribers.
/// - **Errors.** `Error::Unavailable` when the broker cannot be reached; a broadcast
///   within one process never fails.
#[async_trait]
pub trait Broadcast: Send + Sync + 'static {
    /// Publishes `payload` to every current subscriber.
    async fn publish(&self, payload: Vec<u8>) -> Result<(), Error>;

    /// Subscribes to what is published from now on.
    async fn subscribe(&self) -> Result<BroadcastStream, Error>;
}
