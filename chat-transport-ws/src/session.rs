//! One WebSocket connection: backlog, then live events and client frames.
//!
//! Written over any [`WsSocket`] (a `Sink + Stream` of WebSocket messages), so the
//! protocol can be driven without a network.

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
    // the stream, and is written only if the backlog did not have it.
    let mut events = match Box::pin(chat.subscribe(user)).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "cannot subscribe a WebSocket");
            return Closing::with(close_code::INTERNAL_ERROR, "unavailable");
        }
    };
    let config = Arc::clone(&session.config);
    let mut writer = Writer {
        chat: &chat,
        user,
        config: &config,
        cursor: MessageId::new(0),
    };
    if let Err(closing) = Box::pin(writer.backlog(socket, session.resume_after)).await {
        return closing;
    }

    let mut limit = InboundLimit::new(&config);
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
                        let reply = Box::pin(handle_text(&chat, user, text.as_str())).await;
                        let written = match reply {
                            Some(Reply::Frame(reply)) => write(socket, &config, &reply).await,
                            Some(Reply::Sent(message, replay)) => {
                                Box::pin(writer.through_sent(socket, &message, replay)).await
                            }
                            None => Ok(()),
                        };
                        if let Err(closing) = written {
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
            Step::Event(Some(Event::Message(message))) => {
                // Events of concurrent sends arrive in any order: the event only says
                // that there is news, and the store says what, in id order. A message
                // at or below the cursor was written already (in the backlog, by an
                // earlier read, or as the `sent` answer to this connection's send).
                if message.id > writer.cursor
                    && let Err(closing) = Box::pin(writer.catch_up(socket)).await
                {
                    return closing;
                }
            }
            Step::Event(Some(event)) => {
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

/// Writes the user's messages to the connection in id order, none skipped.
///
/// `cursor` is the id up to which every message to or from the user has been written
/// (for a connection without a resume cursor: every undelivered one, and every one
/// since it connected). A client resuming with the highest id it received therefore
/// misses nothing: nothing below that id can still be on its way.
struct Writer<'a> {
    chat: &'a ChatService,
    user: UserId,
    config: &'a WsConfig,
    cursor: MessageId,
}

impl Writer<'_> {
    /// The backlog: everything after `resume_after`, or without it every undelivered
    /// message; the cursor then stands after it.
    async fn backlog<S: WsSocket>(
        &mut self,
        socket: &mut S,
        resume_after: Option<MessageId>,
    ) -> Result<(), Closing> {
        if let Some(after) = resume_after {
            self.cursor = after;
            return self.catch_up(socket).await;
        }
        // New messages are followed from the newest one now; older ones only while
        // no device has them (the undelivered backlog).
        let newest = self.chat.latest_message_id(self.user).await;
        self.cursor = newest.map_err(store_failed)?.unwrap_or(MessageId::new(0));
        let batch = self.config.backlog_batch;
        let mut after = MessageId::new(0);
        loop {
            let page = self.chat.undelivered(self.user, after, batch).await;
            let page = page.map_err(store_failed)?;
            for message in &page {
                self.feed(socket, &message_frame(message), message.id)
                    .await?;
            }
            self.flush(socket).await?;
            match page.last() {
                Some(last) if page.len() == batch as usize => after = last.id,
                _ => return Ok(()),
            }
        }
    }

    /// Writes every message after the cursor, from the store, oldest first.
    async fn catch_up<S: WsSocket>(&mut self, socket: &mut S) -> Result<(), Closing> {
        self.write_after_cursor(socket, None).await.map(drop)
    }

    /// Answers a `send` with `sent`, in its place among the user's messages: every
    /// message before it is written first, so the `sent` id is a safe cursor too.
    async fn through_sent<S: WsSocket>(
        &mut self,
        socket: &mut S,
        message: &Message,
        replay: bool,
    ) -> Result<(), Closing> {
        let answer = sent_frame(message, replay);
        if message.id > self.cursor
            && self
                .write_after_cursor(socket, Some((message.id, &answer)))
                .await?
        {
            return Ok(());
        }
        write(socket, self.config, &answer).await
    }

    /// Writes the messages after the cursor, `answer` standing in for the message it
    /// answers; whether `answer` was written.
    async fn write_after_cursor<S: WsSocket>(
        &mut self,
        socket: &mut S,
        answer: Option<(MessageId, &str)>,
    ) -> Result<bool, Closing> {
        let batch = self.config.backlog_batch;
        let mut answered = false;
        loop {
            let page = self
                .chat
                .messages_after(self.user, self.cursor, batch)
                .await;
            let page = page.map_err(store_failed)?;
            for message in &page {
                match answer {
                    Some((id, text)) if id == message.id => {
                        answered = true;
                        self.feed(socket, text, message.id).await?;
                    }
                    _ => {
                        self.feed(socket, &message_frame(message), message.id)
                            .await?
                    }
                }
            }
            self.flush(socket).await?;
            if page.len() < batch as usize {
                return Ok(answered);
            }
        }
    }

    /// Queues one frame and moves the cursor past `id`.
    async fn feed<S: WsSocket>(
        &mut self,
        socket: &mut S,
        text: &str,
        id: MessageId,
    ) -> Result<(), Closing> {
        let frame = WsMessage::Text(text.to_owned().into());
        match tokio::time::timeout(self.config.write_timeout, socket.feed(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Closing::ByPeer),
            Err(_) => return Err(slow_consumer()),
        }
        self.cursor = self.cursor.max(id);
        Ok(())
    }

    async fn flush<S: WsSocket>(&mut self, socket: &mut S) -> Result<(), Closing> {
        match tokio::time::timeout(self.config.write_timeout, socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Closing::ByPeer),
            Err(_) => Err(slow_consumer()),
        }
    }
}

