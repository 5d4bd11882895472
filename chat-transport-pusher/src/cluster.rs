//! The nodes together: channel events, presence members and terminations cross them
//! on a [`Broadcast`](chat_core::Broadcast).
//!
//! Every node publishes on the broadcast what the others must know: an event for a
//! channel (published through the HTTP API or whispered by a client), its presence
//! members joining and leaving, a user's connections to terminate. Each node applies
//! what arrives to its own connections. Presence members are kept by the node they
//! joined on; the others hold a copy, rebuilt whenever it may be stale: a node that
//! starts, or whose broadcast reports a gap, asks every node for its members. A node
//! says it is alive every few seconds; one silent for three times as long is taken
//! for dead and its members are removed.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{Broadcast, Broadcasted};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::hub::{ChannelHub, ExceptSocket, Frame};
use crate::{ChannelName, Member, SocketId};

/// How often a node says it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(5);
/// Silence after which a node counts as gone.
const GONE_AFTER: Duration = Duration::from_secs(15);

/// What crosses the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Envelope {
    /// A frame for every subscriber of `channel` on every node, but the connection
    /// with the socket id `except`.
    Event {
        channel: ChannelName,
        frame: String,
        except: Option<SocketId>,
    },
    /// A member's first connection on `node` joined `channel`.
    Joined {
        node: u64,
        channel: ChannelName,
        user_id: String,
        user_info: Value,
    },
    /// A member's last connection on `node` left `channel`.
    Left {
        node: u64,
        channel: ChannelName,
        user_id: String,
    },
    /// `node` (re)starts its copy of the others' members: every node answers with
    /// `Members`.
    Hello { node: u64 },
    /// Every presence member on `node`.
    Members { node: u64, members: Vec<Entry> },
    /// `node` is alive.
    Alive { node: u64 },
    /// Close every connection of `user_id` with `code`.
    Terminate { user_id: String, code: u16 },
}

/// One presence member of one channel, in a `Members` envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    channel: ChannelName,
    user_id: String,
    user_info: Value,
}

/// This node's side of the cluster: the queue of what it publishes, in the order it
/// was decided.
#[derive(Debug)]
pub(crate) struct Cluster {
    outbox: mpsc::UnboundedSender<Envelope>,
}

impl Cluster {
    /// Joins the nodes sharing `broadcast`: subscribes, asks for their members, and
    /// runs the task that applies what arrives to `hub` and publishes what this node
    /// queues, until the returned cluster is dropped.
    pub(crate) async fn start(broadcast: Arc<dyn Broadcast>, hub: ChannelHub) -> Self {
        let node = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let (outbox, queued) = mpsc::unbounded_channel();
        let stream = match broadcast.subscribe().await {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to the other nodes; serving this node alone");
                None
            }
        };
        let _ = outbox.send(Envelope::Hello { node });
        tokio::spawn(run(node, broadcast, hub.clone(), stream, queued));
        let cluster = Self { outbox };
        hub.set_cluster(cluster.outbox.clone(), node);
        cluster
    }

    /// Queues `envelope` for every node, this one included.
    pub(crate) fn publish(&self, envelope: Envelope) {
        // The task ends only after this cluster is dropped.
        let _ = self.outbox.send(envelope);
    }
}

async fn run(
    node: u64,
    broadcast: Arc<dyn Broadcast>,
    hub: ChannelHub,
    mut stream: Option<chat_core::BroadcastStream>,
    mut queued: mpsc::UnboundedReceiver<Envelope>,
) {
    let mut alive = tokio::time::interval(ALIVE_EVERY);
    alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let incoming = async {
            match stream.as_mut() {
                Some(stream) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            envelope = queued.recv() => match envelope {
                Some(envelope) => publish(&*broadcast, &envelope).await,
                // Every sender is gone: the endpoint was dropped.
                None => return,
            },
            item = incoming => match item {
                Some(Broadcasted::Payload(payload)) => {
                    match serde_json::from_slice::<Envelope>(&payload) {
                        Ok(envelope) => apply(node, &*broadcast, &hub, envelope).await,
                        Err(error) => tracing::debug!(%error, "an unreadable envelope from another node"),
                    }
                }
                Some(_) => {
                    // Something may have been missed: every node's members again,
                    // and this node's for whoever missed its changes.
                    publish(&*broadcast, &Envelope::Hello { node }).await;
                    publish(&*broadcast, &members_of(node, &hub)).await;
                }
                None => stream = None,
            },
            _ = alive.tick() => {
                publish(&*broadcast, &Envelope::Alive { node }).await;
                hub.expire_remote(GONE_AFTER);
            }
        }
    }
}

async fn publish(broadcast: &dyn Broadcast, envelope: &Envelope) {
    // An envelope of plain values always serializes.
    let payload = serde_json::to_vec(envelope).unwrap_or_default();
    if let Err(error) = broadcast.publish(payload).await {
        tracing::warn!(%error, "cannot reach the other nodes; this node's connections still hear it");
    }
}

fn members_of(node: u64, hub: &ChannelHub) -> Envelope {
    let members = hub
        .local_members()
        .into_iter()
        .map(|(channel, member)| Entry {
            channel,
            user_id: member.user_id,
            user_info: member.user_info,
        })
        .collect();
    Envelope::Members { node, members }
}

async fn apply(node: u64, broadcast: &dyn Broadcast, hub: &ChannelHub, envelope: Envelope) {
    match envelope {
        Envelope::Event {
            channel,
            frame,
            except,
        } => {
            let frame: Frame = frame.into();
            let except = except
                .as_ref()
                .map_or(ExceptSocket::None, ExceptSocket::Socket);
            hub.publish_to(&channel, &frame, except);
        }
        Envelope::Terminate { user_id, code } => {
            hub.terminate(&user_id, code);
        }
        // This node's own presence is its own state already.
        Envelope::Joined { node: from, .. }
        | Envelope::Left { node: from, .. }
        | Envelope::Hello { node: from }
        | Envelope::Members { node: from, .. }
        | Envelope::Alive { node: from }
            if from == node => {}
        Envelope::Joined {
            node: from,
            channel,
            user_id,
            user_info,
        } => hub.remote_joined(from, channel, Member { user_id, user_info }),
        Envelope::Left {
            node: from,
            channel,
            user_id,
        } => hub.remote_left(from, &channel, &user_id),
        Envelope::Hello { node: from } => {
            hub.remote_alive(from);
            publish(broadcast, &members_of(node, hub)).await;
        }
        Envelope::Members {
            node: from,
            members,
        } => hub.remote_members(
            from,
            members
                .into_iter()
                .map(|entry| {
                    (
                        entry.channel,
                        Member {
                            user_id: entry.user_id,
                            user_info: entry.user_info,
                        },
                    )
                })
                .collect(),
        ),
        Envelope::Alive { node: from } => hub.remote_alive(from),
    }
}
