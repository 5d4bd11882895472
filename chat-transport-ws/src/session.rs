//! One WebSocket connection: backlog, then live events and client frames.
//!
//! Written over any [`WsSocket`] (a `Sink + Stream` of WebSocket messages), so the
//! protocol can be driven without a network.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{ChatService, Event, Identity, Message, MessageId, SendMessage, UserId};
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::closing::{Closing, WsSocket, close};
use crate::config::{WsConfig, close_code};
use crate::hub::Registration;
use crate::own_sends::OwnSends;
use crate::protocol::{ClientFrame, ErrorData, ServerFrame, TypingData, encode};

/// Far enough to stand for "never" without overflowing `Instant`.
const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Everything a connection needs besides its socket.
#[derive(Debug)]
pub struct Session {
    pub(crate) chat: ChatService,
    pub(crate) identity: Identity,
    pub(crate) resume_after: Option<MessageId>,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) _registration: Registration,
}

enum Step {
    Inbound(Option<Result<WsMessage, WsError>>),
    Event(Option<Event>),
    Heartbeat,
    Expired,
    Shutdown,
}

/// Inbound rate: a token bucket refilled continuously.
struct InboundLimit {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl InboundLimit {
    fn new(config: &WsConfig) -> Self {
        Self {
            tokens: f64::from(config.message_burst),
            burst: f64::from(config.message_burst),
            per_second: f64::from(config.messages_per_second),
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs a connection until it closes.
pub async fn run<S: WsSocket>(mut socket: S, mut session: Session) {
    let write_timeout = session.config.write_timeout;
    let closing = drive(&mut socket, &mut session).await;
    // The user's place among its connections is free from here on, however long the
    // peer takes to close.
    drop(session);
    close(&mut socket, closing, write_timeout).await;
}

async fn drive<S: WsSocket>(socket: &mut S, session: &mut Session) -> Closing {
    let user = session.identity.user_id;
    let chat = session.chat.clone();
    // Subscribe before loading the backlog: whatever commits in between arrives on
    // the stream and is dropped below if the backlog had it already.
    let mut events = match Box::pin(chat.subscribe(user)).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "cannot subscribe a WebSocket");
            return Closing::with(close_code::INTERNAL_ERROR, "unavailable");
        }
    };
    let mut backlog_ids = match Box::pin(send_backlog(socket, session)).await {
        Ok(ids) => ids,
        Err(closing) => return closing,
    };
    let backlog_high = backlog_ids.iter().max().copied();

    let config = Arc::clone(&session.config);
    let mut limit = InboundLimit::new(&config);
    let mut own_sends = OwnSends::new(config.outbound_queue);
    let mut heartbeat = tokio::time::interval_at(
        Instant::now() + config.heartbeat_interval,
        config.heartbeat_interval,
    );
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let expiry = tokio::time::sleep_until(expiry_instant(&session.identity));
    tokio::pin!(expiry);

