//! The channels of one node: who is subscribed to what, presence members (this
//! node's, and what the other nodes said of theirs), and fan-out of one event to
//! every subscriber of a channel on this node.
//!
//! Each connection has a [`Link`]: a bounded queue of frames its session writes, and a
//! way to be closed from outside (a subscriber that lets its queue fill up, a user's
//! connections terminated through the HTTP API). Publishing never waits on a socket.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cluster::{Entry, Envelope, Outbox};
use crate::member::{Member, presence_succeeded};
use crate::protocol::{code, frame};
use crate::{ChannelKind, ChannelName, SocketId};

/// A frame as written to clients, shared by every subscriber it fans out to.
pub(crate) type Frame = Arc<str>;

/// Frames a drained queue may keep room for; beyond this its memory is given back.
const KEEP_SLOTS: usize = 16;

/// One connection as the hub reaches it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) socket_id: SocketId,
    /// Frames waiting to be written; empty, it holds no memory, so an idle connection
    /// costs only this struct.
    outbox: Mutex<VecDeque<Frame>>,
    capacity: usize,
    ready: Notify,
    closed: Notify,
    close_code: AtomicU16,
}

/// The session's end of its link: the frames queued for it.
#[derive(Debug)]
pub(crate) struct Inbox(Arc<Link>);

