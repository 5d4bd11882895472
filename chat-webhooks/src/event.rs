//! The events a webhook tells of, and their payloads.

use chat_core::Message;
use serde::Serialize;
use time::OffsetDateTime;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// A message was stored.
    MessageCreated,
    /// A message was read by its receiver.
    MessageRead,
    /// A message was still undelivered some time after it was stored: the hook for
    /// push or e-mail to offline receivers.
    MessageUndelivered,
}

impl WebhookEvent {
    /// Every event.
    pub const ALL: [Self; 3] = [
        Self::MessageCreated,
        Self::MessageRead,
        Self::MessageUndelivered,
    ];

    /// The event's `type`: `message.created`, `message.read`, `message.undelivered`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MessageCreated => "message.created",
            Self::MessageRead => "message.read",
            Self::MessageUndelivered => "message.undelivered",
        }
    }
}

impl std::str::FromStr for WebhookEvent {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|event| event.name() == name.trim())
            .ok_or_else(|| {
                format!(
                    "unknown webhook event {name:?}; the events are message.created, message.read and message.undelivered"
                )
            })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(with = "chat_core::timestamp::serde_micros")]
    timestamp: OffsetDateTime,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    message: &'a Message,
}

/// The body of a delivery: `{"type": …, "timestamp": "<RFC 3339>", "data":
/// {"message": Message}}`, the message as the REST API shows it.
pub fn payload(event: WebhookEvent, at: OffsetDateTime, message: &Message) -> String {
    let body = Body {
        kind: event.name(),
        // Written as the message's own times are, to the microsecond.
        timestamp: at,
        data: Data { message },
    };
    // Plain values always serialize.
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chat_core::{MessageId, MessageStatus, UserId};
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_payload_is_standard_webhooks_shaped_with_the_message() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let message = Message {
            id: MessageId::new(9),
            sender_id: UserId::new(1),
            receiver_id: UserId::new(2),
            message: "hello".into(),
            status: MessageStatus::Sent,
            client_message_id: None,
            created_at: at,
            updated_at: at,
            delivered_at: None,
            read_at: None,
            edited_at: None,
            deleted_at: None,
        };
        let body: Value =
            serde_json::from_str(&payload(WebhookEvent::MessageUndelivered, at, &message)).unwrap();
        assert_eq!(body["type"], "message.undelivered");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(
            body["data"],
            json!({ "message": serde_json::to_value(&message).unwrap() })
        );
        for event in WebhookEvent::ALL {
            assert_eq!(event.name().parse::<WebhookEvent>(), Ok(event));
        }
        assert!("message.deleted".parse::<WebhookEvent>().is_err());
    }
}
