//! Writing to the client: the feed's messages and changes in position order, `sent`
//! answers in their place among them, and single frames, each within the write
//! timeout.

use chat_core::{Change, Feed, FeedEntry, Message, MessageId};
use futures_util::{Sink, SinkExt};
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::closing::{Closing, WsSocket};
use crate::config::{WsConfig, close_code};
use crate::protocol::{ServerFrame, encode};

/// Writes every message and change the feed has, in position order. `answer`, the
/// `sent` frame of this connection's own send, stands in for the message it answers;
/// whether it was written.
pub(crate) async fn write_messages<S: WsSocket>(
    socket: &mut S,
    feed: &mut Feed,
    config: &WsConfig,
    answer: Option<(MessageId, &str)>,
) -> Result<bool, Closing> {
    let mut answered = false;
    loop {
        let page = feed.next_page().await.map_err(store_failed)?;
        if page.is_empty() {
            return Ok(answered);
        }
        for entry in &page {
            let frame = match (entry, answer) {
                (FeedEntry::New(message), Some((id, text))) if id == message.id => {
                    answered = true;
                    text.to_owned()
                }
                (FeedEntry::New(message), _) => message_frame(message),
                (FeedEntry::Changed(change), _) => change_frame(change),
            };
            within(config, socket.feed(WsMessage::Text(frame.into()))).await?;
        }
        within(config, socket.flush()).await?;
    }
}

/// Answers a `send` with `sent`, in its place among the user's messages: every
/// message before it is written first, so the `sent` id is a safe resume cursor too.
pub(crate) async fn write_sent<S: WsSocket>(
    socket: &mut S,
    feed: &mut Feed,
    config: &WsConfig,
    message: &Message,
    replay: bool,
) -> Result<(), Closing> {
    let answer = encode(&ServerFrame::Sent {
        data: message,
        replay,
    });
    if feed.expect(message.id)
        && write_messages(socket, feed, config, Some((message.id, &answer))).await?
    {
        return Ok(());
    }
    write(socket, config, &answer).await
}

/// Writes one text frame.
pub(crate) async fn write<S>(socket: &mut S, config: &WsConfig, text: &str) -> Result<(), Closing>
where
    S: Sink<WsMessage, Error = WsError> + Unpin,
{
    send_within(socket, config, WsMessage::Text(text.to_owned().into())).await
}

/// Writes one frame; one that does not go out within the write timeout marks a slow
/// consumer.
pub(crate) async fn send_within<S>(
    socket: &mut S,
    config: &WsConfig,
    frame: WsMessage,
) -> Result<(), Closing>
where
    S: Sink<WsMessage, Error = WsError> + Unpin,
{
    within(config, socket.send(frame)).await
}

async fn within(
    config: &WsConfig,
    write: impl Future<Output = Result<(), WsError>>,
) -> Result<(), Closing> {
    match tokio::time::timeout(config.write_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Closing::ByPeer),
        Err(_) => Err(slow_consumer()),
    }
}

/// The close for a client that does not keep up: it resumes with `after_id`.
pub(crate) fn slow_consumer() -> Closing {
    Closing::with(
        close_code::SLOW_CONSUMER,
        "too far behind; reconnect with after_id",
    )
}

fn store_failed(error: chat_core::Error) -> Closing {
    tracing::warn!(%error, "cannot read a WebSocket's messages");
    Closing::with(close_code::INTERNAL_ERROR, "unavailable")
}

fn message_frame(message: &Message) -> String {
    encode(&ServerFrame::Message { data: message })
}

fn change_frame(change: &Change) -> String {
    let (data, revision) = (&change.message, change.revision.get());
    encode(&if change.is_deletion() {
        ServerFrame::MessageDeleted { data, revision }
    } else {
        ServerFrame::MessageUpdated { data, revision }
    })
}