impl Link {
    /// A link for connection `socket_id`, with room for `capacity` frames not yet
    /// written; the inbox is the session's.
    pub(crate) fn new(socket_id: SocketId, capacity: usize) -> (Arc<Self>, Inbox) {
        let link = Arc::new(Self {
            socket_id,
            outbox: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closed: Notify::new(),
            close_code: AtomicU16::new(0),
        });
        (Arc::clone(&link), Inbox(link))
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, VecDeque<Frame>> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame`; a connection whose queue is full is too far behind and is
    /// closed so it reconnects.
    fn deliver(&self, frame: &Frame) {
        {
            let mut outbox = self.outbox();
            if outbox.len() >= self.capacity {
                drop(outbox);
                self.close(code::OVER_CAPACITY);
                return;
            }
            outbox.push_back(Arc::clone(frame));
        }
        self.ready.notify_one();
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

impl Inbox {
    /// The next queued frame, if there is one.
    pub(crate) fn try_recv(&self) -> Option<Frame> {
        let mut outbox = self.0.outbox();
        let frame = outbox.pop_front();
        if outbox.is_empty() && outbox.capacity() > KEEP_SLOTS {
            *outbox = VecDeque::new();
        }
        frame
    }

    /// The next queued frame, once there is one.
    pub(crate) async fn recv(&self) -> Frame {
        loop {
            if let Some(frame) = self.try_recv() {
                return frame;
            }
            // A frame queued since the check left a permit: this completes at once.
            self.0.ready.notified().await;
        }
    }

    /// Frames queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.outbox().len()
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
    /// Most channels have one subscriber (each user's `private-chat` channel): a vector
    /// keeps them small; a large one is scanned only when a connection leaves.
    subscribers: Subscribers,
    /// Presence channels: each member once, with how many connections it joined with.
    members: Members,
}

#[derive(Debug, Default)]
struct Subscribers(Vec<(u64, Subscriber)>);

impl Subscribers {
    fn insert(&mut self, id: u64, subscriber: Subscriber) -> Option<Subscriber> {
        let replaced = self.remove(&id);
        self.0.push((id, subscriber));
        replaced
    }

    fn remove(&mut self, id: &u64) -> Option<Subscriber> {
        let at = self.0.iter().position(|(other, _)| other == id)?;
        let (_, subscriber) = self.0.swap_remove(at);
        if self.0.capacity() > 4 * self.0.len().max(4) {
            self.0.shrink_to_fit();
        }
        Some(subscriber)
    }

    fn get(&self, id: &u64) -> Option<&Subscriber> {
        self.0.iter().find(|(other, _)| other == id).map(|(_, s)| s)
    }

    fn values(&self) -> impl Iterator<Item = &Subscriber> {
        self.0.iter().map(|(_, s)| s)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A presence channel's members; nothing for other channels.
#[derive(Debug, Default)]
#[expect(
    clippy::box_collection,
    reason = "a pointer, not an empty map's 48 bytes, in each of the many channels without members"
)]
struct Members(Option<Box<HashMap<String, Present>>>);

impl Members {
    fn contains_key(&self, user: &str) -> bool {
        self.0.as_ref().is_some_and(|m| m.contains_key(user))
    }

    fn get_mut(&mut self, user: &str) -> Option<&mut Present> {
        self.0.as_mut()?.get_mut(user)
    }

    fn insert(&mut self, user: String, present: Present) {
        self.0.get_or_insert_default().insert(user, present);
    }

    fn remove(&mut self, user: &str) {
        if let Some(members) = &mut self.0 {
            members.remove(user);
            if members.is_empty() {
                self.0 = None;
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Present)> {
        self.0.iter().flat_map(|m| m.iter())
    }
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
    state: Mutex<State>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    channels: HashMap<ChannelName, Channel>,
    /// The presence members of the other nodes, by node, as they announced them.
    remote: HashMap<u64, RemoteNode>,
    /// Where this node's member changes go to reach the other nodes (queued while the
    /// state is locked, so they leave in the order they happened), and its id.
    cluster: Option<Outbox>,
}

#[derive(Debug)]
struct RemoteNode {
    last_heard: Instant,
    members: HashMap<ChannelName, HashMap<String, Value>>,
}

/// A change of this node's presence members that the other nodes must hear of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MemberChange {
    /// A member's first connection on this node joined.
    Joined(ChannelName, Member),
    /// A member's last connection on this node left.
    Left(ChannelName, String),
}

impl State {
    /// Tells the other nodes of `change`.
    fn tell(&self, change: &MemberChange) {
        let Some(outbox) = &self.cluster else {
            return;
        };
        let envelope = match change.clone() {
            MemberChange::Joined(channel, member) => Envelope::Joined {
                node: outbox.node,
                channel,
                user_id: member.user_id,
                user_info: member.user_info,
            },
            MemberChange::Left(channel, user_id) => Envelope::Left {
                node: outbox.node,
                channel,
                user_id,
            },
        };
        outbox.queue_change(envelope);
    }

    /// Announces to this node's subscribers of `channel` whether `user` came or went,
    /// given whether it was present before a change.
    fn announce_change(&self, channel: &ChannelName, user: &str, was: bool) {
        let is = self.present(channel, user);
        if was && !is {
            let removed = Member {
                user_id: user.to_owned(),
                user_info: Value::Null,
            }
            .removed();
            self.announce(channel, "pusher_internal:member_removed", &removed);
        } else if !was && is {
            let info = self
                .all_members(channel)
                .remove(user)
                .unwrap_or(Value::Null);
            let added = Member {
                user_id: user.to_owned(),
                user_info: info,
            }
            .added();
            self.announce(channel, "pusher_internal:member_added", &added);
        }
    }

    /// The copy of `node`'s members, made if missing; it was heard from just now.
    fn remote_node(&mut self, node: u64) -> &mut RemoteNode {
        let remote = self.remote.entry(node).or_insert_with(|| RemoteNode {
            last_heard: Instant::now(),
            members: HashMap::new(),
        });
        remote.last_heard = Instant::now();
        remote
    }

    /// Whether `user` is a member of `channel` on any other node.
    fn elsewhere(&self, channel: &ChannelName, user: &str) -> bool {
        self.remote.values().any(|node| {
            node.members
                .get(channel)
                .is_some_and(|m| m.contains_key(user))
        })
    }

    /// Whether `user` is a member of `channel` anywhere.
    fn present(&self, channel: &ChannelName, user: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.members.contains_key(user))
            || self.elsewhere(channel, user)
    }

    /// Every member of `channel` on every node, each once.
    fn all_members(&self, channel: &ChannelName) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        for node in self.remote.values() {
            if let Some(members) = node.members.get(channel) {
                for (user, info) in members {
                    all.insert(user.clone(), info.clone());
                }
            }
        }
        if let Some(local) = self.channels.get(channel) {
            for (user, present) in local.members.iter() {
                all.insert(user.clone(), present.info.clone());
            }
        }
        all
    }

    /// Tells this node's subscribers of `channel` that `user` came or went.
    fn announce(&self, channel: &ChannelName, event: &str, data: &str) {
        if let Some(local) = self.channels.get(channel) {
            let frame: Frame = frame(event, Some(channel.as_str()), data).into();
            for subscriber in local.subscribers.values() {
                subscriber.link.deliver(&frame);
            }
        }
    }

    /// Replaces what `node` said of its members with `members`, announcing every member
    /// that appears or disappears on the whole.
    fn replace_remote(
        &mut self,
        node: u64,
        members: Option<HashMap<ChannelName, HashMap<String, Value>>>,
    ) {
        let old = self
            .remote
            .get(&node)
            .map(|n| n.members.clone())
            .unwrap_or_default();
        let mut touched: Vec<(ChannelName, String)> = Vec::new();
        for (channel, users) in old.iter().chain(members.iter().flatten()) {
            for user in users.keys() {
                touched.push((channel.clone(), user.clone()));
            }
        }
        touched.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        touched.dedup();
        let before: Vec<bool> = touched.iter().map(|(c, u)| self.present(c, u)).collect();
        match members {
            Some(members) => {
                let entry = self.remote.entry(node).or_insert_with(|| RemoteNode {
                    last_heard: Instant::now(),
                    members: HashMap::new(),
                });
                entry.last_heard = Instant::now();
                entry.members = members;
            }
            None => {
                self.remote.remove(&node);
            }
        }
        for ((channel, user), was) in touched.iter().zip(before) {
            self.announce_change(channel, user, was);
        }
    }
}

impl ChannelHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends this node's member changes to `outbox` from now on.
    pub(crate) fn set_cluster(&self, outbox: Outbox) {
        self.state().cluster = Some(outbox);
    }

    /// Queues every member of this node for the other nodes, in order with its
    /// changes (the state is locked meanwhile).
    pub(crate) fn queue_members(&self) {
        let state = self.state();
        let Some(outbox) = &state.cluster else {
            return;
        };
        let mut members = Vec::new();
        for (channel, local) in &state.channels {
            for (user_id, present) in local.members.iter() {
                members.push(Entry {
                    channel: channel.clone(),
                    user_id: user_id.clone(),
                    user_info: present.info.clone(),
                });
            }
        }
        outbox.queue_change(Envelope::Members {
            node: outbox.node,
            members,
        });
    }

    /// Whether `node` is one this node has heard from (and not taken for dead).
    pub(crate) fn knows(&self, node: u64) -> bool {
        self.state().remote.contains_key(&node)
    }

    /// A fresh connection number, the key of its subscriptions.
    pub(crate) fn connection_number(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes connection `id` to `channel`; for a presence channel, as `member`
    /// (at most `max_members` distinct members across the nodes). The
    /// `subscription_succeeded` data to answer with, and the change the other nodes
    /// must hear of; the other subscribers hear `member_added` when the member is new
    /// everywhere.
    pub(crate) fn join(
        &self,
        id: u64,
        link: &Arc<Link>,
        channel: &ChannelName,
        user: Option<String>,
        member: Option<Member>,
        max_members: usize,
    ) -> Result<(String, Option<MemberChange>), JoinRefusal> {
        let mut state = self.state();
        let mut change = None;
        if let Some(member) = &member {
            let known_here = state
                .channels
                .get(channel)
                .is_some_and(|c| c.members.contains_key(&member.user_id));
            let elsewhere = state.elsewhere(channel, &member.user_id);
            if !known_here && !elsewhere && state.all_members(channel).len() >= max_members {
                return Err(JoinRefusal::MembersFull(max_members));
            }
            if !known_here && !elsewhere {
                state.announce(channel, "pusher_internal:member_added", &member.added());
            }
            let local = state.channels.entry(channel.clone()).or_default();
            match local.members.get_mut(&member.user_id) {
                Some(present) => present.connections += 1,
                None => {
                    local.members.insert(
                        member.user_id.clone(),
                        Present {
                            connections: 1,
                            info: member.user_info.clone(),
                        },
                    );
                    change = Some(MemberChange::Joined(channel.clone(), member.clone()));
                }
            }
        }
        let local = state.channels.entry(channel.clone()).or_default();
        let replaced = local.subscribers.insert(
            id,
            Subscriber {
                link: Arc::clone(link),
                user: member.map(|m| m.user_id).or(user),
            },
        );
        debug_assert!(replaced.is_none(), "a connection joins a channel once");
        let data = match channel.kind() {
            ChannelKind::Presence => {
                let members: Vec<Member> = state
                    .all_members(channel)
                    .into_iter()
                    .map(|(user_id, user_info)| Member { user_id, user_info })
                    .collect();
                presence_succeeded(&members)
            }
            _ => "{}".to_owned(),
        };
        if let Some(change) = &change {
            state.tell(change);
        }
        Ok((data, change))
    }

    /// Unsubscribes connection `id` from `channel`; the change the other nodes must
    /// hear of. The other subscribers hear `member_removed` when it was a presence
    /// member's last connection anywhere.
    pub(crate) fn leave(&self, id: u64, channel: &ChannelName) -> Option<MemberChange> {
        let mut state = self.state();
        let local = state.channels.get_mut(channel)?;
        let subscriber = local.subscribers.remove(&id)?;
        let mut change = None;
        if channel.kind() == ChannelKind::Presence
            && let Some(user_id) = subscriber.user
            && let Some(present) = local.members.get_mut(&user_id)
        {
            present.connections -= 1;
            if present.connections == 0 {
                local.members.remove(&user_id);
                if !state.elsewhere(channel, &user_id) {
                    let removed = Member {
                        user_id: user_id.clone(),
                        user_info: Value::Null,
                    }
                    .removed();
                    state.announce(channel, "pusher_internal:member_removed", &removed);
                }
                change = Some(MemberChange::Left(channel.clone(), user_id));
            }
        }
        if state
            .channels
            .get(channel)
            .is_some_and(|c| c.subscribers.is_empty())
        {
            state.channels.remove(channel);
        }
        if let Some(change) = &change {
            state.tell(change);
        }
        change
    }

    /// Connection `id`'s subscription to `channel`, if it has one.
    pub(crate) fn subscription(&self, id: u64, channel: &ChannelName) -> Option<Subscription> {
        self.state()
            .channels
            .get(channel)?
            .subscribers
            .get(&id)
            .map(|s| Subscription {
                user: s.user.clone(),
            })
    }

    /// Another node's member joined `channel`.
    pub(crate) fn remote_joined(&self, node: u64, channel: ChannelName, member: Member) {
        let mut state = self.state();
        let was = state.present(&channel, &member.user_id);
        let user = member.user_id.clone();
        state
            .remote_node(node)
            .members
            .entry(channel.clone())
            .or_default()
            .insert(member.user_id, member.user_info);
        state.announce_change(&channel, &user, was);
    }

    /// Another node's member left `channel`.
    pub(crate) fn remote_left(&self, node: u64, channel: &ChannelName, user: &str) {
        let mut state = self.state();
        let was = state.present(channel, user);
        let remote = state.remote_node(node);
        if let Some(users) = remote.members.get_mut(channel) {
            users.remove(user);
            if users.is_empty() {
                remote.members.remove(channel);
            }
        }
        state.announce_change(channel, user, was);
    }

    /// Everything another node has: its members, replacing what it said before.
    pub(crate) fn remote_members(&self, node: u64, members: Vec<(ChannelName, Member)>) {
        let mut by_channel: HashMap<ChannelName, HashMap<String, Value>> = HashMap::new();
        for (channel, member) in members {
            by_channel
                .entry(channel)
                .or_default()
                .insert(member.user_id, member.user_info);
        }
        self.state().replace_remote(node, Some(by_channel));
    }

    /// Another node is alive.
    pub(crate) fn remote_alive(&self, node: u64) {
        self.state().remote_node(node);
    }

    /// Forgets the nodes not heard from for `silence`, and their members.
    pub(crate) fn expire_remote(&self, silence: std::time::Duration) {
        let mut state = self.state();
        let silent: Vec<u64> = state
            .remote
            .iter()
            .filter(|(_, node)| node.last_heard.elapsed() >= silence)
            .map(|(id, _)| *id)
            .collect();
        for node in silent {
            tracing::warn!(
                node,
                "a Pusher node went silent; its presence members are removed"
            );
            state.replace_remote(node, None);
        }
    }

    /// Writes `frame` to every subscriber of `channel` but `except` (a connection that
    /// should not hear its own event). How many connections it was queued for.
    pub(crate) fn publish_to(
        &self,
        channel: &ChannelName,
        frame: &Frame,
        except: ExceptSocket<'_>,
    ) -> usize {
        let state = self.state();
        let Some(state) = state.channels.get(channel) else {
            return 0;
        };
        let mut reached = 0;
        for subscriber in state.subscribers.values() {
            let excluded = match except {
                ExceptSocket::None => false,
                ExceptSocket::Socket(except) => subscriber.link.socket_id == *except,
            };
            if !excluded {
                subscriber.link.deliver(frame);
                reached += 1;
            }
        }
        reached
    }

    /// Writes `event` with `data` (forwarded verbatim as the frame's string) on
    /// `channel` to every subscriber on this node but the connection `except` names.
    #[cfg(test)]
    pub(crate) fn publish(
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

    /// The channels whose names start with `prefix` that have a subscriber on this
    /// node or a presence member on any, with their occupancy.
    pub fn occupied(&self, prefix: &str) -> Vec<(ChannelName, ChannelInfo)> {
        let state = self.state();
        let mut names: Vec<&ChannelName> = state.channels.keys().collect();
        for node in state.remote.values() {
            names.extend(node.members.keys());
        }
        names.retain(|name| name.as_str().starts_with(prefix));
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        names
            .into_iter()
            .map(|name| (name.clone(), info(&state, name)))
            .collect()
    }

    /// The occupancy of `channel`: this node's subscriptions, and presence members on
    /// every node.
    pub fn info(&self, channel: &ChannelName) -> ChannelInfo {
        info(&self.state(), channel)
    }

    /// The ids of a presence channel's members on every node, sorted.
    pub fn members(&self, channel: &ChannelName) -> Vec<String> {
        self.state().all_members(channel).into_keys().collect()
    }

    /// Closes every connection subscribed as `user` (a presence member, or the owner
    /// of `private-chat.{user}`) with `code`. How many connections were asked to close.
    pub fn terminate(&self, user: &str, code: u16) -> usize {
        let mut links: Vec<Arc<Link>> = Vec::new();
        for local in self.state().channels.values() {
            for subscriber in local.subscribers.values() {
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
    /// Not the connection with this socket id (the HTTP API's `socket_id`).
    Socket(&'a SocketId),
}

fn info(state: &State, channel: &ChannelName) -> ChannelInfo {
    ChannelInfo {
        subscription_count: state
            .channels
            .get(channel)
            .map_or(0, |c| c.subscribers.len()),
        user_count: state.all_members(channel).len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelName {
        name.parse().unwrap()
    }

    fn connect(hub: &ChannelHub, socket: &str) -> (u64, Arc<Link>, Inbox) {
        let (link, inbox) = Link::new(socket.parse().unwrap(), 4);
        (hub.connection_number(), link, inbox)
    }

    fn member(id: &str) -> Option<Member> {
        Some(Member {
            user_id: id.to_owned(),
            user_info: serde_json::json!({ "id": id }),
        })
    }

    fn events(inbox: &mut Inbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(frame) = inbox.try_recv() {
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
        let presence: Value = serde_json::from_str(&joined.0).unwrap();
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
    fn members_of_other_nodes_count_once_and_leave_with_their_node() {
        let hub = ChannelHub::new();
        let room = channel("presence-room");
        let (a, link_a, mut inbox_a) = connect(&hub, "1.1");
        hub.join(a, &link_a, &room, None, member("a"), 10).unwrap();
        // Another node's member joins: news here.
        hub.remote_joined(7, room.clone(), member("b").unwrap());
        assert_eq!(
            events(&mut inbox_a),
            [r#"pusher_internal:member_added {"user_id":"b","user_info":{"id":"b"}}"#]
        );
        // The same user on a third node is not news, nor is a local member there.
        hub.remote_joined(8, room.clone(), member("b").unwrap());
        hub.remote_joined(8, room.clone(), member("a").unwrap());
        assert!(events(&mut inbox_a).is_empty());
        let (c, link_c, _ic) = connect(&hub, "3.1");
        let (joined, change) = hub.join(c, &link_c, &room, None, member("c"), 10).unwrap();
        let presence: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(
            presence["presence"]["ids"],
            serde_json::json!(["a", "b", "c"])
        );
        assert_eq!(
            change,
            Some(MemberChange::Joined(room.clone(), member("c").unwrap()))
        );
        events(&mut inbox_a);
        // b leaves one node but is still on the other.
        hub.remote_left(7, &room, "b");
        assert!(events(&mut inbox_a).is_empty());
        assert_eq!(
            hub.info(&room),
            ChannelInfo {
                subscription_count: 2,
                user_count: 3
            }
        );
        // The other node goes silent: b is gone everywhere, a is still here.
        hub.expire_remote(std::time::Duration::ZERO);
        assert_eq!(
            events(&mut inbox_a),
            [r#"pusher_internal:member_removed {"user_id":"b"}"#]
        );
        assert_eq!(hub.members(&room), ["a", "c"]);
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
