//! The inbound message rate of one connection: a token bucket refilled continuously.

use tokio::time::Instant;

use crate::config::WsConfig;

/// How many client messages a connection may still send right now.
#[derive(Debug)]
pub struct InboundLimit {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl InboundLimit {
    /// The limit of `config`: its inbound rate and burst.
    pub fn new(config: &WsConfig) -> Self {
        Self::with_rate(config.messages_per_second, config.message_burst)
    }

    /// `per_second` messages on average, `burst` at once.
    pub fn with_rate(per_second: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst.max(1)),
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes one message's token; `false` when none is left.
    pub fn allow(&mut self) -> bool {
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
