//! A `Notifier` for many nodes: Redis pub/sub between them, in-process fan-out within.

use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use chat_core::memory::InProcessNotifier;
use chat_core::{Error, Event, EventStream, Notice, Notifier, UserId};
use futures_core::Stream;
use redis::ProtocolVersion;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::connection;
use crate::error::from_redis;
use crate::health::Health;
use crate::publisher::{self, Outgoing};
use crate::subscriber::{Command, PushHandler, SubscriptionTask, Topics};
use crate::wire;

/// Events waiting for the publishing task; beyond this the node drops events and has
/// the other nodes catch up from the store.
const OUTBOX: usize = 65_536;

/// A [`Notifier`] shared by every node on one Redis.
///
/// Publishing hands the event to this node's subscribers at once and queues it for
/// Redis, where one task pipelines it to the user's topic (`{prefix}:user:{id}`).
/// Receiving is one RESP3 connection per node, subscribed to the topic of every user
/// with a subscriber on this node while it has one.
///
/// When Redis goes away, each node keeps serving its own subscribers. Whatever may have
/// been missed meanwhile becomes a [`Notice::Gap`] on every stream that could have
/// missed it, once Redis is back: after this node's subscriptions are restored, and
/// after a node that could not publish announces it (on `{prefix}:gap`). A feed answers
/// a gap by reading the store, so nothing committed is missed.
///
/// Cloning shares the connections and tasks; they end when the last clone is dropped.
#[derive(Clone)]
pub struct RedisNotifier {
    shared: Arc<Shared>,
}

struct Shared {
    node: u64,
    topics: Topics,
    local: InProcessNotifier,
    commands: mpsc::UnboundedSender<Command>,
    outbox: mpsc::Sender<Outgoing>,
    health: Arc<Health>,
    publisher: ConnectionManager,
}

impl std::fmt::Debug for RedisNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNotifier")
            .field("node", &self.shared.node)
            .field("topics", &self.shared.topics)
            .finish_non_exhaustive()
    }
}

impl RedisNotifier {
    /// A notifier on `url` (`redis://[user:pass@]host:port[/db]`, no TLS; the
    /// RESP3 that pub/sub needs is asked for here), topics under `prefix`, with local
    /// subscribers that may fall [`InProcessNotifier::DEFAULT_CAPACITY`] events behind.
    ///
    /// Connects in the background and reconnects by itself; must be called within a
    /// Tokio runtime.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, Error> {
        Self::connect_with(url, prefix, InProcessNotifier::new())
    }

    /// The same, handing events to this node's subscribers through `local` (whose
    /// capacity bounds how far a subscriber may fall behind).
    pub fn connect_with(url: &str, prefix: &str, local: InProcessNotifier) -> Result<Self, Error> {
        let node = node_id();
        let topics = Topics::new(prefix);
        let health = Arc::new(Health::default());

        let (disconnected_tx, disconnected) = mpsc::unbounded_channel();
        let handler = PushHandler {
            node,
            gap_topic: topics.gap().into_bytes(),
            local: local.clone(),
            disconnected: disconnected_tx,
        };
        // No automatic resubscription: after a reconnect the subscription task
        // subscribes exactly the users with local streams (the manager would also bring
        // back topics released while Redis was away, which no one would release again).
        let config = connection::manager_config().set_push_sender(handler);
        let receiving = ConnectionManager::new_lazy_with_config(
            connection::client(url, ProtocolVersion::RESP3)?,
            config,
        )
        .map_err(from_redis)?;
        let publishing = ConnectionManager::new_lazy_with_config(
            connection::client(url, ProtocolVersion::RESP2)?,
            connection::manager_config(),
        )
        .map_err(from_redis)?;

        let (commands_tx, commands) = mpsc::unbounded_channel();
        tokio::spawn(
            SubscriptionTask {
                connection: receiving,
                topics: topics.clone(),
                local: local.clone(),
                health: Arc::clone(&health),
                commands,
                disconnected,
            }
            .run(),
        );
        let (outbox_tx, outbox) = mpsc::channel(OUTBOX);
        tokio::spawn(publisher::run(
            publishing.clone(),
            outbox,
            topics.gap(),
            node,
            Arc::clone(&health),
        ));

        Ok(Self {
            shared: Arc::new(Shared {
                node,
                topics,
                local,
                commands: commands_tx,
                outbox: outbox_tx,
                health,
                publisher: publishing,
            }),
        })
    }
}

/// A random id for this node, so it can tell its own events from others'.
pub(crate) fn node_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.finish()
}

#[async_trait]
impl Notifier for RedisNotifier {
    async fn publish(&self, user: UserId, event: Event) -> Result<(), Error> {
        let shared = &self.shared;
        shared.local.deliver(user, &event);
        let Some(payload) = wire::encode(shared.node, user, &event) else {
            return Ok(());
        };
        if shared
            .outbox
            .try_send((shared.topics.user(user), payload))
            .is_err()
        {
            shared
                .health
                .lost_events(&"more events wait than the outbox holds");
        }
        Ok(())
    }

    async fn subscribe(&self, user: UserId) -> Result<EventStream, Error> {
        let shared = &self.shared;
        // The guard exists before the topic is wanted, so a caller that gives up while
        // waiting (its future dropped) still releases the topic after wanting it.
        let subscription = Subscription {
            stream: Some(shared.local.subscribe(user).await?),
            user,
            commands: shared.commands.clone(),
        };
        if shared.health.subscriber_is_down() {
            // Not waiting for Redis: the stream works locally at once, and gets a gap
            // once its topic is subscribed.
            let _ = shared.commands.send(Command::Want(user, None));
        } else {
            let (done, subscribed) = oneshot::channel();
            if shared
                .commands
                .send(Command::Want(user, Some(done)))
                .is_ok()
            {
                // Answered once the topic is subscribed (or Redis is found away).
                let _ = subscribed.await;
            }
        }
        Ok(Box::pin(subscription))
    }

    async fn ping(&self) -> Result<(), Error> {
        if !self.shared.health.is_up() {
            return Err(Error::unavailable("the bus is reconnecting to Redis"));
        }
        let mut connection = self.shared.publisher.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(from_redis)
    }
}

/// A local stream that releases the user's topic when it is dropped.
struct Subscription {
    stream: Option<EventStream>,
    user: UserId,
    commands: mpsc::UnboundedSender<Command>,
}

impl Stream for Subscription {
    type Item = Notice;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notice>> {
        match self.stream.as_mut() {
            Some(stream) => stream.as_mut().poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Unsubscribed locally first, so the task sees how many are left.
        drop(self.stream.take());
        let _ = self.commands.send(Command::Release(self.user));
    }
}
