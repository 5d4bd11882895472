//! One WebSocket connection: its feed, the client's frames, heartbeat and limits.
//!
//! Written over any [`WsSocket`] (a `Sink + Stream` of WebSocket messages), so the
//! protocol can be driven without a network.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{ChatService, Feed, FeedUpdate, Identity, UserId};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::closing::{Closing, WsSocket, close};
use crate::config::{WsConfig, close_code};
use crate::delivery::{send_within, slow_consumer, write, write_messages, write_sent};
use crate::hub::Registration;
use crate::inbound_limit::InboundLimit;
use crate::protocol::{ErrorData, ServerFrame, TypingData, encode};
use crate::requests::{Reply, error_frame, handle_text};
use crate::seat::HeldSeat;
use crate::watch::{PresenceRelay, Watch};

/// Far enough to stand for "never" without overflowing `Instant`.
const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// One connection of a user: its feed, limits and place among the user's
/// connections. Made by [`WsEndpoint::session`](crate::WsEndpoint::session) (or
/// `accept`, which runs it on the upgraded socket).
#[derive(Debug)]
pub struct Session {
    pub(crate) identity: Identity,
    pub(crate) feed: Feed,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) relay: PresenceRelay,
    pub(crate) _registration: Registration,
    /// Its seat in presence, if presence could be reached.
    pub(crate) _seat: Option<HeldSeat>,
}

enum Step {
    Inbound(Option<Result<WsMessage, WsError>>),
    Update(FeedUpdate),
    Presence,
    Heartbeat,
    Expired,
    Shutdown,
}

impl Session {
    /// Speaks the protocol over `socket` until the connection closes: the feed's
    /// messages and events out, the client's frames in, heartbeats, limits, and the
    /// close frame that says why it ended.
    pub async fn run<S: WsSocket>(mut self, mut socket: S) {
        let write_timeout = self.config.write_timeout;
        let closing = drive(&mut socket, &mut self).await;
        // The user's place among its connections is free from here on, however long
        // the peer takes to close.
        drop(self);
        close(&mut socket, closing, write_timeout).await;
    }
}

