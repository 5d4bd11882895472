use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Error;

/// The answer of a rate limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead.
    Allowed {
        /// The burst size of the limit.
        limit: u32,
        /// How many more units could be spent right now.
        remaining: u32,
    },
    /// Not now.
    Denied {
        /// The burst size of the limit.
        limit: u32,
        /// How long until the same request would be allowed.
        retry_after: Duration,
    },
}

/// Limits how often a key may do something.
///
/// # Contract
///
/// - `check(key, cost)` spends `cost` units of `key`'s allowance if it has them and
///   answers `Allowed` with what remains; otherwise it spends nothing and answers
///   `Denied` with the wait until the same request would pass. A `cost` above the
///   burst size can never pass: it is `Denied` with the time to refill the whole burst.
/// - Keys are independent of one another.
/// - `Error::Unavailable` when a shared backend cannot be reached; callers decide
///   whether to fail open or closed.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Checks and spends `cost` units of `key`'s allowance.
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error>;
}
