//! A `Broadcast` for many nodes: one Redis pub/sub topic between them, in-process
//! fan-out within.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::memory::InProcessBroadcast;
use chat_core::{Broadcast, BroadcastStream, Broadcasted, Error};
use redis::aio::{AsyncPushSender, ConnectionManager, SendError};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, watch};

use crate::connection;
use crate::error::from_redis;

/// The first wait before subscribing again, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(1);
/// Bytes of the publishing node's id in front of every payload.
const NODE_BYTES: usize = 8;

/// A [`Broadcast`] shared by every node on one Redis, on the topic
/// `{prefix}:broadcast:{name}`.
///
/// Publishing hands the payload to this node's subscribers at once and publishes it to
/// Redis (one round trip), whence it reaches the other nodes' subscribers. Receiving
/// is one RESP3 connection per broadcast, subscribed for as long as the broadcast
/// lives. When that connection drops, it subscribes again (100 ms, doubling to 1 s)
/// and then gives every local subscriber a [`Broadcasted::Gap`]; a publish while Redis
/// is away reaches this node's subscribers and answers `Error::Unavailable`.
/// `subscribe` waits up to a second for the topic to be subscribed.
///
/// Cloning shares the connections; they end when the last clone is dropped.
#[derive(Clone)]
pub struct RedisBroadcast {
    shared: Arc<Shared>,
}

struct Shared {
    node: [u8; NODE_BYTES],
    topic: String,
    local: InProcessBroadcast,
    publisher: ConnectionManager,
    subscribed: watch::Receiver<bool>,
    _subscription: mpsc::UnboundedSender<()>,
}

impl std::fmt::Debug for RedisBroadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroadcast")
            .field("topic", &self.shared.topic)
            .finish_non_exhaustive()
    }
}

struct PushHandler {
    node: [u8; NODE_BYTES],
    topic: Vec<u8>,
    local: InProcessBroadcast,
    disconnected: mpsc::UnboundedSender<()>,
}

impl AsyncPushSender for PushHandler {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Message => {
                let mut data = info.data.into_iter();
                if let (Some(Value::BulkString(topic)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                    && topic == self.topic
                {
                    match payload.split_at_checked(NODE_BYTES) {
                        // This node's own payloads reached its subscribers when published.
                        Some((node, _)) if node == self.node => {}
                        Some((_, payload)) => {
                            self.local.deliver(&Broadcasted::Payload(payload.into()));
                        }
                        None => self.local.deliver(&Broadcasted::Gap),
                    }
                }
            }
            PushKind::Disconnection => {
                let _ = self.disconnected.send(());
            }
            _ => {}
        }
        Ok(())
    }
}

impl RedisBroadcast {
    /// A broadcast named `name` on `url` (`redis://…`, no TLS) under `prefix`, whose
    /// local subscribers may each fall `capacity` payloads behind.
    ///
    /// Connects in the background and reconnects by itself; must be called within a
    /// Tokio runtime.
    pub fn connect(url: &str, prefix: &str, name: &str, capacity: usize) -> Result<Self, Error> {
        let node = crate::notifier::node_id().to_be_bytes();
        let topic = format!("{prefix}:broadcast:{name}");
        let local = InProcessBroadcast::new(capacity);
        let (disconnected_tx, disconnected) = mpsc::unbounded_channel();
        let handler = PushHandler {
            node,
            topic: topic.clone().into_bytes(),
            local: local.clone(),
            disconnected: disconnected_tx.clone(),
        };
        let receiving = ConnectionManager::new_lazy_with_config(
            connection::client(url, ProtocolVersion::RESP3)?,
            connection::manager_config().set_push_sender(handler),
        )
        .map_err(from_redis)?;
        let publisher = ConnectionManager::new_lazy_with_config(
            connection::client(url, ProtocolVersion::RESP2)?,
            connection::manager_config(),
        )
        .map_err(from_redis)?;
        // The task ends once every clone (holding the sender) is gone.
        let (alive, ended) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = watch::channel(false);
        tokio::spawn(keep_subscribed(
            receiving,
            topic.clone(),
            local.clone(),
            subscribed_tx,
            disconnected,
            ended,
        ));
        drop(disconnected_tx);
        Ok(Self {
            shared: Arc::new(Shared {
                node,
                topic,
                local,
                publisher,
                subscribed,
                _subscription: alive,
            }),
        })
    }
}

/// Subscribes the topic, and again after every disconnection, giving the local
/// subscribers a gap for whatever was missed meanwhile.
async fn keep_subscribed(
    mut connection: ConnectionManager,
    topic: String,
    local: InProcessBroadcast,
    subscribed: watch::Sender<bool>,
    mut disconnected: mpsc::UnboundedReceiver<()>,
    mut ended: mpsc::UnboundedReceiver<()>,
) {
    loop {
        let mut retry = FIRST_RETRY;
        loop {
            let subscribed = tokio::select! {
                result = connection.subscribe(&topic) => result,
                _ = ended.recv() => return,
            };
            match subscribed {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, %topic, "cannot subscribe to the broadcast topic; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        _ = ended.recv() => return,
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
        // Whoever subscribed while the topic was not may have missed something.
        local.deliver(&Broadcasted::Gap);
        subscribed.send_replace(true);
        tokio::select! {
            Some(()) = disconnected.recv() => {
                subscribed.send_replace(false);
                tracing::warn!(%topic, "the broadcast lost its Redis subscription");
            }
            _ = ended.recv() => return,
        }
    }
}

#[async_trait]
impl Broadcast for RedisBroadcast {
    async fn publish(&self, payload: Vec<u8>) -> Result<(), Error> {
        let mut framed = Vec::with_capacity(NODE_BYTES + payload.len());
        framed.extend_from_slice(&self.shared.node);
        framed.extend_from_slice(&payload);
        self.shared
            .local
            .deliver(&Broadcasted::Payload(payload.into()));
        let mut publisher = self.shared.publisher.clone();
        redis::cmd("PUBLISH")
            .arg(&self.shared.topic)
            .arg(framed)
            .query_async::<()>(&mut publisher)
            .await
            .map_err(from_redis)
    }

    async fn subscribe(&self) -> Result<BroadcastStream, Error> {
        // Waits (briefly) for the topic to be subscribed, so what other nodes publish
        // from now on arrives; while Redis is away the stream serves this node, and a
        // gap follows once the topic is subscribed again.
        let mut subscribed = self.shared.subscribed.clone();
        let _ = tokio::time::timeout(
            connection::CONNECTION_TIMEOUT,
            subscribed.wait_for(|subscribed| *subscribed),
        )
        .await;
        self.shared.local.subscribe().await
    }
}
