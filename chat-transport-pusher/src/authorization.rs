//! Who may join which private and presence channel: the answer of the authorization
//! endpoint (`POST /broadcasting/auth`, Laravel's route) for an authenticated user.

use chat_core::UserId;
use serde::Serialize;
use serde_json::Value;

use crate::signature::authorize_channel;
use crate::{ChannelKind, ChannelName, ChatChannel, PusherApp, SocketId};

/// A host's rule for its own channels, the ones that are not the chat's.
///
/// # Contract
///
/// - Called only for private and presence channels that are not the chat's own
///   (`private-chat.{id}`, `presence-chat.{a}.{b}`): the chat's channels are decided by
///   the chat's rules, and a host cannot widen them.
/// - Answers [`Grant::Refused`] for every channel it does not know: refusing is the
///   default for anything no one authorizes.
/// - [`Grant::Presence`] only for `presence-…` channels and [`Grant::Private`] only for
///   `private-…` ones; the other pairing is treated as a refusal.
/// - Cheap and non-blocking: it runs on the request path.
pub trait ChannelAuthorizer: Send + Sync + 'static {
    /// Whether `user` may join `channel`.
    fn authorize(&self, user: UserId, channel: &ChannelName) -> Grant;
}

/// A host's answer for one of its channels.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Not for this user.
    Refused,
    /// The user may join the private channel.
    Private,
    /// The user may join the presence channel, shown to the other members with
    /// `user_info`.
    Presence {
        /// What the other members see of the user.
        user_info: Value,
    },
}

/// The authorization endpoint's answer: what the client sends with its subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelAuth {
    /// `key:signature`.
    pub auth: String,
    /// For a presence channel, the member data the signature covers, as a JSON string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// Why a subscription was not authorized (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// A public channel needs no authorization.
    #[error("public channels need no authorization")]
    Public,
    /// The channel is not this user's to join.
    #[error("this channel is not yours to join")]
    Forbidden,
}

