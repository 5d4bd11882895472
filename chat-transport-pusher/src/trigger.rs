//! Events published through the HTTP API (`POST /apps/{id}/events` and
//! `/batch_events`): their bodies, checked against Pusher's limits.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{ChannelError, ChannelName, SocketId};

/// An event to publish, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The event name, forwarded as given.
    pub name: String,
    /// The channels it goes to, each once.
    pub channels: Vec<ChannelName>,
    /// The data, a string forwarded verbatim (a Laravel app sends JSON in it).
    pub data: String,
    /// A connection left out (the one whose action caused the event).
    pub socket_id: Option<SocketId>,
}

/// Pusher's limits on published events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerLimits {
    /// Most channels one event goes to.
    pub max_channels: usize,
    /// Largest `data`, in bytes.
    pub max_data_bytes: usize,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Longest event name, in bytes.
    pub max_name_bytes: usize,
}

impl Default for TriggerLimits {
    /// Pusher's own: 100 channels, 10 KiB of data, 10 events a batch, 200-byte names.
    fn default() -> Self {
        Self {
            max_channels: 100,
            max_data_bytes: 10 * 1024,
            max_batch: 10,
            max_name_bytes: 200,
        }
    }
}

/// Why a body was refused: 413 for data over the limit, 400 for anything else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// Not the JSON Pusher expects; says what is wrong.
    #[error("{0}")]
    Malformed(String),
    /// No channel, or more than the limit.
    #[error("an event goes to 1 to {max} channels")]
    Channels {
        /// The limit.
        max: usize,
    },
    /// A channel name is not valid.
    #[error("channel {name:?}: {error}")]
    Channel {
        /// The name given.
        name: String,
        /// What is wrong with it.
        error: ChannelError,
    },
    /// An empty event name, or one over the limit.
    #[error("an event name is 1 to {max} bytes")]
    Name {
        /// The limit.
        max: usize,
    },
    /// `data` over the limit.
    #[error("event data is at most {max} bytes")]
    DataTooLarge {
        /// The limit.
        max: usize,
    },
    /// `socket_id` is not a socket id.
    #[error("socket_id is not a socket id such as 1234.5678")]
    SocketId,
    /// No event, or more than the limit, in a batch.
    #[error("a batch holds 1 to {max} events")]
    Batch {
        /// The limit.
        max: usize,
    },
}