    loop {
        // Biased: queued events are written before the next inbound frame is read, so
        // a client pipelining requests cannot make its own queue overflow.
        let step = tokio::select! {
            biased;
            _ = session.shutdown.changed() => Step::Shutdown,
            () = &mut expiry => Step::Expired,
            event = events.next() => Step::Event(event),
            frame = socket.next() => Step::Inbound(frame),
            _ = heartbeat.tick() => Step::Heartbeat,
        };
        match step {
            Step::Inbound(None) => return Closing::ByPeer,
            Step::Inbound(Some(Err(error))) => return inbound_error(&error),
            Step::Inbound(Some(Ok(frame))) => {
                last_heard = Instant::now();
                match frame {
                    WsMessage::Text(text) => {
                        if !limit.allow() {
                            return Closing::with(
                                close_code::POLICY_VIOLATION,
                                "too many messages",
                            );
                        }
                        // Boxed: the handler's state is large and would otherwise sit in
                        // every idle connection's future.
                        let reply =
                            Box::pin(handle_text(&chat, user, text.as_str(), &mut own_sends)).await;
                        if let Some(reply) = reply
                            && let Err(closing) = write(socket, &config, &reply).await
                        {
                            return closing;
                        }
                    }
                    WsMessage::Binary(_) => {
                        if !limit.allow() {
                            return Closing::with(
                                close_code::POLICY_VIOLATION,
                                "too many messages",
                            );
                        }
                        let reply = encode(&ServerFrame::Error {
                            data: ErrorData::new(
                                "unsupported_frame",
                                "binary frames are not supported; send JSON text",
                            ),
                        });
                        if let Err(closing) = write(socket, &config, &reply).await {
                            return closing;
                        }
                    }
                    WsMessage::Close(_) => return Closing::ByPeer,
                    // Pings are answered by the WebSocket layer; pongs only prove life;
                    // raw frames are never read.
                    WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
                }
            }
            Step::Event(None) => {
                return Closing::with(
                    close_code::SLOW_CONSUMER,
                    "too far behind; reconnect with after_id",
                );
            }
            Step::Event(Some(event)) => {
                if let Event::Message(message) = &event {
                    // Already in the backlog, or the echo of this connection's own send.
                    if !backlog_ids.is_empty() {
                        if backlog_ids.remove(&message.id) {
                            continue;
                        }
                        if backlog_high.is_some_and(|high| message.id > high) {
                            backlog_ids = HashSet::new();
                        }
                    }
                    if message.sender_id == user && own_sends.take_echo(message.id) {
                        continue;
                    }
                }
                if let Some(frame) = event_frame(&event)
                    && let Err(closing) = write(socket, &config, &frame).await
                {
                    return closing;
                }
            }
            Step::Heartbeat => {
                if last_heard.elapsed() >= config.idle_timeout {
                    return Closing::with(close_code::IDLE_TIMEOUT, "idle timeout");
                }
                if let Err(closing) =
                    send_within(socket, &config, WsMessage::Ping(Default::default())).await
                {
                    return closing;
                }
            }
            Step::Expired => {
                return Closing::with(close_code::TOKEN_EXPIRED, "token expired");
            }
            Step::Shutdown => {
                return Closing::with(close_code::GOING_AWAY, "server shutting down");
            }
        }
    }
}

/// Sends the backlog: undelivered messages, or everything after the resume cursor.
/// Returns the ids sent, to drop their duplicates from the live stream.
async fn send_backlog<S>(socket: &mut S, session: &Session) -> Result<HashSet<MessageId>, Closing>
where
    S: Sink<WsMessage, Error = WsError> + Unpin + Send,
{
    let user = session.identity.user_id;
    let batch = session.config.backlog_batch;
    let mut after = session.resume_after.unwrap_or(MessageId::new(0));
    let mut sent = HashSet::new();
    loop {
        let page = match session.resume_after {
            Some(_) => session.chat.messages_after(user, after, batch).await,
            None => session.chat.undelivered(user, after, batch).await,
        };
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "cannot load a WebSocket backlog");
                return Err(Closing::with(close_code::INTERNAL_ERROR, "unavailable"));
            }
        };
        for message in &page {
            let frame = encode(&ServerFrame::Message { data: message });
            if socket.feed(WsMessage::Text(frame.into())).await.is_err() {
                return Err(Closing::ByPeer);
            }
            sent.insert(message.id);
        }
        match tokio::time::timeout(session.config.write_timeout, socket.flush()).await {
            Ok(Ok(())) => {}
            _ => return Err(Closing::ByPeer),
        }
        match page.last() {
            Some(last) if page.len() == batch as usize => after = last.id,
            _ => return Ok(sent),
        }
    }
}

fn expiry_instant(identity: &Identity) -> Instant {
    let Some(expires_at) = identity.expires_at else {
        return Instant::now() + NEVER;
    };
    let left = expires_at - time::OffsetDateTime::now_utc();
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Instant::now() + left.min(NEVER)
}

