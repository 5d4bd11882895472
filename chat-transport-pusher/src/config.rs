//! Limits of Pusher connections and of the HTTP API.

use std::time::Duration;

use chat_transport_ws::WsConfig;

use crate::{EventNamespace, TriggerLimits};

/// Limits and names of the Pusher side. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PusherConfig {
    /// The WebSocket limits shared with the native protocol: largest inbound message,
    /// inbound rate, write timeout (slow consumers), connections per user, buffers.
    pub websocket: WsConfig,
    /// Silence after which the client pings (told to it in
    /// `pusher:connection_established`) and the server pings a silent client.
    pub activity_timeout: Duration,
    /// How long the server waits for an answer to its ping before closing with 4201.
    pub pong_timeout: Duration,
    /// Distinct members one presence channel may hold.
    pub max_presence_members: usize,
    /// Channels one connection may join at once; more are refused with a
    /// `pusher:subscription_error`.
    pub max_channels_per_connection: usize,
    /// Client events (`client-…`) one connection may send per second; more are
    /// refused with a `pusher:error` 4301.
    pub client_events_per_second: u32,
    /// Frames waiting to be written to one connection before it counts as too far
    /// behind and is closed (4100, so it reconnects after a back-off).
    pub outbox_frames: usize,
    /// Limits of events published through the HTTP API.
    pub trigger: TriggerLimits,
    /// Namespace of the chat's events (`App\Events` by default, as Laravel's).
    pub namespace: EventNamespace,
    /// How far an HTTP API request's `auth_timestamp` may be from the server's clock.
    pub timestamp_window: Duration,
}

impl Default for PusherConfig {
    fn default() -> Self {
        Self {
            websocket: WsConfig::default(),
            activity_timeout: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            max_presence_members: 100,
            max_channels_per_connection: 100,
            client_events_per_second: 10,
            outbox_frames: 256,
            trigger: TriggerLimits::default(),
            namespace: EventNamespace::default(),
            timestamp_window: Duration::from_secs(600),
        }
    }
}

impl PusherConfig {
    /// Sets the WebSocket limits shared with the native protocol.
    pub fn with_websocket(mut self, websocket: WsConfig) -> Self {
        self.websocket = websocket;
        self
    }

    /// Sets the activity timeout (at least one second) and the pong timeout.
    pub fn with_activity_timeout(mut self, activity: Duration, pong: Duration) -> Self {
        self.activity_timeout = activity.max(Duration::from_secs(1));
        self.pong_timeout = pong;
        self
    }

    /// Sets the members one presence channel may hold.
    pub fn with_max_presence_members(mut self, members: usize) -> Self {
        self.max_presence_members = members.max(1);
        self
    }

    /// Sets the client events one connection may send per second.
    pub fn with_client_events_per_second(mut self, events: u32) -> Self {
        self.client_events_per_second = events.max(1);
        self
    }

    /// Sets the limits of events published through the HTTP API.
    pub fn with_trigger_limits(mut self, limits: TriggerLimits) -> Self {
        self.trigger = limits;
        self
    }

    /// Sets the namespace of the chat's events.
    pub fn with_namespace(mut self, namespace: EventNamespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The activity timeout in whole seconds, as `pusher:connection_established` says
    /// it (never zero: pusher-js needs a number above zero).
    pub(crate) fn activity_timeout_secs(&self) -> u32 {
        u32::try_from(self.activity_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}
