//! One Pusher connection: the client's frames, its channels, the chat's events on its
//! `private-chat.{user}` channel, heartbeats and limits.
//!
//! Written over any [`WsSocket`], so the protocol can be driven without a network.

use std::time::Duration;

use chat_core::{
    Admission, ChatService, Feed, FeedEntry, FeedStart, FeedUpdate, Message, MessageId,
    MessageStatus, UserId,
};
use chat_transport_ws::{Closing, HeldSeat, InboundLimit, Registration, WsSocket, close};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::time::{Instant, MissedTickBehavior};
use tungstenite::Message as WsMessage;

use crate::cluster::Envelope;
use crate::endpoint::PusherEndpoint;
use crate::hub::{Frame, Inbox, JoinRefusal, Link};
use crate::protocol::{self, ClientFrame, code};
use crate::signature::channel_auth_is_valid;
use crate::{ChannelKind, ChannelName, ChatChannel, ChatEvent, Member, SocketId, message_frame};

/// The chat's events for the user whose `private-chat.{user}` channel the connection
/// joined.
struct ChatFeed {
    feed: Feed,
    channel: ChannelName,
    /// Messages written to the user that the store could not be told of yet.
    unmarked: Vec<MessageId>,
    _registration: Registration,
    _seat: Option<HeldSeat>,
}

struct Connection {
    endpoint: PusherEndpoint,
    id: u64,
    link: std::sync::Arc<Link>,
    inbox: Inbox,
    joined: Vec<ChannelName>,
    chat: Option<Box<ChatFeed>>,
    inbound: InboundLimit,
    client_events: InboundLimit,
}

enum Step {
    Inbound(Option<Result<WsMessage, tungstenite::Error>>),
    Update(FeedUpdate),
    Outbox(Frame),
    Kicked(u16),
    Tick,
    Shutdown,
}

/// Speaks protocol 7 over `socket` until the connection ends.
pub(crate) async fn run<S: WsSocket>(endpoint: PusherEndpoint, mut socket: S) {
    let write_timeout = endpoint.config().websocket.write_timeout;
    let Ok(socket_id) = SocketId::generate() else {
        tracing::error!("no random source for a socket id");
        close(
            &mut socket,
            Closing::with(code::OVER_CAPACITY, "try again"),
            write_timeout,
        )
        .await;
        return;
    };
    let (link, inbox) = Link::new(socket_id, endpoint.config().outbox_frames);
    let config = endpoint.config();
    let mut connection = Connection {
        id: endpoint.channels().connection_number(),
        link,
        inbox,
        joined: Vec::new(),
        chat: None,
        inbound: InboundLimit::new(&config.websocket),
        client_events: InboundLimit::with_rate(
            config.client_events_per_second,
            config.client_events_per_second,
        ),
        endpoint,
    };
    let _open = connection.endpoint.count_connection();
    // Joined before the first subscription, so member changes reach the other nodes.
    connection.endpoint.cluster().await;
    let closing = Box::pin(connection.drive(&mut socket)).await;
    connection.leave_all();
    drop(connection);
    close(&mut socket, closing, write_timeout).await;
}

/// Refuses a connection: the `pusher:error` first, then the close with the same code,
/// so pusher-js knows not to retry.
pub(crate) async fn refuse<S: WsSocket>(
    mut socket: S,
    error: u16,
    message: &'static str,
    write_timeout: Duration,
) {
    let frame = protocol::error(error, message);
    let _ = tokio::time::timeout(write_timeout, socket.send(WsMessage::Text(frame.into()))).await;
    close(&mut socket, Closing::with(error, message), write_timeout).await;
}

