//! What travels on a user's topic: the event, the user it is for, and the node that
//! published it (a node has already handed its own events to its local subscribers).

use std::sync::Arc;

use chat_core::{Change, Event, Message, MessageId, Receipt, Typing, UserId};
use serde::{Deserialize, Serialize};

/// One published event, as it is written.
#[derive(Serialize)]
struct Outgoing<'a> {
    node: u64,
    user: UserId,
    #[serde(flatten)]
    event: EventRef<'a>,
}

#[derive(Serialize)]
#[serde(tag = "kind", content = "event", rename_all = "snake_case")]
enum EventRef<'a> {
    Message(&'a Message),
    Receipt(&'a Receipt),
    Typing(&'a Typing),
    Changed {
        revision: MessageId,
        message: &'a Message,
    },
}

/// One published event, as it is read.
#[derive(Deserialize)]
struct Incoming {
    node: u64,
    user: UserId,
    #[serde(flatten)]
    event: EventOwned,
}

#[derive(Deserialize)]
#[serde(tag = "kind", content = "event", rename_all = "snake_case")]
enum EventOwned {
    Message(Message),
    Receipt(Receipt),
    Typing(Typing),
    Changed {
        revision: MessageId,
        message: Message,
    },
}

/// The payload for `event` to `user` from `node`; `None` for a kind of event this
/// version does not carry.
pub(crate) fn encode(node: u64, user: UserId, event: &Event) -> Option<Vec<u8>> {
    let event = match event {
        Event::Message(message) => EventRef::Message(message),
        Event::Receipt(receipt) => EventRef::Receipt(receipt),
        Event::Typing(typing) => EventRef::Typing(typing),
        Event::Changed(change) => EventRef::Changed {
            revision: change.revision,
            message: &change.message,
        },
        _ => return None,
    };
    serde_json::to_vec(&Outgoing { node, user, event }).ok()
}

/// The node, user and event of a payload; `None` when it is not one (another
/// version's kind of event, or something else published on the topic).
pub(crate) fn decode(payload: &[u8]) -> Option<(u64, UserId, Event)> {
    let Incoming { node, user, event } = serde_json::from_slice(payload).ok()?;
    let event = match event {
        EventOwned::Message(message) => Event::Message(Arc::new(message)),
        EventOwned::Receipt(receipt) => Event::Receipt(receipt),
        EventOwned::Typing(typing) => Event::Typing(typing),
        EventOwned::Changed { revision, message } => {
            Event::Changed(Arc::new(Change { revision, message }))
        }
    };
    Some((node, user, event))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chat_core::{MessageId, MessageStatus};

    use super::*;

    #[test]
    fn every_kind_of_event_round_trips() {
        let at = chat_core::timestamp::now();
        let message = Message {
            id: MessageId::new(7),
            sender_id: UserId::new(1),
            receiver_id: UserId::new(2),
            message: "héllo \"there\"".to_owned(),
            status: MessageStatus::Sent,
            client_message_id: Some("k-1".to_owned()),
            created_at: at,
            updated_at: at,
            delivered_at: None,
            read_at: None,
            edited_at: None,
            deleted_at: None,
        };
        let edited = Message {
            message: "edited".to_owned(),
            edited_at: Some(at),
            ..message.clone()
        };
        let events = [
            Event::Message(Arc::new(message)),
            Event::Changed(Arc::new(Change {
                revision: MessageId::new(12),
                message: edited,
            })),
            Event::Receipt(Receipt {
                id: MessageId::new(7),
                sender_id: UserId::new(1),
                receiver_id: UserId::new(2),
                status: MessageStatus::Read,
                at,
            }),
            Event::Typing(Typing {
                user_id: UserId::new(2),
            }),
        ];
        for event in events {
            let payload = encode(99, UserId::new(1), &event).unwrap();
            assert_eq!(decode(&payload), Some((99, UserId::new(1), event)));
        }
    }

    #[test]
    fn foreign_payloads_are_ignored() {
        assert_eq!(decode(b"not json"), None);
        assert_eq!(
            decode(br#"{"node":1,"user":2,"kind":"reaction","event":{}}"#),
            None
        );
    }
}