async fn drive<S: WsSocket>(socket: &mut S, session: &mut Session) -> Closing {
    let Session {
        identity,
        feed,
        config,
        shutdown,
        relay,
        ..
    } = session;
    // Made on the first `watch` frame: most connections never watch anyone.
    let mut watching: Option<Watch> = None;
    let user = identity.user_id;
    let config = &**config;
    let mut limit = InboundLimit::new(config);
    let mut heartbeat = tokio::time::interval_at(
        Instant::now() + config.heartbeat_interval,
        config.heartbeat_interval,
    );
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let expiry = tokio::time::sleep_until(expiry_instant(identity));
    tokio::pin!(expiry);

    loop {
        // Biased: what the feed has (the backlog first) is written before the next
        // inbound frame is read, so a client pipelining requests cannot make its own
        // events fall behind.
        let step = tokio::select! {
            biased;
            _ = shutdown.changed() => Step::Shutdown,
            () = &mut expiry => Step::Expired,
            update = feed.next_update() => Step::Update(update),
            () = news(watching.as_ref()) => Step::Presence,
            frame = socket.next() => Step::Inbound(frame),
            _ = heartbeat.tick() => Step::Heartbeat,
        };
        let written = match step {
            Step::Inbound(None) => return Closing::ByPeer,
            Step::Inbound(Some(Err(error))) => return Closing::after_read_error(&error),
            Step::Inbound(Some(Ok(frame))) => {
                last_heard = Instant::now();
                match frame {
                    WsMessage::Text(text) => {
                        if !limit.allow() {
                            return too_many_messages();
                        }
                        // Boxed: the handler's state is large and would otherwise sit in
                        // every idle connection's future.
                        let reply = Box::pin(handle_text(feed.chat(), user, text.as_str())).await;
                        match reply {
                            Some(Reply::Frame(reply)) => write(socket, config, &reply).await,
                            Some(Reply::Sent(message, replay)) => {
                                Box::pin(write_sent(socket, feed, config, &message, replay)).await
                            }
                            Some(Reply::Watch(users)) => {
                                let watch = watching.get_or_insert_with(|| relay.watch());
                                let reply =
                                    Box::pin(watch_users(feed.chat(), user, watch, &users)).await;
                                write(socket, config, &reply).await
                            }
                            None => Ok(()),
                        }
                    }
                    WsMessage::Binary(_) => {
                        if !limit.allow() {
                            return too_many_messages();
                        }
                        let reply = encode(&ServerFrame::Error {
                            data: ErrorData::new(
                                "unsupported_frame",
                                "binary frames are not supported; send JSON text",
                            ),
                        });
                        write(socket, config, &reply).await
                    }
                    WsMessage::Close(_) => return Closing::ByPeer,
                    // Pings are answered by the WebSocket layer; pongs only prove life;
                    // raw frames are never read.
                    WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(()),
                }
            }
            Step::Update(FeedUpdate::Messages) => {
                Box::pin(write_messages(socket, feed, config, None))
                    .await
                    .map(drop)
            }
            Step::Presence => match watching.as_mut() {
                Some(watch) => match Box::pin(watched_news(feed.chat(), user, watch)).await {
                    Some(frame) => write(socket, config, &frame).await,
                    None => Ok(()),
                },
                None => Ok(()),
            },
            Step::Update(FeedUpdate::Receipt(receipt)) => {
                let frame = ServerFrame::Receipt {
                    data: (&receipt).into(),
                };
                write(socket, config, &encode(&frame)).await
            }
            Step::Update(FeedUpdate::Typing(typing)) => {
                let frame = ServerFrame::Typing {
                    data: TypingData {
                        user_id: typing.user_id.get(),
                    },
                };
                write(socket, config, &encode(&frame)).await
            }
            // The events fell too far behind: the client resumes from the store.
            Step::Update(_) => return slow_consumer(),
            Step::Heartbeat => {
                if last_heard.elapsed() >= config.idle_timeout {
                    return Closing::with(close_code::IDLE_TIMEOUT, "idle timeout");
                }
                send_within(socket, config, WsMessage::Ping(Default::default())).await
            }
            Step::Expired => return Closing::with(close_code::TOKEN_EXPIRED, "token expired"),
            Step::Shutdown => {
                return Closing::with(close_code::GOING_AWAY, "server shutting down");
            }
        };
        if let Err(closing) = written {
            return closing;
        }
    }
}

/// Waits for presence news of a watched user; never without a watch.
async fn news(watching: Option<&Watch>) {
    match watching {
        Some(watch) => watch.news().await,
        None => std::future::pending().await,
    }
}

/// Replaces the watch list with `users` and answers with each one's presence, or
/// with an error frame (the list then stays as it was).
async fn watch_users(
    chat: &ChatService,
    user: UserId,
    watch: &mut Watch,
    users: &[UserId],
) -> String {
    if users.is_empty() {
        watch.replace(users);
        return encode(&ServerFrame::Presence { data: &[] });
    }
    match chat.presence_of(user, users).await {
        Ok(looked) => {
            watch.replace(users);
            let shown = watch.changes(looked);
            encode(&ServerFrame::Presence { data: &shown })
        }
        Err(error) => error_frame((&error).into()),
    }
}

/// The `presence` frame of watched users whose presence changed, if any did.
async fn watched_news(chat: &ChatService, user: UserId, watch: &mut Watch) -> Option<String> {
    let users = watch.take();
    if users.is_empty() {
        return None;
    }
    match chat.presence_of(user, &users).await {
        Ok(looked) => {
            let changed = watch.changes(looked);
            (!changed.is_empty()).then(|| encode(&ServerFrame::Presence { data: &changed }))
        }
        Err(error) => {
            tracing::debug!(%error, "cannot look up watched presence");
            None
        }
    }
}

fn too_many_messages() -> Closing {
    Closing::with(close_code::POLICY_VIOLATION, "too many messages")
}

fn expiry_instant(identity: &Identity) -> Instant {
    let Some(expires_at) = identity.expires_at else {
        return Instant::now() + NEVER;
    };
    let left = expires_at - time::OffsetDateTime::now_utc();
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Instant::now() + left.min(NEVER)
}
