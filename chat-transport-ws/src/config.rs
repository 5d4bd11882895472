//! Limits of WebSocket connections.

use std::time::Duration;

/// Limits of each WebSocket connection. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsConfig {
    /// Largest inbound message (a whole, possibly fragmented, message), in bytes;
    /// larger closes with 1009.
    pub max_message_bytes: usize,
    /// Inbound messages per second allowed on average; faster closes with 1008.
    pub messages_per_second: u32,
    /// Inbound messages allowed in a burst.
    pub message_burst: u32,
    /// How long one write may take before the connection is dropped as a slow consumer.
    pub write_timeout: Duration,
    /// How often the server pings.
    pub heartbeat_interval: Duration,
    /// Silence (no frame, pong included) after which the connection closes with 4002.
    pub idle_timeout: Duration,
    /// Connections one user may hold at once; more are refused with 429.
    pub max_connections_per_user: usize,
    /// Size of each connection's read buffer, in bytes. The WebSocket layer keeps all of
    /// it resident, so it is a large part of an idle connection's memory; frames larger
    /// than it still arrive whole (the buffer grows for them).
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write is flushed (0: every frame at once).
    pub write_buffer_bytes: usize,
    /// Most bytes a connection may have waiting to be written.
    pub max_write_buffer_bytes: usize,
    /// Messages loaded per store query while sending a backlog.
    pub backlog_batch: u32,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            messages_per_second: 20,
            message_burst: 40,
            write_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections_per_user: 16,
            read_buffer_bytes: 1024,
            write_buffer_bytes: 0,
            max_write_buffer_bytes: 1024 * 1024,
            backlog_batch: 500,
        }
    }
}

impl WsConfig {
    /// The WebSocket layer's settings for these limits: message and frame size, and
    /// small buffers so an idle connection stays small.
    pub fn websocket_config(&self) -> tungstenite::protocol::WebSocketConfig {
        tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_bytes)
            .write_buffer_size(self.write_buffer_bytes)
            .max_write_buffer_size(self.max_write_buffer_bytes)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }

    /// Sets the largest inbound message.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets the inbound rate and burst.
    pub fn with_inbound_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.messages_per_second = per_second.max(1);
        self.message_burst = burst.max(1);
        self
    }

    /// Sets the heartbeat interval and idle timeout.
    pub fn with_heartbeat(mut self, interval: Duration, idle_timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the connections one user may hold.
    pub fn with_max_connections_per_user(mut self, connections: usize) -> Self {
        self.max_connections_per_user = connections.max(1);
        self
    }

    /// Sets the write timeout.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
}

/// Close codes the server uses, for client authors (see `docs/websocket-protocol.md`).
pub mod close_code {
    /// The server is shutting down; reconnect with `after_id` later.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Too many inbound messages per second.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// An inbound message larger than the limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The store failed while sending the backlog; reconnect later.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The token expired; reconnect with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// No frame (not even a pong) within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4002;
    /// The connection fell too far behind; reconnect with `after_id`.
    pub const SLOW_CONSUMER: u16 = 4008;
}