impl TriggerError {
    /// The HTTP status Pusher answers it with.
    pub fn status(&self) -> u16 {
        match self {
            Self::DataTooLarge { .. } => 413,
            _ => 400,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody<'a> {
    name: String,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    /// Which channel attributes to answer with; accepted and not used.
    #[serde(default, rename = "info")]
    _info: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<EventBody<'a>>,
}

fn checked(body: EventBody<'_>, limits: &TriggerLimits) -> Result<Trigger, TriggerError> {
    if body.name.is_empty() || body.name.len() > limits.max_name_bytes {
        return Err(TriggerError::Name {
            max: limits.max_name_bytes,
        });
    }
    // `data` is a string in Pusher's API; other JSON is taken as its text, as Pusher's
    // libraries would have encoded it.
    let data = serde_json::from_str::<String>(body.data.get())
        .unwrap_or_else(|_| body.data.get().to_owned());
    if data.len() > limits.max_data_bytes {
        return Err(TriggerError::DataTooLarge {
            max: limits.max_data_bytes,
        });
    }
    let names = match (body.channels, body.channel) {
        (Some(names), None) => names,
        (None, Some(name)) => vec![name],
        (Some(_), Some(_)) => {
            return Err(TriggerError::Malformed(
                "give either channels or channel, not both".to_owned(),
            ));
        }
        (None, None) => Vec::new(),
    };
    if names.is_empty() || names.len() > limits.max_channels {
        return Err(TriggerError::Channels {
            max: limits.max_channels,
        });
    }
    let mut channels: Vec<ChannelName> = Vec::with_capacity(names.len());
    for name in names {
        let channel = name.parse().map_err(|error| TriggerError::Channel {
            name: name.clone(),
            error,
        })?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    let socket_id = body
        .socket_id
        .map(|id| id.parse().map_err(|_| TriggerError::SocketId))
        .transpose()?;
    Ok(Trigger {
        name: body.name,
        channels,
        data,
        socket_id,
    })
}

fn malformed(error: &serde_json::Error) -> TriggerError {
    TriggerError::Malformed(format!("the body is not a valid event: {error}"))
}

/// The event of a `POST /apps/{id}/events` body.
pub fn parse_event(body: &[u8], limits: &TriggerLimits) -> Result<Trigger, TriggerError> {
    let body: EventBody<'_> = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    checked(body, limits)
}

/// The events of a `POST /apps/{id}/batch_events` body, in order.
pub fn parse_batch(body: &[u8], limits: &TriggerLimits) -> Result<Vec<Trigger>, TriggerError> {
    let body: BatchBody<'_> = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if body.batch.is_empty() || body.batch.len() > limits.max_batch {
        return Err(TriggerError::Batch {
            max: limits.max_batch,
        });
    }
    body.batch
        .into_iter()
        .map(|event| checked(event, limits))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> Result<Trigger, TriggerError> {
        parse_event(body.as_bytes(), &TriggerLimits::default())
    }

    #[test]
    fn an_event_as_laravel_sends_it() {
        let trigger = event(
            r#"{"name":"App\\Events\\OrderShipped","channels":["private-orders.1","orders"],"data":"{\"id\":1}","socket_id":"1.2"}"#,
        )
        .unwrap();
        assert_eq!(trigger.name, "App\\Events\\OrderShipped");
        assert_eq!(trigger.data, r#"{"id":1}"#);
        let names: Vec<&str> = trigger.channels.iter().map(ChannelName::as_str).collect();
        assert_eq!(names, ["private-orders.1", "orders"]);
        assert_eq!(trigger.socket_id, Some("1.2".parse().unwrap()));

        let single = event(r#"{"name":"e","channel":"news","data":"x"}"#).unwrap();
        assert_eq!(single.channels.len(), 1);
        assert_eq!(single.socket_id, None);
        let repeated = event(r#"{"name":"e","channels":["a","a"],"data":"x"}"#).unwrap();
        assert_eq!(repeated.channels.len(), 1);
        let object = event(r#"{"name":"e","channel":"a","data":{"k":1}}"#).unwrap();
        assert_eq!(object.data, r#"{"k":1}"#);
    }

    #[test]
    fn limits_hold_and_each_refusal_says_why() {
        let limits = TriggerLimits::default();
        let hundred: Vec<String> = (0..100).map(|n| format!("\"c{n}\"")).collect();
        let body = format!(
            r#"{{"name":"e","channels":[{}],"data":"x"}}"#,
            hundred.join(",")
        );
        assert!(event(&body).is_ok());
        let body = format!(
            r#"{{"name":"e","channels":[{},"c100"],"data":"x"}}"#,
            hundred.join(",")
        );
        assert_eq!(event(&body), Err(TriggerError::Channels { max: 100 }));
        assert_eq!(
            event(r#"{"name":"e","channels":[],"data":"x"}"#),
            Err(TriggerError::Channels { max: 100 })
        );
        assert_eq!(
            event(r#"{"name":"e","data":"x"}"#),
            Err(TriggerError::Channels { max: 100 })
        );

        let fits = format!(
            r#"{{"name":"e","channel":"a","data":"{}"}}"#,
            "x".repeat(limits.max_data_bytes)
        );
        assert!(event(&fits).is_ok());
        let large = format!(
            r#"{{"name":"e","channel":"a","data":"{}"}}"#,
            "x".repeat(limits.max_data_bytes + 1)
        );
        let refused = event(&large).unwrap_err();
        assert_eq!(refused, TriggerError::DataTooLarge { max: 10 * 1024 });
        assert_eq!(refused.status(), 413);

        let long_name = format!(
            r#"{{"name":"{}","channel":"a","data":"x"}}"#,
            "n".repeat(201)
        );
        assert_eq!(event(&long_name), Err(TriggerError::Name { max: 200 }));
        assert_eq!(
            event(r#"{"name":"","channel":"a","data":"x"}"#),
            Err(TriggerError::Name { max: 200 })
        );
        assert!(matches!(
            event(r#"{"name":"e","channel":"a b","data":"x"}"#),
            Err(TriggerError::Channel {
                error: ChannelError::Invalid,
                ..
            })
        ));
        assert_eq!(
            event(r#"{"name":"e","channel":"a","data":"x","socket_id":"x"}"#),
            Err(TriggerError::SocketId)
        );
        for bad in [
            "",
            "[]",
            r#"{"channel":"a","data":"x"}"#,
            r#"{"name":"e","channel":"a"}"#,
            r#"{"name":"e","channel":"a","data":"x","extra":1}"#,
            r#"{"name":"e","channel":"a","channels":["b"],"data":"x"}"#,
        ] {
            let error = event(bad).unwrap_err();
            assert!(
                matches!(error, TriggerError::Malformed(_)),
                "{bad}: {error:?}"
            );
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn batches_hold_one_to_ten_events_each_checked() {
        let limits = TriggerLimits::default();
        let one = r#"{"name":"e","channel":"a","data":"x"}"#;
        let batch = |n: usize| format!(r#"{{"batch":[{}]}}"#, vec![one; n].join(","));
        assert_eq!(
            parse_batch(batch(10).as_bytes(), &limits).unwrap().len(),
            10
        );
        assert_eq!(
            parse_batch(batch(11).as_bytes(), &limits),
            Err(TriggerError::Batch { max: 10 })
        );
        assert_eq!(
            parse_batch(batch(0).as_bytes(), &limits),
            Err(TriggerError::Batch { max: 10 })
        );
        let with_bad = r#"{"batch":[{"name":"e","channel":"a","data":"x"},{"name":"e","channel":"a b","data":"x"}]}"#;
        assert!(matches!(
            parse_batch(with_bad.as_bytes(), &limits),
            Err(TriggerError::Channel { .. })
        ));
    }
}
