//! The channels of one node: who is subscribed to what, presence members, and
//! fan-out of one event to every subscriber of a channel.
//!
//! Each connection has a [`Link`]: a bounded queue of frames its session writes, and a
//! way to be closed from outside (a subscriber that lets its queue fill up, a user's
//! connections terminated through the HTTP API). Publishing never waits on a socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::member::{Member, presence_succeeded};
use crate::protocol::{code, frame};
use crate::{ChannelKind, ChannelName, SocketId};

/// A frame as written to clients, shared by every subscriber it fans out to.
pub(crate) type Frame = Arc<str>;

/// One connection as the hub reaches it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) socket_id: SocketId,
    outbox: mpsc::Sender<Frame>,
    closed: Notify,
    close_code: AtomicU16,
}

impl Link {
    /// A link for connection `socket_id`, with room for `capacity` frames not yet
    /// written; the receiver is the session's.
    pub(crate) fn new(socket_id: SocketId, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Frame>) {
        let (outbox, inbox) = mpsc::channel(capacity.max(1));
        let link = Arc::new(Self {
            socket_id,
            outbox,
            closed: Notify::new(),
            close_code: AtomicU16::new(0),
        });
        (link, inbox)
    }

    /// Queues `frame`; a connection whose queue is full is too far behind and is
    /// closed so it reconnects.
    fn deliver(&self, frame: &Frame) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(Arc::clone(frame)) {
            self.close(code::OVER_CAPACITY);
        }
    }

    /// Asks the session to close with `code` (the first code asked for wins).
    pub(crate) fn close(&self, code: u16) {
        if self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.closed.notify_one();
        }
    }

    /// Completes once the connection is asked to close, with the code.
    pub(crate) async fn closed(&self) -> u16 {
        loop {
            let code = self.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.closed.notified().await;
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    link: Arc<Link>,
    /// The user the subscription speaks for: the presence member, or the owner of a
    /// `private-chat.{user}` channel.
    user: Option<String>,
}

#[derive(Debug, Default)]
struct Channel {
    subscribers: HashMap<u64, Subscriber>,
    /// Presence channels: each member once, with how many connections it joined with.
    members: HashMap<String, Present>,
}

#[derive(Debug)]
struct Present {
    connections: usize,
    info: Value,
}

/// A channel's occupancy, as the HTTP API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Connections subscribed.
    pub subscription_count: usize,
    /// Distinct presence members (0 for other channels).
    pub user_count: usize,
}

/// Why a subscription was refused by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    /// The presence channel already has its most members.
    MembersFull(usize),
}

/// The channels of one node. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct ChannelHub {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    channels: Mutex<HashMap<ChannelName, Channel>>,
    next_id: AtomicU64,
}

