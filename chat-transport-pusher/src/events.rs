//! The chat's events as Laravel Echo listens for them: `MessageSent`,
//! `MessageDelivered`, `MessageRead`, `MessageUpdated` and `MessageDeleted` in the
//! app's event namespace, each with `{"message": Message}`.

use chat_core::Message;
use serde::Serialize;

use crate::protocol::frame;
use crate::{ChannelName, ChatChannel};

/// What happened to a message, as the event class Laravel would broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatEvent {
    /// A new message to or from the channel's user.
    MessageSent,
    /// A message the channel's user sent was delivered to a device of its receiver.
    MessageDelivered,
    /// A message the channel's user sent was read.
    MessageRead,
    /// A message to or from the channel's user was edited by its sender.
    MessageUpdated,
    /// A message to or from the channel's user was deleted by its sender (the
    /// message is its tombstone: `deleted_at` set, the text empty).
    MessageDeleted,
}

impl ChatEvent {
    /// The class name without its namespace.
    pub fn class(self) -> &'static str {
        match self {
            Self::MessageSent => "MessageSent",
            Self::MessageDelivered => "MessageDelivered",
            Self::MessageRead => "MessageRead",
            Self::MessageUpdated => "MessageUpdated",
            Self::MessageDeleted => "MessageDeleted",
        }
    }
}

/// The namespace event names carry, `App\Events` by default as in a Laravel app, so
/// that `Echo.private('chat.2').listen('MessageSent', …)` (which Echo prefixes with
/// `App\Events\`) hears `App\Events\MessageSent`. An empty namespace gives bare names,
/// for clients that listen with a leading dot (`.listen('.MessageSent', …)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNamespace(String);

/// Why a namespace was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an event namespace is PHP namespace segments of letters, digits and '_' joined by '\\', such as App\\Events"
)]
pub struct NamespaceError;

impl Default for EventNamespace {
    fn default() -> Self {
        Self("App\\Events".to_owned())
    }
}

impl std::str::FromStr for EventNamespace {
    type Err = NamespaceError;

    fn from_str(namespace: &str) -> Result<Self, Self::Err> {
        let segment = |part: &str| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if namespace.is_empty() || namespace.split('\\').all(segment) {
            Ok(Self(namespace.to_owned()))
        } else {
            Err(NamespaceError)
        }
    }
}

impl EventNamespace {
    /// The Pusher event name of `event`: `App\Events\MessageSent`, or the bare class.
    pub fn event_name(&self, event: ChatEvent) -> String {
        if self.0.is_empty() {
            event.class().to_owned()
        } else {
            format!("{}\\{}", self.0, event.class())
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    message: &'a Message,
}

/// The frame that tells `user`'s `private-chat.{user}` subscription about `message`.
pub fn message_frame(
    namespace: &EventNamespace,
    event: ChatEvent,
    user: chat_core::UserId,
    message: &Message,
) -> String {
    let channel: ChannelName = ChatChannel::User(user).name();
    // A message always serializes: its fields are plain values.
    let data = serde_json::to_string(&Payload { message }).unwrap_or_default();
    frame(&namespace.event_name(event), Some(channel.as_str()), &data)
}

#[cfg(test)]
mod tests {
    use chat_core::{MessageId, MessageStatus, UserId};
    use serde_json::Value;

    use super::*;

    #[test]
    fn names_follow_the_namespace() {
        let default = EventNamespace::default();
        assert_eq!(
            default.event_name(ChatEvent::MessageSent),
            "App\\Events\\MessageSent"
        );
        let custom: EventNamespace = "Chat\\Broadcast_2".parse().unwrap();
        assert_eq!(
            custom.event_name(ChatEvent::MessageRead),
            "Chat\\Broadcast_2\\MessageRead"
        );
        let bare: EventNamespace = "".parse().unwrap();
        assert_eq!(
            bare.event_name(ChatEvent::MessageDelivered),
            "MessageDelivered"
        );
        for bad in [
            "App\\",
            "\\App",
            "App\\\\Events",
            "App Events",
            "App/Events",
            "1App",
            "App\\É",
        ] {
            assert_eq!(bad.parse::<EventNamespace>(), Err(NamespaceError), "{bad}");
        }
    }

    #[test]
    fn a_message_event_carries_the_message_as_the_api_shows_it() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let message = Message {
            id: MessageId::new(5),
            sender_id: UserId::new(1),
            receiver_id: UserId::new(2),
            message: "hi \"there\"".to_owned(),
            status: MessageStatus::Sent,
            client_message_id: None,
            created_at: at,
            updated_at: at,
            delivered_at: None,
            read_at: None,
            edited_at: None,
            deleted_at: None,
        };
        let frame: Value = serde_json::from_str(&message_frame(
            &EventNamespace::default(),
            ChatEvent::MessageSent,
            UserId::new(2),
            &message,
        ))
        .unwrap();
        assert_eq!(frame["event"], "App\\Events\\MessageSent");
        assert_eq!(frame["channel"], "private-chat.2");
        // `data` is a string holding the JSON, as pusher-js expects.
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({ "message": serde_json::to_value(&message).unwrap() })
        );
        assert_eq!(data["message"]["message"], "hi \"there\"");
    }
}