async fn next_update(chat: &mut Option<Box<ChatFeed>>) -> FeedUpdate {
    match chat {
        Some(chat) => chat.feed.next_update().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    async fn drive<S: WsSocket>(&mut self, socket: &mut S) -> Closing {
        let config = self.endpoint.config();
        // Only what the loop needs is kept in the connection's future.
        let (activity_timeout, pong_timeout) = (config.activity_timeout, config.pong_timeout);
        let established = protocol::connection_established(
            self.link.socket_id.as_str(),
            config.activity_timeout_secs(),
        );
        if let Err(closing) = self.write(socket, established).await {
            return closing;
        }
        let period = activity_timeout
            .min(pong_timeout)
            .max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut shutdown = self.endpoint.connections().shutdown_signal();
        let link = std::sync::Arc::clone(&self.link);
        loop {
            let step = tokio::select! {
                biased;
                _ = shutdown.changed() => Step::Shutdown,
                code = link.closed() => Step::Kicked(code),
                update = next_update(&mut self.chat) => Step::Update(update),
                // Before the outbox: a busy channel must not keep the client's own
                // frames (pongs, unsubscribes) unread, and those are rate limited.
                frame = socket.next() => Step::Inbound(frame),
                frame = self.inbox.recv() => Step::Outbox(frame),
                _ = tick.tick() => Step::Tick,
            };
            let written = match step {
                Step::Inbound(None) => return Closing::ByPeer,
                Step::Inbound(Some(Err(error))) => return Closing::after_read_error(&error),
                Step::Inbound(Some(Ok(frame))) => {
                    last_heard = Instant::now();
                    match frame {
                        WsMessage::Text(text) => {
                            if !self.inbound.allow() {
                                return Closing::with(code::OVER_LIMIT, "too many messages");
                            }
                            Box::pin(self.handle_text(socket, text.as_str())).await
                        }
                        WsMessage::Binary(_) => {
                            self.write(
                                socket,
                                protocol::error(code::RECONNECT, "binary frames are not supported"),
                            )
                            .await
                        }
                        WsMessage::Close(_) => return Closing::ByPeer,
                        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(()),
                    }
                }
                Step::Outbox(frame) => self.write(socket, String::from(&*frame)).await,
                Step::Update(update) => Box::pin(self.chat_update(socket, update)).await,
                Step::Kicked(code) => return Closing::with(code, kicked_reason(code)),
                Step::Tick => {
                    if let Some(chat) = self.chat.as_deref_mut() {
                        mark_delivered(chat).await;
                    }
                    let silence = last_heard.elapsed();
                    if silence >= activity_timeout + pong_timeout {
                        return Closing::with(code::PONG_NOT_RECEIVED, "pong not received");
                    }
                    if silence >= activity_timeout {
                        self.write(socket, protocol::frame("pusher:ping", None, "{}"))
                            .await
                    } else {
                        Ok(())
                    }
                }
                Step::Shutdown => return Closing::with(code::RECONNECT, "server shutting down"),
            };
            if let Err(closing) = written {
                return closing;
            }
        }
    }

    async fn write<S: WsSocket>(&mut self, socket: &mut S, text: String) -> Result<(), Closing> {
        within(
            self.endpoint.config().websocket.write_timeout,
            socket.send(WsMessage::Text(text.into())),
        )
        .await
    }

    async fn handle_text<S: WsSocket>(
        &mut self,
        socket: &mut S,
        text: &str,
    ) -> Result<(), Closing> {
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                return self
                    .write(socket, protocol::error(code::RECONNECT, &error.to_string()))
                    .await;
            }
        };
        match frame {
            ClientFrame::Ping => {
                self.write(socket, protocol::frame("pusher:pong", None, "{}"))
                    .await
            }
            ClientFrame::Pong => Ok(()),
            ClientFrame::Subscribe {
                channel,
                auth,
                channel_data,
            } => self.subscribe(socket, channel, auth, channel_data).await,
            ClientFrame::Unsubscribe { channel } => {
                self.leave(&channel);
                Ok(())
            }
            ClientFrame::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(socket, &event, &channel, data).await,
        }
    }

    async fn subscribe<S: WsSocket>(
        &mut self,
        socket: &mut S,
        channel: ChannelName,
        auth: Option<String>,
        channel_data: Option<String>,
    ) -> Result<(), Closing> {
        if self.joined.contains(&channel) {
            // Already subscribed: pusher-js never asks twice, and joining again would
            // announce the member again.
            return Ok(());
        }
        let most = self.endpoint.config().max_channels_per_connection;
        if self.joined.len() >= most {
            let message = format!("at most {most} channels per connection");
            let frame = protocol::subscription_error(channel.as_str(), 403, &message);
            return self.write(socket, frame).await;
        }
        let refused = |status: u16, message: &str| {
            protocol::subscription_error(channel.as_str(), status, message)
        };
        let kind = channel.kind();
        let member = if kind == ChannelKind::Public {
            None
        } else {
            let data = if kind == ChannelKind::Presence {
                match channel_data.as_deref() {
                    Some(data) => Some(data),
                    None => {
                        return self
                            .write(
                                socket,
                                refused(400, "a presence channel needs channel_data"),
                            )
                            .await;
                    }
                }
            } else {
                None
            };
            let app = self.endpoint.app();
            let signed = auth.as_deref().is_some_and(|auth| {
                channel_auth_is_valid(app, &self.link.socket_id, &channel, data, auth)
            });
            if !signed {
                return self
                    .write(socket, refused(401, "invalid or missing auth signature"))
                    .await;
            }
            match data.map(Member::from_channel_data) {
                None => None,
                Some(Ok(member)) => Some(member),
                Some(Err(error)) => {
                    return self.write(socket, refused(400, &error.to_string())).await;
                }
            }
        };
        let mut owner = None;
        if let Some(ChatChannel::User(user)) = ChatChannel::of(&channel) {
            if self.chat.is_some() {
                return self
                    .write(
                        socket,
                        refused(403, "a connection follows one user's chat channel"),
                    )
                    .await;
            }
            match open_chat(&self.endpoint, user, &channel).await {
                Ok(chat) => {
                    owner = Some(user.get().to_string());
                    self.chat = Some(chat);
                }
                Err((status, message)) => {
                    return self.write(socket, refused(status, message)).await;
                }
            }
        }
        let config = self.endpoint.config();
        let joined = self.endpoint.channels().join(
            self.id,
            &self.link,
            &channel,
            owner,
            member,
            config.max_presence_members,
        );
        match joined {
            Ok((data, _)) => {
                self.joined.push(channel.clone());
                let frame = protocol::frame(
                    "pusher_internal:subscription_succeeded",
                    Some(channel.as_str()),
                    &data,
                );
                self.write(socket, frame).await
            }
            Err(JoinRefusal::MembersFull(limit)) => {
                let message = format!("the presence channel already has {limit} members");
                self.write(socket, refused(403, &message)).await
            }
        }
    }

    fn leave(&mut self, channel: &ChannelName) {
        let Some(at) = self.joined.iter().position(|c| c == channel) else {
            return;
        };
        self.joined.swap_remove(at);
        self.endpoint.channels().leave(self.id, channel);
        if self
            .chat
            .as_ref()
            .is_some_and(|chat| chat.channel == *channel)
        {
            self.chat = None;
        }
    }

    fn leave_all(&mut self) {
        for channel in std::mem::take(&mut self.joined) {
            self.endpoint.channels().leave(self.id, &channel);
        }
        self.chat = None;
    }
}

