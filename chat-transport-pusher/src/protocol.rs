//! Pusher protocol 7 frames: what clients send and what the server writes.
//!
//! Every frame is a JSON object with `event`, optional `channel`, and `data`. The
//! server writes `data` as a JSON *string* (pusher-js decodes it once more); clients
//! send `data` as an object for `pusher:` events and as any JSON value for client
//! events, which are relayed as they came.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ChannelError, ChannelName};

/// The protocol version this server speaks (`?protocol=7` in the connection URL).
pub const PROTOCOL_VERSION: u32 = 7;

/// Pusher's error and close codes. pusher-js decides by the range: 4000–4099 it does
/// not reconnect, 4100–4199 it reconnects after backing off, 4200–4299 at once.
pub mod code {
    /// The key in the URL is not this server's app.
    pub const APP_DOES_NOT_EXIST: u16 = 4001;
    /// The user holds as many connections as allowed.
    pub const OVER_CONNECTION_QUOTA: u16 = 4004;
    /// The protocol version in the URL is not 7.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// No protocol version in the URL.
    pub const NO_PROTOCOL_VERSION: u16 = 4008;
    /// Pusher's "connection is unauthorized", used for a client that broke the
    /// connection's limits (a frame over the size limit, a flood): pusher-js does not
    /// reconnect it unchanged.
    pub const OVER_LIMIT: u16 = 4009;
    /// The server cannot take the connection now (a store outage, a client that
    /// fell behind): reconnect after backing off.
    pub const OVER_CAPACITY: u16 = 4100;
    /// Reconnect at once (the server is shutting down).
    pub const RECONNECT: u16 = 4200;
    /// No `pusher:pong` came after the server's ping.
    pub const PONG_NOT_RECEIVED: u16 = 4201;
    /// A client event over the connection's rate (an error; the connection stays).
    pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
}

