//! The inbound message rate of one connection: a token bucket refilled continuously.

use tokio::time::Instant;

use crate::config::WsConfig;

/// How many client messages a connection may still send right now.
pub(crate) struct InboundLimit {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl InboundLimit {
    pub(crate) fn new(config: &WsConfig) -> Self {
        Self {
            tokens: f64::from(config.message_burst),
            burst: f64::from(config.message_burst),
            per_second: f64::from(config.messages_per_second),
            last: Instant::now(),
        }
    }

    /// Takes one message's token; `false` when none is left.
    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