/// Authorizes `user` on connection `socket_id` to join `channel`: the chat's own
/// channels by the chat's rules (`private-chat.{id}` only for user `id`,
/// `presence-chat.{a}.{b}` only for `a` and `b`), any other private or presence
/// channel by the `host`'s rule if there is one, and nothing else.
pub fn authorize_subscription(
    app: &PusherApp,
    user: UserId,
    socket_id: &SocketId,
    channel: &ChannelName,
    host: Option<&dyn ChannelAuthorizer>,
) -> Result<ChannelAuth, AuthRefusal> {
    let kind = channel.kind();
    let grant = match (kind, ChatChannel::of(channel)) {
        (ChannelKind::Public, _) => return Err(AuthRefusal::Public),
        (_, Some(chat)) if chat.admits(user) => match chat {
            ChatChannel::User(_) => Grant::Private,
            ChatChannel::Conversation(..) => Grant::Presence {
                user_info: serde_json::json!({ "id": user.get() }),
            },
        },
        (_, Some(_)) => Grant::Refused,
        (_, None) => host.map_or(Grant::Refused, |host| host.authorize(user, channel)),
    };
    match (kind, grant) {
        (ChannelKind::Private, Grant::Private) => Ok(ChannelAuth {
            auth: authorize_channel(app, socket_id, channel, None),
            channel_data: None,
        }),
        (ChannelKind::Presence, Grant::Presence { user_info }) => {
            // `user_id` as a string, as Laravel's Pusher library writes it.
            let channel_data =
                serde_json::json!({ "user_id": user.get().to_string(), "user_info": user_info })
                    .to_string();
            Ok(ChannelAuth {
                auth: authorize_channel(app, socket_id, channel, Some(&channel_data)),
                channel_data: Some(channel_data),
            })
        }
        _ => Err(AuthRefusal::Forbidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Member;
    use crate::signature::channel_auth_is_valid;

    fn app() -> PusherApp {
        PusherApp::new("1", "key", "secret").unwrap()
    }

    fn socket() -> SocketId {
        "1.2".parse().unwrap()
    }

    fn channel(name: &str) -> ChannelName {
        name.parse().unwrap()
    }

    fn authorize(
        user: i64,
        name: &str,
        host: Option<&dyn ChannelAuthorizer>,
    ) -> Result<ChannelAuth, AuthRefusal> {
        authorize_subscription(&app(), UserId::new(user), &socket(), &channel(name), host)
    }

    #[test]
    fn a_user_joins_only_their_own_chat_channel() {
        let auth = authorize(7, "private-chat.7", None).unwrap();
        assert_eq!(auth.channel_data, None);
        assert!(channel_auth_is_valid(
            &app(),
            &socket(),
            &channel("private-chat.7"),
            None,
            &auth.auth
        ));
        assert_eq!(
            authorize(8, "private-chat.7", None),
            Err(AuthRefusal::Forbidden)
        );
    }

    #[test]
    fn only_the_two_participants_join_a_conversation_with_signed_member_data() {
        for user in [3, 9] {
            let auth = authorize(user, "presence-chat.3.9", None).unwrap();
            let data = auth.channel_data.as_deref().unwrap();
            let member = Member::from_channel_data(data).unwrap();
            assert_eq!(member.user_id, user.to_string());
            assert_eq!(member.user_info, serde_json::json!({ "id": user }));
            assert!(data.contains(&format!(r#""user_id":"{user}""#)), "{data}");
            assert!(channel_auth_is_valid(
                &app(),
                &socket(),
                &channel("presence-chat.3.9"),
                Some(data),
                &auth.auth
            ));
        }
        assert_eq!(
            authorize(4, "presence-chat.3.9", None),
            Err(AuthRefusal::Forbidden)
        );
    }

    #[test]
    fn public_channels_and_unknown_channels_are_refused() {
        assert_eq!(authorize(1, "news", None), Err(AuthRefusal::Public));
        assert_eq!(
            authorize(1, "private-orders.1", None),
            Err(AuthRefusal::Forbidden)
        );
        assert_eq!(
            authorize(1, "presence-room.1", None),
            Err(AuthRefusal::Forbidden)
        );
        // Names that look like the chat's but are not canonical belong to no one.
        assert_eq!(
            authorize(1, "private-chat.01", None),
            Err(AuthRefusal::Forbidden)
        );
        assert_eq!(
            authorize(1, "presence-chat.2.1", None),
            Err(AuthRefusal::Forbidden)
        );
    }

    /// A host that lets user 1 into `private-orders.1` and everyone into
    /// `presence-room.lobby`, and (wrongly) tries to open every chat channel and to
    /// answer a presence grant for a private channel.
    struct Host;

    impl ChannelAuthorizer for Host {
        fn authorize(&self, user: UserId, channel: &ChannelName) -> Grant {
            match channel.as_str() {
                "private-orders.1" if user == UserId::new(1) => Grant::Private,
                "presence-room.lobby" => Grant::Presence {
                    user_info: serde_json::json!({ "name": "guest" }),
                },
                "private-mismatch" => Grant::Presence {
                    user_info: Value::Null,
                },
                name if name.contains("chat.") => Grant::Private,
                _ => Grant::Refused,
            }
        }
    }

    #[test]
    fn a_host_authorizes_its_own_channels_and_cannot_widen_the_chats() {
        assert!(authorize(1, "private-orders.1", Some(&Host)).is_ok());
        assert_eq!(
            authorize(2, "private-orders.1", Some(&Host)),
            Err(AuthRefusal::Forbidden)
        );
        let lobby = authorize(5, "presence-room.lobby", Some(&Host)).unwrap();
        let member = Member::from_channel_data(lobby.channel_data.as_deref().unwrap()).unwrap();
        assert_eq!(member.user_info, serde_json::json!({ "name": "guest" }));
        assert_eq!(
            authorize(1, "private-mismatch", Some(&Host)),
            Err(AuthRefusal::Forbidden)
        );
        assert_eq!(
            authorize(8, "private-chat.7", Some(&Host)),
            Err(AuthRefusal::Forbidden)
        );
        assert_eq!(
            authorize(4, "presence-chat.3.9", Some(&Host)),
            Err(AuthRefusal::Forbidden)
        );
    }
}