/// A frame from a client, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `pusher:subscribe`: join `channel`, with the authorization string of a private
    /// or presence channel and, for presence, the signed member data.
    Subscribe {
        /// The channel to join.
        channel: ChannelName,
        /// `key:signature`, for private and presence channels.
        auth: Option<String>,
        /// The presence member's data: a JSON string, signed exactly as sent.
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`: leave `channel`.
    Unsubscribe {
        /// The channel to leave.
        channel: ChannelName,
    },
    /// `pusher:ping`: answered with `pusher:pong`.
    Ping,
    /// `pusher:pong`: the answer to the server's ping.
    Pong,
    /// `client-…`: an event for the other subscribers of a private or presence
    /// channel, relayed with its data as sent.
    ClientEvent {
        /// The event name, starting with `client-`.
        event: String,
        /// The channel it is for.
        channel: ChannelName,
        /// Its data, verbatim JSON.
        data: String,
    },
}

/// Why a client frame was refused; each is answered with a `pusher:error` and the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a JSON object with a string `event`.
    #[error("a frame is a JSON object with a string \"event\"")]
    Malformed,
    /// A `pusher:` event this server does not know.
    #[error("unknown event {0}")]
    UnknownEvent(String),
    /// A `pusher:subscribe` or `pusher:unsubscribe` without a channel, or a client
    /// event without one.
    #[error("the event needs a channel")]
    MissingChannel,
    /// The channel name is not valid.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A field that must be a string is not one.
    #[error("{0} must be a string")]
    NotAString(&'static str),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    event: String,
    #[serde(default, borrow)]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SubscribeData<'a> {
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow)]
    auth: Option<&'a RawValue>,
    #[serde(default, borrow)]
    channel_data: Option<&'a RawValue>,
}

/// The string a raw JSON value holds, if it is a string; `None` for `null`.
fn string(value: Option<&RawValue>, field: &'static str) -> Result<Option<String>, FrameError> {
    match value {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map(Some)
            .map_err(|_| FrameError::NotAString(field)),
    }
}

fn channel(value: Option<&RawValue>) -> Result<ChannelName, FrameError> {
    Ok(string(value, "channel")?
        .ok_or(FrameError::MissingChannel)?
        .parse()?)
}

impl ClientFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let frame: RawFrame<'_> = serde_json::from_str(text).map_err(|_| FrameError::Malformed)?;
        match frame.event.as_str() {
            "pusher:ping" => Ok(Self::Ping),
            "pusher:pong" => Ok(Self::Pong),
            "pusher:subscribe" | "pusher:unsubscribe" => {
                let data: SubscribeData<'_> = frame
                    .data
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
                    .ok_or(FrameError::MissingChannel)?;
                let channel = channel(data.channel)?;
                if frame.event == "pusher:unsubscribe" {
                    return Ok(Self::Unsubscribe { channel });
                }
                Ok(Self::Subscribe {
                    channel,
                    auth: string(data.auth, "auth")?,
                    channel_data: string(data.channel_data, "channel_data")?,
                })
            }
            event if event.starts_with("client-") => Ok(Self::ClientEvent {
                channel: channel(frame.channel)?,
                data: frame
                    .data
                    .map_or_else(|| "null".to_owned(), |raw| raw.get().to_owned()),
                event: frame.event,
            }),
            _ => Err(FrameError::UnknownEvent(frame.event)),
        }
    }
}

#[derive(Serialize)]
struct ServerFrame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
}

/// A server frame: `data` is written as a JSON string holding `data` (already JSON, or
/// any text an HTTP API caller published, forwarded verbatim).
pub fn frame(event: &str, channel: Option<&str>, data: &str) -> String {
    // Serializing a struct of strings cannot fail.
    serde_json::to_string(&ServerFrame {
        event,
        channel,
        data,
    })
    .unwrap_or_default()
}

/// `pusher:connection_established` for `socket_id`, asking the client to ping after
/// `activity_timeout` seconds of silence.
pub fn connection_established(socket_id: &str, activity_timeout: u32) -> String {
    let data = serde_json::json!({ "socket_id": socket_id, "activity_timeout": activity_timeout });
    frame("pusher:connection_established", None, &data.to_string())
}

/// `pusher:error` with a Pusher error `code` (4000–4299 close codes, 4301 for a client
/// event over its rate) and a message for people.
pub fn error(code: u16, message: &str) -> String {
    let data = serde_json::json!({ "code": code, "message": message });
    frame("pusher:error", None, &data.to_string())
}

/// `pusher:subscription_error` for `channel`, so Echo's `.error()` fires; the
/// connection and its other channels stay.
pub fn subscription_error(channel: &str, status: u16, message: &str) -> String {
    let data = serde_json::json!({ "type": "AuthError", "error": message, "status": status });
    frame(
        "pusher:subscription_error",
        Some(channel),
        &data.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ChannelName {
        text.parse().unwrap()
    }

    #[test]
    fn subscribe_frames_parse_with_their_signatures() {
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:subscribe","data":{"channel":"chat"}}"#),
            Ok(ClientFrame::Subscribe {
                channel: name("chat"),
                auth: None,
                channel_data: None
            })
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"event":"pusher:subscribe","data":{"channel":"presence-chat.1.2","auth":"k:s","channel_data":"{\"user_id\":\"1\"}"}}"#
            ),
            Ok(ClientFrame::Subscribe {
                channel: name("presence-chat.1.2"),
                auth: Some("k:s".to_owned()),
                channel_data: Some(r#"{"user_id":"1"}"#.to_owned()),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"chat"}}"#),
            Ok(ClientFrame::Unsubscribe {
                channel: name("chat")
            })
        );
    }

    #[test]
    fn pings_pongs_and_client_events_parse() {
        let client_event = ClientFrame::ClientEvent {
            event: "client-typing".to_owned(),
            channel: name("presence-chat.1.2"),
            data: r#"{"typing": true}"#.to_owned(),
        };
        for (text, parsed) in [
            (r#"{"event":"pusher:ping","data":{}}"#, ClientFrame::Ping),
            (r#"{"event":"pusher:pong"}"#, ClientFrame::Pong),
            (
                r#"{"event":"client-typing","channel":"presence-chat.1.2","data":{"typing": true}}"#,
                client_event,
            ),
        ] {
            assert_eq!(ClientFrame::parse(text), Ok(parsed), "{text}");
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        for (text, error) in [
            ("not json", FrameError::Malformed),
            (r#"{"data":{}}"#, FrameError::Malformed),
            (r#"{"event":7}"#, FrameError::Malformed),
            (
                r#"{"event":"pusher:signin","data":{}}"#,
                FrameError::UnknownEvent("pusher:signin".to_owned()),
            ),
            (
                r#"{"event":"pusher:subscribe","data":{}}"#,
                FrameError::MissingChannel,
            ),
            (
                r#"{"event":"pusher:subscribe"}"#,
                FrameError::MissingChannel,
            ),
            (
                r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#,
                FrameError::Channel(ChannelError::Invalid),
            ),
            (
                r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":5}}"#,
                FrameError::NotAString("auth"),
            ),
            (
                r#"{"event":"client-x","data":{}}"#,
                FrameError::MissingChannel,
            ),
        ] {
            assert_eq!(ClientFrame::parse(text), Err(error), "{text}");
        }
    }

    #[test]
    fn server_frames_carry_data_as_a_json_string() {
        let established: serde_json::Value =
            serde_json::from_str(&connection_established("1.2", 30)).unwrap();
        assert_eq!(established["event"], "pusher:connection_established");
        let data: serde_json::Value =
            serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"socket_id": "1.2", "activity_timeout": 30})
        );

        let event: serde_json::Value = serde_json::from_str(&frame(
            "App\\Events\\MessageSent",
            Some("private-chat.1"),
            r#"{"a":1}"#,
        ))
        .unwrap();
        assert_eq!(event["channel"], "private-chat.1");
        assert_eq!(event["data"], r#"{"a":1}"#);
    }
}
