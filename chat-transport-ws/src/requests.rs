//! What a client's text frames ask for, carried out through the `ChatService`.

use chat_core::{ChatService, Message, ReadRequest, SendMessage, UserId};

use crate::protocol::{ClientFrame, ErrorData, ServerFrame, encode};

/// What to write back for a client frame.
pub(crate) enum Reply {
    /// This frame.
    Frame(String),
    /// `sent` for this message (`true`: a replay), in its place among the messages.
    Sent(Message, bool),
    /// Watch these users' presence (the session keeps the list).
    Watch(Vec<UserId>),
}

/// Carries out one text frame; the answer, if it has one (`ack`, `read` and `typing`
/// are answered only when they fail).
pub(crate) async fn handle_text(chat: &ChatService, user: UserId, text: &str) -> Option<Reply> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            return Some(Reply::Frame(error_frame(ErrorData::new(
                "invalid_frame",
                format!("not a frame of this protocol: {error}"),
            ))));
        }
    };
    let outcome = match frame {
        ClientFrame::Ping => return Some(Reply::Frame(encode(&ServerFrame::Pong))),
        ClientFrame::Send {
            receiver_id,
            message,
            client_message_id,
        } => {
            let input = SendMessage {
                receiver_id,
                message,
                client_message_id,
            };
            return Some(match chat.send(user, input).await {
                Ok(outcome) => Reply::Sent(outcome.message, outcome.replay),
                Err(error) => Reply::Frame(error_frame((&error).into())),
            });
        }
        ClientFrame::Ack { ids } => chat.mark_messages_delivered(user, &ids).await.map(drop),
        ClientFrame::Read {
            ids,
            user_id,
            up_to_id,
        } => {
            let request = ReadRequest {
                ids,
                user_id,
                up_to_id,
            };
            chat.mark_read_request(user, request).await.map(drop)
        }
        ClientFrame::Typing { receiver_id } => chat.typing(user, receiver_id).await,
        ClientFrame::Watch { user_ids } => return Some(Reply::Watch(user_ids)),
    };
    outcome
        .err()
        .map(|error| Reply::Frame(error_frame((&error).into())))
}

pub(crate) fn error_frame(data: ErrorData) -> String {
    encode(&ServerFrame::Error { data })
}
