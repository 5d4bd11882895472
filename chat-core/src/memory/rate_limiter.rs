use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};

use crate::error::Error;
use crate::ports::{RateDecision, RateLimiter};

/// Forget idle keys after this many checks, so memory follows active keys only.
const PRUNE_EVERY: u64 = 4096;

/// A [`RateLimiter`] in process memory: GCRA (the generic cell rate algorithm) on
/// `governor`, one independent bucket per key.
pub struct GovernorRateLimiter {
    limiter:
        Governor<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>,
    burst: u32,
    full_refill: Duration,
    checks: AtomicU64,
}

impl std::fmt::Debug for GovernorRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernorRateLimiter")
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl GovernorRateLimiter {
    /// Allows `per_minute` units a minute on average and bursts of up to `burst`.
    pub fn per_minute(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self::with_quota(Quota::per_minute(per_minute).allow_burst(burst))
    }

    /// Allows whatever `quota` says.
    pub fn with_quota(quota: Quota) -> Self {
        Self {
            burst: quota.burst_size().get(),
            full_refill: quota.replenish_interval() * quota.burst_size().get(),
            limiter: Governor::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
            checks: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl RateLimiter for GovernorRateLimiter {
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let limit = self.burst;
        let key = key.to_owned();
        Ok(match self.limiter.check_key_n(&key, cost) {
            Ok(Ok(snapshot)) => RateDecision::Allowed {
                limit,
                remaining: snapshot.remaining_burst_capacity(),
            },
            Ok(Err(not_until)) => RateDecision::Denied {
                limit,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
            // More than the burst: it would never pass; report a full refill.
            Err(_) => RateDecision::Denied {
                limit,
                retry_after: self.full_refill,
            },
        })
    }
}
