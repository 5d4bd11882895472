//! The native JSON protocol: what clients send and what the server answers. Every
//! frame is a JSON text frame holding an object with a `type`.

use std::collections::BTreeMap;

use chat_core::{Error, Message, MessageId, MessageStatus, Receipt, UserId, UserPresence};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Marks received messages delivered.
    Ack {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Marks received messages read: listed by `ids`, or everything from `user_id` up
    /// to `up_to_id` (all when absent).
    Read {
        /// The messages, or absent.
        #[serde(default)]
        ids: Option<Vec<MessageId>>,
        /// The sender whose messages to mark, or absent.
        #[serde(default)]
        user_id: Option<UserId>,
        /// With `user_id`: the last message to mark.
        #[serde(default)]
        up_to_id: Option<MessageId>,
    },
    /// Sends a message; answered by `sent` or `error`.
    Send {
        /// Who it is for.
        receiver_id: UserId,
        /// The text.
        message: String,
        /// Optional idempotency key.
        #[serde(default)]
        client_message_id: Option<String>,
    },
    /// Tells `receiver_id` that the user is typing.
    Typing {
        /// Who to tell.
        receiver_id: UserId,
    },
    /// Follows the presence of these users (at most 100) instead of any watched
    /// before; answered by `presence` with each of them, then a `presence` frame
    /// whenever one comes online or goes offline. An empty list stops watching.
    Watch {
        /// The users to watch.
        user_ids: Vec<UserId>,
    },
    /// Answered by `pong`.
    Ping,
}

/// A frame to the client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// A new message to or from the user.
    Message {
        /// The message.
        data: &'a Message,
    },
    /// A message to or from the user was edited by its sender.
    #[serde(rename = "message_updated")]
    MessageUpdated {
        /// The message as it is now, `edited_at` set.
        data: &'a Message,
        /// The change's place among ids: a resume cursor, like a message id.
        revision: i64,
    },
    /// A message to or from the user was deleted by its sender.
    #[serde(rename = "message_deleted")]
    MessageDeleted {
        /// The tombstone: `deleted_at` set, the text empty.
        data: &'a Message,
        /// The change's place among ids: a resume cursor, like a message id.
        revision: i64,
    },
    /// A message the user sent changed status.
    Receipt {
        /// What changed.
        data: ReceiptData,
    },
    /// The counterpart is typing.
    Typing {
        /// Who.
        data: TypingData,
    },
    /// The answer to `send`.
    Sent {
        /// The stored message.
        data: &'a Message,
        /// Whether this is the original of an earlier send with the same key.
        replay: bool,
    },
    /// A frame could not be handled; the connection stays open.
    Error {
        /// What went wrong.
        data: ErrorData,
    },
    /// The presence of watched users: all of them in answer to `watch`, then each
    /// one whose presence changed.
    Presence {
        /// Each user's presence as the connection's user may see it.
        data: &'a [UserPresence],
    },
    /// The answer to `ping`.
    Pong,
}

/// The payload of a `receipt` frame.
#[derive(Debug, Serialize)]
pub struct ReceiptData {
    /// The message.
    pub id: i64,
    /// Its new status.
    pub status: MessageStatus,
    /// When it changed.
    #[serde(with = "chat_core::timestamp::serde_micros")]
    pub at: OffsetDateTime,
}

impl From<&Receipt> for ReceiptData {
    fn from(receipt: &Receipt) -> Self {
        Self {
            id: receipt.id.get(),
            status: receipt.status,
            at: receipt.at,
        }
    }
}

/// The payload of a `typing` frame.
#[derive(Debug, Serialize)]
pub struct TypingData {
    /// Who is typing.
    pub user_id: i64,
}

/// The payload of an `error` frame.
#[derive(Debug, Serialize)]
pub struct ErrorData {
    /// A stable code: `invalid_frame`, `unsupported_frame`, `validation_failed`,
    /// `not_found`, `forbidden`, `conflict`, `rate_limited`, `unavailable`, `internal`.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// For `validation_failed`: the messages of each field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
    /// For `rate_limited`: seconds to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorData {
    /// An error without details.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: None,
            retry_after: None,
        }
    }
}

impl From<&Error> for ErrorData {
    fn from(error: &Error) -> Self {
        match error {
            Error::Validation(errors) => Self {
                errors: Some(
                    errors
                        .by_field()
                        .into_iter()
                        .map(|(field, messages)| {
                            (
                                field.to_owned(),
                                messages.into_iter().map(str::to_owned).collect(),
                            )
                        })
                        .collect(),
                ),
                ..Self::new("validation_failed", errors.to_string())
            },
            Error::NotFound { what } => Self::new("not_found", format!("{what} not found")),
            Error::Forbidden { reason } => Self::new("forbidden", *reason),
            Error::Conflict { message } => Self::new("conflict", message.clone()),
            Error::RateLimited { retry_after, .. } => Self {
                retry_after: Some(
                    retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
                ),
                ..Self::new(
                    "rate_limited",
                    "too many messages; wait before sending again",
                )
            },
            Error::Unavailable { .. } => Self::new(
                "unavailable",
                "the service is unavailable; try again shortly",
            ),
            other => {
                tracing::error!(error = ?other, "internal error on a WebSocket");
                Self::new("internal", "internal error")
            }
        }
    }
}

/// Serializes a frame. Serializing these types cannot fail; should it, the client gets
/// an `internal` error frame instead.
pub(crate) fn encode(frame: &ServerFrame<'_>) -> String {
    serde_json::to_string(frame).unwrap_or_else(|_| {
        r#"{"type":"error","data":{"code":"internal","message":"internal error"}}"#.to_owned()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn client_frames_parse_and_refuse_unknown_fields() {
        let cases = [
            (
                r#"{"type":"ack","ids":[1,2]}"#,
                ClientFrame::Ack {
                    ids: vec![MessageId::new(1), MessageId::new(2)],
                },
            ),
            (r#"{"type":"ping"}"#, ClientFrame::Ping),
            (
                r#"{"type":"typing","receiver_id":3}"#,
                ClientFrame::Typing {
                    receiver_id: UserId::new(3),
                },
            ),
            (
                r#"{"type":"read","user_id":2,"up_to_id":9}"#,
                ClientFrame::Read {
                    ids: None,
                    user_id: Some(UserId::new(2)),
                    up_to_id: Some(MessageId::new(9)),
                },
            ),
            (
                r#"{"type":"send","receiver_id":2,"message":"hi"}"#,
                ClientFrame::Send {
                    receiver_id: UserId::new(2),
                    message: "hi".into(),
                    client_message_id: None,
                },
            ),
        ];
        for (text, frame) in cases {
            assert_eq!(
                serde_json::from_str::<ClientFrame>(text).unwrap(),
                frame,
                "{text}"
            );
        }
        for bad in [
            r#"{"type":"ack","ids":[1],"extra":1}"#,
            r#"{"type":"shout"}"#,
            r#"{"ids":[1]}"#,
            r#"{"type":"send","receiver_id":"2","message":"hi"}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let pong = encode(&ServerFrame::Pong);
        assert_eq!(pong, r#"{"type":"pong"}"#);
        let error = encode(&ServerFrame::Error {
            data: ErrorData::new("invalid_frame", "bad"),
        });
        assert_eq!(
            error,
            r#"{"type":"error","data":{"code":"invalid_frame","message":"bad"}}"#
        );
        let typing = encode(&ServerFrame::Typing {
            data: TypingData { user_id: 4 },
        });
        assert_eq!(typing, r#"{"type":"typing","data":{"user_id":4}}"#);
    }
}
