//! A shared rate limiter with a local one to fall back on.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

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
    falling_back: AtomicBool,
    fallbacks: AtomicU64,
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
            falling_back: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Whether the last check was answered by the local limiter.
    pub fn falling_back(&self) -> bool {
        self.falling_back.load(Ordering::Relaxed)
    }

    /// How many checks the local limiter answered so far.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl RateLimiter for FallbackRateLimiter {
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error> {
        match self.shared.check(key, cost).await {
            Err(Error::Unavailable { source }) => {
                if !self.falling_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %source,
                        "the shared rate limiter is unavailable; limiting on this node alone"
                    );
                }
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                self.local.check(key, cost).await
            }
            answer => {
                if answer.is_ok() && self.falling_back.swap(false, Ordering::Relaxed) {
                    tracing::info!("the shared rate limiter answers again");
                }
                answer
            }
        }
    }
}
