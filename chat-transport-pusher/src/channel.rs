//! Channel names: which are valid, which need a signature, and the chat's own.

use std::fmt;

use chat_core::UserId;

/// What subscribing to a channel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-…`: a signature from the authorization endpoint.
    Private,
    /// `presence-…`: a signature over the member's `channel_data` too; members are
    /// announced to each other.
    Presence,
}

/// A valid channel name: 1 to 164 of ASCII letters, digits and `_-=@,.;`, as Pusher
/// allows.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

impl TryFrom<String> for ChannelName {
    type Error = ChannelError;

    fn try_from(name: String) -> Result<Self, ChannelError> {
        name.parse()
    }
}

impl From<ChannelName> for String {
    fn from(name: ChannelName) -> Self {
        name.0
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Empty, longer than 164 bytes, or a character outside Pusher's set.
    #[error("a channel name is 1 to 164 of A-Z, a-z, 0-9 and _-=@,.;")]
    Invalid,
    /// `private-encrypted-…` channels (end-to-end encrypted by the clients) are not
    /// offered by this server.
    #[error("encrypted channels are not supported")]
    Encrypted,
}

/// Longest channel name.
const MAX_LEN: usize = 164;

impl ChannelName {
    /// What subscribing to it takes.
    pub fn kind(&self) -> ChannelKind {
        if self.0.starts_with("private-") {
            ChannelKind::Private
        } else if self.0.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ChannelName {
    type Err = ChannelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b);
        if name.is_empty() || name.len() > MAX_LEN || !name.bytes().all(allowed) {
            return Err(ChannelError::Invalid);
        }
        if name.starts_with("private-encrypted-") {
            return Err(ChannelError::Encrypted);
        }
        Ok(Self(name.to_owned()))
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The channels the chat itself speaks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatChannel {
    /// `private-chat.{user}`: the user's messages and receipts; only that user may
    /// subscribe.
    User(UserId),
    /// `presence-chat.{a}.{b}` with `a < b`: the conversation of two users, for
    /// presence and whispers (typing); only `a` and `b` may join.
    Conversation(UserId, UserId),
}

impl ChatChannel {
    /// The chat channel `name` stands for, if any. Ids are canonical decimals (no sign,
    /// no leading zero, at least 1); a conversation names its lower id first and two
    /// different users.
    pub fn of(name: &ChannelName) -> Option<Self> {
        let name = name.as_str();
        if let Some(user) = name.strip_prefix("private-chat.") {
            return canonical_id(user).map(Self::User);
        }
        let (a, b) = name.strip_prefix("presence-chat.")?.split_once('.')?;
        let (a, b) = (canonical_id(a)?, canonical_id(b)?);
        (a.get() < b.get()).then_some(Self::Conversation(a, b))
    }

    /// The conversation channel of two different users, whichever is named first.
    pub fn conversation(a: UserId, b: UserId) -> Option<Self> {
        match a.get().cmp(&b.get()) {
            std::cmp::Ordering::Less => Some(Self::Conversation(a, b)),
            std::cmp::Ordering::Greater => Some(Self::Conversation(b, a)),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// The channel's name.
    pub fn name(&self) -> ChannelName {
        ChannelName(match self {
            Self::User(user) => format!("private-chat.{}", user.get()),
            Self::Conversation(a, b) => {
                let (low, high) = if a.get() < b.get() { (a, b) } else { (b, a) };
                format!("presence-chat.{}.{}", low.get(), high.get())
            }
        })
    }

    /// Whether `user` may subscribe, by the chat's rules.
    pub fn admits(&self, user: UserId) -> bool {
        match *self {
            Self::User(owner) => chat_core::ChatService::may_follow(user, owner),
            Self::Conversation(a, b) => chat_core::ChatService::takes_part(user, a, b),
        }
    }
}

/// A user id written the one canonical way.
fn canonical_id(text: &str) -> Option<UserId> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().map(UserId::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ChannelName {
        text.parse().unwrap()
    }

    #[test]
    fn names_follow_pushers_character_set_and_length() {
        for good in [
            "a",
            "chat",
            "private-chat.1",
            "presence-room_1-=@,.;",
            &"x".repeat(164),
        ] {
            assert!(good.parse::<ChannelName>().is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a:b", "#server", &"x".repeat(165)] {
            assert_eq!(
                bad.parse::<ChannelName>(),
                Err(ChannelError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            "private-encrypted-chat.1".parse::<ChannelName>(),
            Err(ChannelError::Encrypted)
        );
    }

    #[test]
    fn the_prefix_decides_the_kind() {
        assert_eq!(name("chat").kind(), ChannelKind::Public);
        assert_eq!(name("privatechat").kind(), ChannelKind::Public);
        assert_eq!(name("private-x").kind(), ChannelKind::Private);
        assert_eq!(name("presence-x").kind(), ChannelKind::Presence);
    }

    #[test]
    fn chat_channels_name_canonical_ids() {
        assert_eq!(
            ChatChannel::of(&name("private-chat.42")),
            Some(ChatChannel::User(UserId::new(42)))
        );
        assert_eq!(
            ChatChannel::of(&name("presence-chat.2.10")),
            Some(ChatChannel::Conversation(UserId::new(2), UserId::new(10)))
        );
        for other in [
            "private-chat.",
            "private-chat.0",
            "private-chat.042",
            "private-chat.1.2",
            "private-chat.9223372036854775808",
            "private-chats.1",
            "presence-chat.10.2",
            "presence-chat.3.3",
            "presence-chat.1",
            "presence-chat.1.2.3",
            "chat.1",
        ] {
            assert_eq!(ChatChannel::of(&name(other)), None, "{other}");
        }
    }

    #[test]
    fn names_round_trip_and_admit_only_their_users() {
        let user = ChatChannel::User(UserId::new(7));
        assert_eq!(user.name().as_str(), "private-chat.7");
        assert_eq!(ChatChannel::of(&user.name()), Some(user));
        assert!(user.admits(UserId::new(7)));
        assert!(!user.admits(UserId::new(8)));

        let pair = ChatChannel::conversation(UserId::new(9), UserId::new(3)).unwrap();
        assert_eq!(pair.name().as_str(), "presence-chat.3.9");
        assert_eq!(ChatChannel::of(&pair.name()), Some(pair));
        assert_eq!(
            ChatChannel::conversation(UserId::new(3), UserId::new(3)),
            None
        );
        assert!(pair.admits(UserId::new(3)) && pair.admits(UserId::new(9)));
        assert!(!pair.admits(UserId::new(4)));
    }
}