impl Drop for Connection {
    /// However the session ends (a panic, an aborted task), its subscriptions and
    /// presence memberships go with it.
    fn drop(&mut self) {
        self.leave_all();
    }
}

impl Connection {
    async fn client_event<S: WsSocket>(
        &mut self,
        socket: &mut S,
        event: &str,
        channel: &ChannelName,
        data: String,
    ) -> Result<(), Closing> {
        let member = match self.endpoint.channels().subscription(self.id, channel) {
            Some(subscription) if channel.kind() != ChannelKind::Public => subscription.user,
            _ => {
                let message = "client events are only for private and presence channels you joined";
                return self
                    .write(socket, protocol::error(code::OVER_LIMIT, message))
                    .await;
            }
        };
        if !self.client_events.allow() {
            let message = "client event rejected: over the rate limit";
            return self
                .write(
                    socket,
                    protocol::error(code::CLIENT_EVENT_RATE_LIMIT, message),
                )
                .await;
        }
        let user_id = if channel.kind() == ChannelKind::Presence {
            member
        } else {
            None
        };
        let frame = client_event_frame(event, channel, data, user_id);
        let cluster = self.endpoint.cluster().await;
        cluster.publish(Envelope::Event {
            node: cluster.node(),
            channel: channel.clone(),
            frame,
            except: Some(self.link.socket_id.clone()),
        });
        Ok(())
    }

