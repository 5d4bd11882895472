//! The nodes together: channel events, presence members and terminations cross them
//! on a [`Broadcast`](chat_core::Broadcast).
//!
//! Every node publishes on the broadcast what the others must know: an event for a
//! channel (published through the HTTP API or whispered by a client), its presence
//! members joining and leaving, a user's connections to terminate. Each node applies
//! what arrives to its own connections. Presence members are kept by the node they
//! joined on; the others hold a copy, rebuilt whenever it may be stale: a node that
//! starts, whose broadcast reports a gap, or that hears from a node it does not know,
//! asks every node for its members; each node also republishes its members once a
//! minute, and after the broadcast failed to take one of its changes. A node says it is
//! alive every few seconds; one silent for three times as long is taken for dead and
//! its members are removed.
//!
//! This node's own connections never wait on the broadcast: an event or a termination
//! is applied to them at once, and what the other nodes must hear is queued for a task
//! of its own (bounded: a full queue drops, and presence is republished whole later).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_core::{Broadcast, Broadcasted};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::hub::{ChannelHub, ExceptSocket, Frame};
use crate::{ChannelName, Member, SocketId};

/// How often a node says it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(5);
/// Silence after which a node counts as gone.
const GONE_AFTER: Duration = Duration::from_secs(15);
/// Alive ticks between two full republications of this node's members.
const MEMBERS_EVERY: u32 = 12;
/// Envelopes waiting for the broadcast; beyond this they are dropped.
const OUTBOX: usize = 65_536;
/// Longest wait for the broadcast to take one envelope.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// What crosses the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Envelope {
    /// A frame for every subscriber of `channel` on every node, but the connection
    /// with the socket id `except`.
    Event {
        node: u64,
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
    Terminate {
        node: u64,
        user_id: String,
        code: u16,
    },
}

impl Envelope {
    /// The node it comes from.
    fn node(&self) -> u64 {
        match self {
            Self::Event { node, .. }
            | Self::Joined { node, .. }
            | Self::Left { node, .. }
            | Self::Hello { node }
            | Self::Members { node, .. }
            | Self::Alive { node }
            | Self::Terminate { node, .. } => *node,
        }
    }
}

/// One presence member of one channel, in a `Members` envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) channel: ChannelName,
    pub(crate) user_id: String,
    pub(crate) user_info: Value,
}

/// Where this node's envelopes wait for the broadcast, shared with the hub so that its
/// member changes are queued in the order they happen.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    pub(crate) node: u64,
    queue: mpsc::Sender<Envelope>,
    /// A change of this node's members did not reach the broadcast: its members are
    /// republished whole.
    stale: Arc<AtomicBool>,
}

impl Outbox {
    /// Queues `envelope`; `false` when the queue is full and it was dropped.
    pub(crate) fn queue(&self, envelope: Envelope) -> bool {
        match self.queue.try_send(envelope) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(envelope)) => {
                tracing::warn!(kind = ?std::mem::discriminant(&envelope), "the other nodes are too far behind; an envelope is dropped");
                false
            }
            // The tasks ended: the endpoint is going away.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a change of this node's members; one that cannot be queued makes them
    /// republished whole.
    pub(crate) fn queue_change(&self, envelope: Envelope) {
        if !self.queue(envelope) {
            self.stale.store(true, Ordering::Release);
        }
    }
}

/// This node's side of the cluster; its tasks end when it is dropped.
#[derive(Debug)]
pub(crate) struct Cluster {
    outbox: Outbox,
    hub: ChannelHub,
    _stop: watch::Sender<()>,
}

impl Cluster {
    /// Joins the nodes sharing `broadcast`: subscribes, asks for their members, and
    /// runs the tasks that publish what this node queues and apply what arrives to
    /// `hub`, until the returned cluster is dropped.
    pub(crate) async fn start(broadcast: Arc<dyn Broadcast>, hub: ChannelHub) -> Self {
        let node = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let (queue, queued) = mpsc::channel(OUTBOX);
        let outbox = Outbox {
            node,
            queue,
            stale: Arc::new(AtomicBool::new(false)),
        };
        let (stop, stopped) = watch::channel(());
        match broadcast.subscribe().await {
            Ok(stream) => {
                tokio::spawn(receive(
                    stream,
                    hub.clone(),
                    outbox.clone(),
                    stopped.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot hear the other nodes; this node serves its own connections");
            }
        }
        outbox.queue(Envelope::Hello { node });
        tokio::spawn(send(
            broadcast,
            queued,
            hub.clone(),
            outbox.clone(),
            stopped,
        ));
        hub.set_cluster(outbox.clone());
        Self {
            outbox,
            hub,
            _stop: stop,
        }
    }

    /// Applies `envelope` (an event or a termination) to this node's connections at
    /// once, and queues it for the other nodes.
    pub(crate) fn publish(&self, envelope: Envelope) {
        apply_here(&self.hub, &envelope);
        self.outbox.queue(envelope);
    }

    /// This node's id, for the envelopes it makes.
    pub(crate) fn node(&self) -> u64 {
        self.outbox.node
    }
}

/// Publishes what this node queues, says it is alive, forgets silent nodes, and
/// republishes its members when they may be stale and once a minute.
async fn send(
    broadcast: Arc<dyn Broadcast>,
    mut queued: mpsc::Receiver<Envelope>,
    hub: ChannelHub,
    outbox: Outbox,
    mut stopped: watch::Receiver<()>,
) {
    let mut alive = tokio::time::interval(ALIVE_EVERY);
    alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0_u32;
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            Some(envelope) = queued.recv() => {
                if publish(&*broadcast, &envelope).await {
                    if outbox.stale.swap(false, Ordering::AcqRel) {
                        hub.queue_members();
                    }
                } else if matches!(envelope, Envelope::Joined { .. } | Envelope::Left { .. } | Envelope::Members { .. }) {
                    outbox.stale.store(true, Ordering::Release);
                }
            }
            _ = alive.tick() => {
                publish(&*broadcast, &Envelope::Alive { node: outbox.node }).await;
                hub.expire_remote(GONE_AFTER);
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(MEMBERS_EVERY) {
                    hub.queue_members();
                }
            }
        }
    }
}

