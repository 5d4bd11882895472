//! A shared rate limiter with a local one to fall back on.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;

use super::Fallback;
use crate::error::Error;
use crate::ports::{RateDecision, RateLimiter};

/// Asks `shared` (a limiter every node shares, on Redis say) and, while it answers
/// `Error::Unavailable`, `local` instead: limits stay in force on each node's own and
/// a request is never failed because the shared backend is away. The switch is logged
/// once each way, and every check answered locally is counted
/// ([`fallbacks`](Fallback::fallbacks)).
pub type FallbackRateLimiter = Fallback<dyn RateLimiter>;

impl Fallback<dyn RateLimiter> {
    /// `shared`, with `local` while `shared` is unavailable.
    pub fn new(shared: Arc<dyn RateLimiter>, local: Arc<dyn RateLimiter>) -> Self {
        Self::with_messages(
            shared,
            local,
            "the shared rate limiter is unavailable; limiting on this node alone",
            "the shared rate limiter answers again",
        )
    }
}

#[async_trait]
impl RateLimiter for Fallback<dyn RateLimiter> {
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error> {
        match self.switch.ask(self.shared.check(key, cost)).await {
            Some(answer) => answer,
            None => self.local.check(key, cost).await,
        }
    }
}