impl ChannelHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelName, Channel>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh connection number, the key of its subscriptions.
    pub(crate) fn connection_number(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes connection `id` to `channel`; for a presence channel, as `member`
    /// (at most `max_members` distinct members). The `subscription_succeeded` data to
    /// answer with; the other subscribers hear `member_added` when this is the
    /// member's first connection.
    pub(crate) fn join(
        &self,
        id: u64,
        link: &Arc<Link>,
        channel: &ChannelName,
        user: Option<String>,
        member: Option<Member>,
        max_members: usize,
    ) -> Result<String, JoinRefusal> {
        let mut channels = self.channels();
        let state = channels.entry(channel.clone()).or_default();
        let mut added = None;
        if let Some(member) = &member {
            if let Some(present) = state.members.get_mut(&member.user_id) {
                present.connections += 1;
            } else if state.members.len() >= max_members {
                if state.subscribers.is_empty() {
                    channels.remove(channel);
                }
                return Err(JoinRefusal::MembersFull(max_members));
            } else {
                state.members.insert(
                    member.user_id.clone(),
                    Present {
                        connections: 1,
                        info: member.user_info.clone(),
                    },
                );
                added = Some(member.added());
            }
        }
        let replaced = state.subscribers.insert(
            id,
            Subscriber {
                link: Arc::clone(link),
                user: member.map(|m| m.user_id).or(user),
            },
        );
        if let Some(added) = added {
            let frame: Frame = frame(
                "pusher_internal:member_added",
                Some(channel.as_str()),
                &added,
            )
            .into();
            for (other, subscriber) in &state.subscribers {
                if *other != id {
                    subscriber.link.deliver(&frame);
                }
            }
        }
        debug_assert!(replaced.is_none(), "a connection joins a channel once");
        Ok(match channel.kind() {
            ChannelKind::Presence => {
                let members: Vec<Member> = state
                    .members
                    .iter()
                    .map(|(user_id, present)| Member {
                        user_id: user_id.clone(),
                        user_info: present.info.clone(),
                    })
                    .collect();
                presence_succeeded(&members)
            }
            _ => "{}".to_owned(),
        })
    }

    /// Unsubscribes connection `id` from `channel`; the other subscribers hear
    /// `member_removed` when it was a presence member's last connection.
    pub(crate) fn leave(&self, id: u64, channel: &ChannelName) {
        let mut channels = self.channels();
        let Some(state) = channels.get_mut(channel) else {
            return;
        };
        let Some(subscriber) = state.subscribers.remove(&id) else {
            return;
        };
        if channel.kind() == ChannelKind::Presence
            && let Some(user_id) = subscriber.user
            && let Some(present) = state.members.get_mut(&user_id)
        {
            present.connections -= 1;
            if present.connections == 0 {
                state.members.remove(&user_id);
                let removed = Member {
                    user_id,
                    user_info: Value::Null,
                }
                .removed();
                let frame: Frame = frame(
                    "pusher_internal:member_removed",
                    Some(channel.as_str()),
                    &removed,
                )
                .into();
                for subscriber in state.subscribers.values() {
                    subscriber.link.deliver(&frame);
                }
            }
        }
        if state.subscribers.is_empty() {
            channels.remove(channel);
        }
    }

    /// Connection `id`'s subscription to `channel`, if it has one.
    pub(crate) fn subscription(&self, id: u64, channel: &ChannelName) -> Option<Subscription> {
        self.channels()
            .get(channel)?
            .subscribers
            .get(&id)
            .map(|s| Subscription {
                user: s.user.clone(),
            })
    }

    /// Writes `frame` to every subscriber of `channel` but `except` (a connection that
    /// should not hear its own event). How many connections it was queued for.
    pub(crate) fn publish_to(
        &self,
        channel: &ChannelName,
        frame: &Frame,
        except: ExceptSocket<'_>,
    ) -> usize {
        let channels = self.channels();
        let Some(state) = channels.get(channel) else {
            return 0;
        };
        let mut reached = 0;
        for (id, subscriber) in &state.subscribers {
            let excluded = match except {
                ExceptSocket::None => false,
                ExceptSocket::Connection(except) => *id == except,
                ExceptSocket::Socket(except) => subscriber.link.socket_id == *except,
            };
            if !excluded {
                subscriber.link.deliver(frame);
                reached += 1;
            }
        }
        reached
    }

    /// Publishes `event` with `data` (forwarded verbatim as the frame's string) on
    /// `channel` to every subscriber but the connection `except` names.
    pub fn publish(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&SocketId>,
    ) -> usize {
        let frame: Frame = frame(event, Some(channel.as_str()), data).into();
        let except = except.map_or(ExceptSocket::None, ExceptSocket::Socket);
        self.publish_to(channel, &frame, except)
    }

    /// The channels with at least one subscriber whose names start with `prefix`, and
    /// their occupancy.
    pub fn occupied(&self, prefix: &str) -> Vec<(ChannelName, ChannelInfo)> {
        let mut list: Vec<(ChannelName, ChannelInfo)> = self
            .channels()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
            .map(|(name, state)| (name.clone(), info(state)))
            .collect();
        list.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        list
    }

    /// The occupancy of `channel` (zero when no one is subscribed).
    pub fn info(&self, channel: &ChannelName) -> ChannelInfo {
        self.channels().get(channel).map_or(
            ChannelInfo {
                subscription_count: 0,
                user_count: 0,
            },
            info,
        )
    }

    /// The ids of a presence channel's members, sorted.
    pub fn members(&self, channel: &ChannelName) -> Vec<String> {
        let mut ids: Vec<String> = self
            .channels()
            .get(channel)
            .map(|state| state.members.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Closes every connection subscribed as `user` (a presence member, or the owner
    /// of `private-chat.{user}`) with `code`. How many connections were asked to close.
    pub fn terminate(&self, user: &str, code: u16) -> usize {
        let mut links: Vec<Arc<Link>> = Vec::new();
        for state in self.channels().values() {
            for subscriber in state.subscribers.values() {
                if subscriber.user.as_deref() == Some(user)
                    && !links.iter().any(|l| Arc::ptr_eq(l, &subscriber.link))
                {
                    links.push(Arc::clone(&subscriber.link));
                }
            }
        }
        for link in &links {
            link.close(code);
        }
        links.len()
    }
}

/// A connection's subscription to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The user it speaks for, if any (the presence member's id).
    pub(crate) user: Option<String>,
}

/// Who does not hear a published event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExceptSocket<'a> {
    /// Everyone hears it.
    None,
    /// Not this connection (a client event's sender).
    Connection(u64),
    /// Not the connection with this socket id (the HTTP API's `socket_id`).
    Socket(&'a SocketId),
}

fn info(state: &Channel) -> ChannelInfo {
    ChannelInfo {
        subscription_count: state.subscribers.len(),
        user_count: state.members.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelName {
        name.parse().unwrap()
    }

    fn connect(hub: &ChannelHub, socket: &str) -> (u64, Arc<Link>, mpsc::Receiver<Frame>) {
        let (link, inbox) = Link::new(socket.parse().unwrap(), 4);
        (hub.connection_number(), link, inbox)
    }

    fn member(id: &str) -> Option<Member> {
        Some(Member {
            user_id: id.to_owned(),
            user_info: serde_json::json!({ "id": id }),
        })
    }

    fn events(inbox: &mut mpsc::Receiver<Frame>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(frame) = inbox.try_recv() {
            let value: Value = serde_json::from_str(&frame).unwrap();
            out.push(format!(
                "{} {}",
                value["event"].as_str().unwrap(),
                value["data"].as_str().unwrap()
            ));
        }
        out
    }

    #[test]
    fn members_are_announced_on_first_join_and_last_leave() {
        let hub = ChannelHub::new();
        let room = channel("presence-room");
        let (a1, link_a1, mut inbox_a1) = connect(&hub, "1.1");
        let (a2, link_a2, _inbox_a2) = connect(&hub, "1.2");
        let (b, link_b, mut inbox_b) = connect(&hub, "2.1");
        hub.join(a1, &link_a1, &room, None, member("a"), 10)
            .unwrap();
        let joined = hub.join(b, &link_b, &room, None, member("b"), 10).unwrap();
        let presence: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(presence["presence"]["count"], 2);
        assert_eq!(
            events(&mut inbox_a1),
            [r#"pusher_internal:member_added {"user_id":"b","user_info":{"id":"b"}}"#]
        );
        // A second connection of a member is not news.
        hub.join(a2, &link_a2, &room, None, member("a"), 10)
            .unwrap();
        assert!(events(&mut inbox_b).is_empty());
        assert_eq!(
            hub.info(&room),
            ChannelInfo {
                subscription_count: 3,
                user_count: 2
            }
        );
        hub.leave(a1, &room);
        assert!(events(&mut inbox_b).is_empty());
        hub.leave(a2, &room);
        assert_eq!(
            events(&mut inbox_b),
            [r#"pusher_internal:member_removed {"user_id":"a"}"#]
        );
        assert_eq!(hub.members(&room), ["b"]);
        hub.leave(b, &room);
        assert!(hub.occupied("").is_empty());
    }

    #[test]
    fn the_member_limit_refuses_new_members_only() {
        let hub = ChannelHub::new();
        let room = channel("presence-room");
        let (a, link_a, _ia) = connect(&hub, "1.1");
        let (a2, link_a2, _ia2) = connect(&hub, "1.2");
        let (b, link_b, _ib) = connect(&hub, "2.1");
        hub.join(a, &link_a, &room, None, member("a"), 1).unwrap();
        assert!(hub.join(a2, &link_a2, &room, None, member("a"), 1).is_ok());
        assert_eq!(
            hub.join(b, &link_b, &room, None, member("b"), 1),
            Err(JoinRefusal::MembersFull(1))
        );
        assert_eq!(hub.subscription(b, &room), None);
    }

    #[test]
    fn publishing_skips_the_excluded_socket_and_closes_a_full_queue() {
        let hub = ChannelHub::new();
        let news = channel("news");
        let (a, link_a, mut inbox_a) = connect(&hub, "1.1");
        let (b, link_b, mut inbox_b) = connect(&hub, "2.1");
        hub.join(a, &link_a, &news, None, None, 10).unwrap();
        hub.join(b, &link_b, &news, None, None, 10).unwrap();
        let except: SocketId = "1.1".parse().unwrap();
        assert_eq!(hub.publish(&news, "update", "{\"n\":1}", Some(&except)), 1);
        assert!(events(&mut inbox_a).is_empty());
        assert_eq!(events(&mut inbox_b), [r#"update {"n":1}"#]);
        // Queues hold four frames: the fifth marks the connection too far behind.
        for _ in 0..5 {
            hub.publish(&news, "update", "{}", None);
        }
        assert_eq!(
            link_a.close_code.load(Ordering::Acquire),
            code::OVER_CAPACITY
        );
        assert_eq!(inbox_a.len(), 4);
    }

    #[test]
    fn terminating_a_user_closes_each_of_its_connections_once() {
        let hub = ChannelHub::new();
        let (a, link_a, _ia) = connect(&hub, "1.1");
        let (b, link_b, _ib) = connect(&hub, "2.1");
        hub.join(
            a,
            &link_a,
            &channel("private-chat.7"),
            Some("7".into()),
            None,
            10,
        )
        .unwrap();
        hub.join(
            a,
            &link_a,
            &channel("presence-chat.7.8"),
            None,
            member("7"),
            10,
        )
        .unwrap();
        hub.join(
            b,
            &link_b,
            &channel("presence-chat.7.8"),
            None,
            member("8"),
            10,
        )
        .unwrap();
        assert_eq!(hub.terminate("7", code::OVER_LIMIT), 1);
        assert_eq!(link_a.close_code.load(Ordering::Acquire), code::OVER_LIMIT);
        assert_eq!(link_b.close_code.load(Ordering::Acquire), 0);
    }
}