/// Applies what the other nodes publish to this node's connections and its copy of
/// their members.
async fn receive(
    mut stream: chat_core::BroadcastStream,
    hub: ChannelHub,
    outbox: Outbox,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        let item = tokio::select! {
            _ = stopped.changed() => return,
            item = stream.next() => item,
        };
        match item {
            Some(Broadcasted::Payload(payload)) => {
                match serde_json::from_slice::<Envelope>(&payload) {
                    Ok(envelope) if envelope.node() == outbox.node => {}
                    Ok(envelope) => apply_remote(&hub, &outbox, envelope),
                    Err(error) => {
                        tracing::debug!(%error, "an unreadable envelope from another node")
                    }
                }
            }
            Some(_) => {
                // Something may have been missed: every node's members again, and this
                // node's for whoever missed its changes.
                outbox.queue(Envelope::Hello { node: outbox.node });
                hub.queue_members();
            }
            None => {
                tracing::warn!("the broadcast ended; this node no longer hears the others");
                return;
            }
        }
    }
}

/// Whether the broadcast took `envelope` in time.
async fn publish(broadcast: &dyn Broadcast, envelope: &Envelope) -> bool {
    // An envelope of plain values always serializes.
    let payload = serde_json::to_vec(envelope).unwrap_or_default();
    match tokio::time::timeout(PUBLISH_TIMEOUT, broadcast.publish(payload)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot reach the other nodes; this node's connections still hear it");
            false
        }
        Err(_) => {
            tracing::warn!("the other nodes did not take an envelope in time");
            false
        }
    }
}

/// An event or a termination, for this node's connections.
fn apply_here(hub: &ChannelHub, envelope: &Envelope) {
    match envelope {
        Envelope::Event {
            channel,
            frame,
            except,
            ..
        } => {
            let frame: Frame = frame.as_str().into();
            let except = except
                .as_ref()
                .map_or(ExceptSocket::None, ExceptSocket::Socket);
            hub.publish_to(channel, &frame, except);
        }
        Envelope::Terminate { user_id, code, .. } => {
            hub.terminate(user_id, *code);
        }
        _ => {}
    }
}

fn apply_remote(hub: &ChannelHub, outbox: &Outbox, envelope: Envelope) {
    let from = envelope.node();
    let known = hub.knows(from);
    match envelope {
        Envelope::Event { .. } | Envelope::Terminate { .. } => apply_here(hub, &envelope),
        Envelope::Joined {
            channel,
            user_id,
            user_info,
            ..
        } => hub.remote_joined(from, channel, Member { user_id, user_info }),
        Envelope::Left {
            channel, user_id, ..
        } => hub.remote_left(from, &channel, &user_id),
        Envelope::Hello { .. } => {
            hub.remote_alive(from);
            hub.queue_members();
            // A new node has no members yet: nothing more to ask it.
            return;
        }
        Envelope::Members { members, .. } => {
            hub.remote_members(
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
            );
            return;
        }
        Envelope::Alive { .. } => hub.remote_alive(from),
    }
    if !known {
        // A node this one did not know (or had taken for dead): its members, please.
        outbox.queue(Envelope::Hello { node: outbox.node });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (Outbox, mpsc::Receiver<Envelope>) {
        let (queue, queued) = mpsc::channel(16);
        let outbox = Outbox {
            node: 1,
            queue,
            stale: Arc::new(AtomicBool::new(false)),
        };
        (outbox, queued)
    }

    #[test]
    fn a_node_heard_of_for_the_first_time_is_asked_for_its_members() {
        let hub = ChannelHub::new();
        let (outbox, mut queued) = outbox();
        apply_remote(&hub, &outbox, Envelope::Alive { node: 2 });
        assert_eq!(queued.try_recv().unwrap(), Envelope::Hello { node: 1 });
        // Known from now on: nothing more to ask.
        apply_remote(&hub, &outbox, Envelope::Alive { node: 2 });
        assert!(queued.try_recv().is_err());
        // Taken for dead, then heard again: asked again.
        hub.expire_remote(Duration::ZERO);
        apply_remote(
            &hub,
            &outbox,
            Envelope::Left {
                node: 2,
                channel: "presence-room".parse().unwrap(),
                user_id: "7".into(),
            },
        );
        assert_eq!(queued.try_recv().unwrap(), Envelope::Hello { node: 1 });
    }

    #[test]
    fn a_hello_is_answered_with_this_nodes_members_and_a_full_queue_marks_them_stale() {
        let hub = ChannelHub::new();
        let (outbox, mut queued) = outbox();
        hub.set_cluster(outbox.clone());
        apply_remote(&hub, &outbox, Envelope::Hello { node: 2 });
        assert_eq!(
            queued.try_recv().unwrap(),
            Envelope::Members {
                node: 1,
                members: Vec::new()
            }
        );
        for _ in 0..16 {
            outbox.queue(Envelope::Alive { node: 1 });
        }
        assert!(!outbox.stale.load(Ordering::Acquire));
        hub.queue_members();
        assert!(outbox.stale.load(Ordering::Acquire));
    }
}
