//! The Pusher HTTP API a back end publishes through: events, batches, channel
//! queries and terminating a user's connections, each request signed as Pusher signs
//! it.

use serde_json::{Map, Value, json};

use crate::endpoint::PusherEndpoint;
use crate::protocol::code;
use crate::signature::{ApiRequest, verify_api_request};
use crate::{ChannelKind, ChannelName, Trigger, parse_batch, parse_event};

/// A request to the HTTP API as it arrived: method, the whole path
/// (`/apps/{id}/events`), the raw query string, and the body.
#[derive(Debug, Clone, Copy)]
pub struct ApiCall<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path as the client signed it.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// The HTTP API's answer: a status and a JSON body (a plain message for errors, as
/// Pusher answers them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// Whether the body is JSON (otherwise plain text).
    pub json: bool,
}

impl ApiResponse {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            json: true,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: message.into(),
            json: false,
        }
    }
}

impl PusherEndpoint {
    /// Answers one HTTP API request, checked against the app's credentials at `now`
    /// (Unix seconds).
    pub async fn handle_api(&self, call: &ApiCall<'_>, now: i64) -> ApiResponse {
        let Some(rest) = call.path.strip_prefix("/apps/") else {
            return ApiResponse::error(404, "not found");
        };
        let (id, route) = rest.split_once('/').unwrap_or((rest, ""));
        if id != self.app().id() {
            return ApiResponse::error(404, "unknown app id");
        }
        let query: Vec<(String, String)> = form_urlencoded::parse(call.query.as_bytes())
            .into_owned()
            .collect();
        let request = ApiRequest {
            method: call.method,
            path: call.path,
            query: &query,
            body: call.body,
        };
        let window = self.config().timestamp_window.as_secs();
        if let Err(error) = verify_api_request(self.app(), &request, now, window) {
            return ApiResponse::error(401, error.to_string());
        }
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let segments: Vec<&str> = route.split('/').collect();
        match (call.method, segments.as_slice()) {
            ("POST", ["events"]) => self.trigger(call.body).await,
            ("POST", ["batch_events"]) => self.trigger_batch(call.body).await,
            ("GET", ["channels"]) => self.channel_list(param("filter_by_prefix"), param("info")),
            ("GET", ["channels", name]) => {
                with_channel(name, |channel| self.channel_info(&channel, param("info")))
            }
            ("GET", ["channels", name, "users"]) => {
                with_channel(name, |channel| self.channel_users(&channel))
            }
            ("POST", ["users", user, "terminate_connections"]) if !user.is_empty() => {
                self.terminate(user, code::OVER_LIMIT).await;
                ApiResponse::ok(json!({}))
            }
            (
                _,
                ["events" | "batch_events" | "channels"]
                | ["channels", _]
                | ["channels", _, "users"]
                | ["users", _, "terminate_connections"],
            ) => ApiResponse::error(405, "method not allowed"),
            _ => ApiResponse::error(404, "not found"),
        }
    }

    async fn trigger(&self, body: &[u8]) -> ApiResponse {
        match parse_event(body, &self.config().trigger) {
            Ok(trigger) => {
                self.publish_trigger(&trigger).await;
                ApiResponse::ok(json!({}))
            }
            Err(error) => ApiResponse::error(error.status(), error.to_string()),
        }
    }

    async fn trigger_batch(&self, body: &[u8]) -> ApiResponse {
        match parse_batch(body, &self.config().trigger) {
            Ok(batch) => {
                for trigger in &batch {
                    self.publish_trigger(trigger).await;
                }
                ApiResponse::ok(json!({ "batch": vec![json!({}); batch.len()] }))
            }
            Err(error) => ApiResponse::error(error.status(), error.to_string()),
        }
    }

    /// Publishes one event to each of its channels.
    async fn publish_trigger(&self, trigger: &Trigger) {
        for channel in &trigger.channels {
            self.publish(
                channel,
                &trigger.name,
                &trigger.data,
                trigger.socket_id.as_ref(),
            )
            .await;
        }
    }

    fn channel_list(&self, prefix: Option<&str>, info: Option<&str>) -> ApiResponse {
        let prefix = prefix.unwrap_or("");
        let wants_users = attributes(info).any(|a| a == "user_count");
        if wants_users && !prefix.starts_with("presence-") {
            return ApiResponse::error(
                400,
                "user_count is only for presence channels: filter_by_prefix=presence-",
            );
        }
        let mut channels = Map::new();
        for (name, occupancy) in self.channels().occupied(prefix) {
            let entry = if wants_users {
                json!({ "user_count": occupancy.user_count })
            } else {
                json!({})
            };
            channels.insert(name.as_str().to_owned(), entry);
        }
        ApiResponse::ok(json!({ "channels": channels }))
    }

    fn channel_info(&self, channel: &ChannelName, info: Option<&str>) -> ApiResponse {
        let occupancy = self.channels().info(channel);
        let mut body = Map::new();
        let occupied = occupancy.subscription_count > 0 || occupancy.user_count > 0;
        body.insert("occupied".into(), json!(occupied));
        for attribute in attributes(info) {
            match attribute {
                "subscription_count" => {
                    body.insert(attribute.into(), json!(occupancy.subscription_count));
                }
                "user_count" if channel.kind() == ChannelKind::Presence => {
                    body.insert(attribute.into(), json!(occupancy.user_count));
                }
                "user_count" => {
                    return ApiResponse::error(400, "user_count is only for presence channels");
                }
                other => return ApiResponse::error(400, format!("unknown info attribute {other}")),
            }
        }
        ApiResponse::ok(Value::Object(body))
    }

    fn channel_users(&self, channel: &ChannelName) -> ApiResponse {
        if channel.kind() != ChannelKind::Presence {
            return ApiResponse::error(400, "users are only listed for presence channels");
        }
        let users: Vec<Value> = self
            .channels()
            .members(channel)
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        ApiResponse::ok(json!({ "users": users }))
    }
}

fn attributes(info: Option<&str>) -> impl Iterator<Item = &str> {
    info.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
}

fn with_channel(name: &str, answer: impl FnOnce(ChannelName) -> ApiResponse) -> ApiResponse {
    match name.parse::<ChannelName>() {
        Ok(channel) => answer(channel),
        Err(error) => ApiResponse::error(400, error.to_string()),
    }
}
