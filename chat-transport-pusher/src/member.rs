//! Presence members: the signed `channel_data` a member joins with, and the payloads
//! that announce members to each other.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A presence channel member, as its signed `channel_data` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The member's id: a string, or a number written as one (Laravel's Pusher library
    /// sends a string; other servers' clients may send a number).
    pub user_id: String,
    /// What the other members are told about it (`null` when not given).
    pub user_info: Value,
}

/// Why `channel_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel_data must be a JSON object with a string or integer \"user_id\"")]
pub struct MemberError;

#[derive(Deserialize)]
struct ChannelData {
    user_id: Value,
    #[serde(default)]
    user_info: Value,
}

/// Longest `channel_data`, as Pusher limits it.
pub const MAX_CHANNEL_DATA_BYTES: usize = 10 * 1024;

impl Member {
    /// The member a presence subscription's `channel_data` names.
    pub fn from_channel_data(channel_data: &str) -> Result<Self, MemberError> {
        if channel_data.len() > MAX_CHANNEL_DATA_BYTES {
            return Err(MemberError);
        }
        let data: ChannelData = serde_json::from_str(channel_data).map_err(|_| MemberError)?;
        let user_id = match data.user_id {
            Value::String(id) if !id.is_empty() => id,
            Value::Number(id) if id.is_i64() || id.is_u64() => id.to_string(),
            _ => return Err(MemberError),
        };
        Ok(Self {
            user_id,
            user_info: data.user_info,
        })
    }

    /// `pusher_internal:member_added` data.
    pub fn added(&self) -> String {
        serde_json::json!({ "user_id": self.user_id, "user_info": self.user_info }).to_string()
    }

    /// `pusher_internal:member_removed` data.
    pub fn removed(&self) -> String {
        serde_json::json!({ "user_id": self.user_id }).to_string()
    }
}

/// `pusher_internal:subscription_succeeded` data of a presence channel: every member
/// once, by id, with its info.
pub fn presence_succeeded<'a>(members: impl IntoIterator<Item = &'a Member>) -> String {
    let mut ids = Vec::new();
    let mut hash = Map::new();
    for member in members {
        if !hash.contains_key(&member.user_id) {
            ids.push(Value::String(member.user_id.clone()));
            hash.insert(member.user_id.clone(), member.user_info.clone());
        }
    }
    serde_json::json!({ "presence": { "count": ids.len(), "ids": ids, "hash": hash } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_strings_or_integers() {
        let member = Member::from_channel_data(r#"{"user_id":"1","user_info":{"id":1}}"#).unwrap();
        assert_eq!(member.user_id, "1");
        assert_eq!(member.user_info, serde_json::json!({"id": 1}));
        assert_eq!(
            Member::from_channel_data(r#"{"user_id":42}"#)
                .unwrap()
                .user_id,
            "42"
        );
        assert_eq!(
            Member::from_channel_data(r#"{"user_id":42}"#)
                .unwrap()
                .user_info,
            Value::Null
        );
        for bad in [
            "",
            "[]",
            r#"{"user_info":{}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":1.5}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":{"a":1}}"#,
        ] {
            assert_eq!(Member::from_channel_data(bad), Err(MemberError), "{bad}");
        }
        let huge = format!(
            r#"{{"user_id":"1","user_info":"{}"}}"#,
            "x".repeat(MAX_CHANNEL_DATA_BYTES)
        );
        assert_eq!(Member::from_channel_data(&huge), Err(MemberError));
    }

    #[test]
    fn presence_payloads_list_each_member_once() {
        let one = Member::from_channel_data(r#"{"user_id":"1","user_info":{"id":1}}"#).unwrap();
        let two = Member::from_channel_data(r#"{"user_id":"2","user_info":{"id":2}}"#).unwrap();
        let data: Value = serde_json::from_str(&presence_succeeded([&one, &two, &one])).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"presence": {"count": 2, "ids": ["1", "2"], "hash": {"1": {"id": 1}, "2": {"id": 2}}}})
        );
        let added: Value = serde_json::from_str(&one.added()).unwrap();
        assert_eq!(
            added,
            serde_json::json!({"user_id": "1", "user_info": {"id": 1}})
        );
        let removed: Value = serde_json::from_str(&two.removed()).unwrap();
        assert_eq!(removed, serde_json::json!({"user_id": "2"}));
    }
}