fn store_failed(error: chat_core::Error) -> Closing {
    tracing::warn!(%error, "cannot read a WebSocket's messages");
    Closing::with(close_code::INTERNAL_ERROR, "unavailable")
}

fn slow_consumer() -> Closing {
    Closing::with(
        close_code::SLOW_CONSUMER,
        "too far behind; reconnect with after_id",
    )
}

fn message_frame(message: &Message) -> String {
    encode(&ServerFrame::Message { data: message })
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
        // Messages are written from the store, in id order (`Writer`).
        Event::Message(_) => return None,
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
        Err(_) => Err(slow_consumer()),
    }
}

fn error_frame(data: ErrorData) -> String {
    encode(&ServerFrame::Error { data })
}

/// Handles one text frame and returns the answer frame, if the frame has one (`ack`,
/// `read` and `typing` are answered only when they fail).
/// What to write back for a client frame.
enum Reply {
    /// This frame.
    Frame(String),
    /// `sent` for this message (`true`: a replay), in its place among the messages.
    Sent(Message, bool),
}

async fn handle_text(chat: &ChatService, user: UserId, text: &str) -> Option<Reply> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            return Some(Reply::Frame(error_frame(ErrorData::new(
                "invalid_frame",
                format!("not a frame of this protocol: {error}"),
            ))));
        }
    };
    let ids = |raw: Vec<i64>| raw.into_iter().map(MessageId::new).collect::<Vec<_>>();
    let outcome = match frame {
        ClientFrame::Ping => return Some(Reply::Frame(encode(&ServerFrame::Pong))),
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
                Ok(outcome) => Reply::Sent(outcome.message, outcome.replay),
                Err(error) => Reply::Frame(error_frame((&error).into())),
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
    outcome
        .err()
        .map(|error| Reply::Frame(error_frame((&error).into())))
}

fn sent_frame(message: &Message, replay: bool) -> String {
    encode(&ServerFrame::Sent {
        data: message,
        replay,
    })
}