    /// Writes what the chat's feed has: new messages as `MessageSent` (counted as
    /// delivered once written to a receiver: Pusher has no acknowledgement), edits and
    /// deletions as `MessageUpdated` and `MessageDeleted`, status changes as
    /// `MessageDelivered` and `MessageRead`.
    async fn chat_update<S: WsSocket>(
        &mut self,
        socket: &mut S,
        update: FeedUpdate,
    ) -> Result<(), Closing> {
        let timeout = self.endpoint.config().websocket.write_timeout;
        let namespace = &self.endpoint.config().namespace;
        let Some(chat) = self.chat.as_deref_mut() else {
            return Ok(());
        };
        let user = chat.feed.user();
        match update {
            FeedUpdate::Messages => loop {
                let page = chat.feed.next_page().await.map_err(unavailable)?;
                if page.is_empty() {
                    return Ok(());
                }
                let mut delivered = Vec::new();
                for entry in &page {
                    let (event, message) = match entry {
                        FeedEntry::New(message) => (ChatEvent::MessageSent, message),
                        FeedEntry::Changed(change) if change.is_deletion() => {
                            (ChatEvent::MessageDeleted, &change.message)
                        }
                        FeedEntry::Changed(change) => (ChatEvent::MessageUpdated, &change.message),
                    };
                    let frame = message_frame(namespace, event, user, message);
                    within(timeout, socket.feed(WsMessage::Text(frame.into()))).await?;
                    if matches!(entry, FeedEntry::New(_))
                        && message.receiver_id == user
                        && message.status == MessageStatus::Sent
                    {
                        delivered.push(message.id);
                    }
                }
                within(timeout, socket.flush()).await?;
                chat.unmarked.extend(delivered);
                mark_delivered(chat).await;
            },
            FeedUpdate::Receipt(receipt) => {
                let event = match receipt.status {
                    MessageStatus::Read => ChatEvent::MessageRead,
                    _ => ChatEvent::MessageDelivered,
                };
                let message: Message = match chat.feed.chat().message(user, receipt.id).await {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read a message for its receipt");
                        return Ok(());
                    }
                };
                let frame = message_frame(namespace, event, user, &message);
                within(timeout, socket.send(WsMessage::Text(frame.into()))).await
            }
            // Echo has no typing event of the chat's; whispers carry typing instead.
            FeedUpdate::Typing(_) => Ok(()),
            // Too far behind: reconnecting sends what was not delivered.
            _ => Err(Closing::with(
                code::OVER_CAPACITY,
                "too far behind; reconnect",
            )),
        }
    }
}

/// Opens the chat's feed of `user`: the undelivered backlog first, then live events.
async fn open_chat(
    endpoint: &PusherEndpoint,
    user: UserId,
    channel: &ChannelName,
) -> Result<Box<ChatFeed>, (u16, &'static str)> {
    let limit = endpoint.config().websocket.max_connections_per_user;
    let registration = endpoint
        .connections()
        .register(user)
        .ok_or((429, "too many connections for this user"))?;
    let chat: &ChatService = endpoint.chat();
    let seat = match chat.admit(user, limit).await {
        Admission::Seated(seat) => Some(HeldSeat::new(chat.clone(), seat)),
        Admission::Full => return Err((429, "too many connections for this user")),
        _ => None,
    };
    let batch = endpoint.config().websocket.backlog_batch;
    let feed = chat
        .open_feed(user, FeedStart::Undelivered, batch)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot open a Pusher connection's feed");
            (503, "the chat is unavailable; try again")
        })?;
    Ok(Box::new(ChatFeed {
        feed,
        channel: channel.clone(),
        unmarked: Vec::new(),
        _registration: registration,
        _seat: seat,
    }))
}

/// Marks what was written to the user delivered; kept to try again at the next tick
/// or update while the store cannot be reached.
async fn mark_delivered(chat: &mut ChatFeed) {
    if chat.unmarked.is_empty() {
        return;
    }
    let user = chat.feed.user();
    match chat
        .feed
        .chat()
        .mark_messages_delivered(user, &chat.unmarked)
        .await
    {
        Ok(_) => chat.unmarked.clear(),
        Err(error) => {
            tracing::warn!(%error, "cannot mark messages written to a Pusher connection delivered yet");
        }
    }
}

/// A client event as relayed: its data as sent, with the sender's `user_id` on a
/// presence channel.
fn client_event_frame(
    event: &str,
    channel: &ChannelName,
    data: String,
    user_id: Option<String>,
) -> String {
    #[derive(serde::Serialize)]
    struct Relayed<'a> {
        event: &'a str,
        channel: &'a str,
        data: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    }
    // The data was parsed as JSON with the frame, so it is valid JSON.
    let data = RawValue::from_string(data).unwrap_or_else(|_| RawValue::NULL.to_owned());
    serde_json::to_string(&Relayed {
        event,
        channel: channel.as_str(),
        data: &data,
        user_id,
    })
    .unwrap_or_default()
}

fn kicked_reason(code: u16) -> &'static str {
    match code {
        code::OVER_CAPACITY => "too far behind; reconnect",
        code::OVER_LIMIT => "connection terminated",
        _ => "closed by the server",
    }
}

fn unavailable(error: chat_core::Error) -> Closing {
    tracing::warn!(%error, "cannot read a Pusher connection's messages");
    Closing::with(code::OVER_CAPACITY, "unavailable; reconnect")
}

async fn within(
    timeout: Duration,
    write: impl Future<Output = Result<(), tungstenite::Error>>,
) -> Result<(), Closing> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Closing::ByPeer),
        Err(_) => Err(Closing::with(
            code::OVER_CAPACITY,
            "too far behind; reconnect",
        )),
    }
}
