//! A shared rate limiter with a local one to fall back on.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;

use super::Switch;
use crate::error::Error;
use crate::ports::{RateDecision, RateLimiter};

/// Asks `shared` (a limiter every node shares, on Redis say) and, while it answers
/// `Error::Unavailable`, `local` instead: limits stay in force on each node's own and
/// a request is never failed because the shared backend is away. The switch is logged
/// once each way, and every check answered locally is counted ([`fallbacks`]).
///
/// [`fallbacks`]: FallbackRateLimiter::fallbacks
pub struct FallbackRateLimiter {
    shared: Arc<dyn RateLimiter>,
    local: Arc<dyn RateLimiter>,
    switch: Switch,
}

impl std::fmt::Debug for FallbackRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackRateLimiter")
            .field("falling_back", &self.falling_back())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl FallbackRateLimiter {
    /// `shared`, with `local` while `shared` is unavailable.
    pub fn new(shared: Arc<dyn RateLimiter>, local: Arc<dyn RateLimiter>) -> Self {
        Self {
            shared,
            local,
            switch: Switch::new(
                "the shared rate limiter is unavailable; limiting on this node alone",
                "the shared rate limiter answers again",
            ),
        }
    }

    /// After the shared limiter was found unavailable, answers locally for `wait`
    /// before asking it again ([`FALLBACK_RETRY_AFTER`] unless set), so checks are not
    /// each held up by an unreachable backend's timeouts.
    ///
    /// [`FALLBACK_RETRY_AFTER`]: crate::FALLBACK_RETRY_AFTER
    #[must_use]
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.switch.set_retry_after(wait);
        self
    }

    /// Whether the last check was answered by the local limiter.
    pub fn falling_back(&self) -> bool {
        self.switch.falling_back()
    }

    /// How many checks the local limiter answered so far.
    pub fn fallbacks(&self) -> u64 {
        self.switch.fallbacks()
    }
}

#[async_trait]
impl RateLimiter for FallbackRateLimiter {
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error> {
        if !self.switch.worth_trying() {
            self.switch.skipped();
            return self.local.check(key, cost).await;
        }
        match self.shared.check(key, cost).await {
            Err(Error::Unavailable { source }) => {
                self.switch.fell_back(&source);
                self.local.check(key, cost).await
            }
            answer => {
                if answer.is_ok() {
                    self.switch.answered();
                }
                answer
            }
        }
    }
}