/// The close frame for a failed read, by the WebSocket layer's error type.
fn inbound_error(error: &WsError) -> Closing {
    match error {
        WsError::Capacity(_) => {
            Closing::after_bad_input(close_code::MESSAGE_TOO_BIG, "message too big")
        }
        WsError::Utf8(_) => {
            Closing::after_bad_input(close_code::INVALID_PAYLOAD, "text frames must be UTF-8")
        }
        WsError::Protocol(_) => {
            Closing::after_bad_input(close_code::PROTOCOL_ERROR, "protocol error")
        }
        _ => {
            tracing::debug!(%error, "WebSocket read failed");
            Closing::ByPeer
        }
    }
}

fn event_frame(event: &Event) -> Option<String> {
    Some(encode(&match event {
        Event::Message(message) => ServerFrame::Message { data: message },
        Event::Receipt(receipt) => ServerFrame::Receipt {
            data: receipt.into(),
        },
        Event::Typing(typing) => ServerFrame::Typing {
            data: TypingData {
                user_id: typing.user_id.get(),
            },
        },
        _ => return None,
    }))
}

async fn write<S>(socket: &mut S, config: &WsConfig, text: &str) -> Result<(), Closing>
where
    S: Sink<WsMessage, Error = WsError> + Unpin,
{
    send_within(socket, config, WsMessage::Text(text.to_owned().into())).await
}

/// A write that does not finish within the write timeout marks a slow consumer.
async fn send_within<S>(socket: &mut S, config: &WsConfig, frame: WsMessage) -> Result<(), Closing>
where
    S: Sink<WsMessage, Error = WsError> + Unpin,
{
    match tokio::time::timeout(config.write_timeout, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Closing::ByPeer),
        Err(_) => Err(Closing::with(
            close_code::SLOW_CONSUMER,
            "too far behind; reconnect with after_id",
        )),
    }
}

fn error_frame(data: ErrorData) -> String {
    encode(&ServerFrame::Error { data })
}

/// Handles one text frame and returns the answer frame, if the frame has one (`ack`,
/// `read` and `typing` are answered only when they fail).
async fn handle_text(
    chat: &ChatService,
    user: UserId,
    text: &str,
    own_sends: &mut OwnSends,
) -> Option<String> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            return Some(error_frame(ErrorData::new(
                "invalid_frame",
                format!("not a frame of this protocol: {error}"),
            )));
        }
    };
    let ids = |raw: Vec<i64>| raw.into_iter().map(MessageId::new).collect::<Vec<_>>();
    let outcome = match frame {
        ClientFrame::Ping => return Some(encode(&ServerFrame::Pong)),
        ClientFrame::Send {
            receiver_id,
            message,
            client_message_id,
        } => {
            let input = SendMessage {
                receiver_id: UserId::new(receiver_id),
                message,
                client_message_id,
            };
            return Some(match chat.send(user, input).await {
                Ok(outcome) => {
                    // A replay publishes nothing, so it has no echo to skip.
                    if !outcome.replay {
                        own_sends.record(outcome.message.id);
                    }
                    sent_frame(&outcome.message, outcome.replay)
                }
                Err(error) => error_frame((&error).into()),
            });
        }
        ClientFrame::Ack { ids: raw } => chat.mark_delivered(user, &ids(raw)).await.map(drop),
        ClientFrame::Read {
            ids: Some(raw),
            user_id: None,
            up_to_id: None,
        } => chat.mark_read_ids(user, &ids(raw)).await.map(drop),
        ClientFrame::Read {
            ids: None,
            user_id: Some(other),
            up_to_id,
        } => chat
            .mark_conversation_read(user, UserId::new(other), up_to_id.map(MessageId::new))
            .await
            .map(drop),
        ClientFrame::Read { .. } => Err(chat_core::Error::invalid(
            "ids",
            chat_core::ValidationCode::Exclusive,
            "A read frame takes either ids, or user_id with an optional up_to_id.",
        )),
        ClientFrame::Typing { receiver_id } => chat.typing(user, UserId::new(receiver_id)).await,
    };
    outcome.err().map(|error| error_frame((&error).into()))
}

fn sent_frame(message: &Message, replay: bool) -> String {
    encode(&ServerFrame::Sent {
        data: message,
        replay,
    })
}
