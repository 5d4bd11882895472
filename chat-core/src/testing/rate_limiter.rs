//! The `RateLimiter` conformance cases, for a limiter of [`PER_MINUTE`] units a minute
//! with bursts of [`BURST`]. Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use std::num::NonZeroU32;
use std::time::Duration;

use crate::ports::{RateDecision, RateLimiter};

/// The rate the suite's factory must configure: one unit a second.
pub const PER_MINUTE: u32 = 60;
/// The burst the suite's factory must configure.
pub const BURST: u32 = 3;
/// One unit's refill at [`PER_MINUTE`].
const INTERVAL: Duration = Duration::from_secs(1);
/// Clock slack between the test and a shared backend.
const SLACK: Duration = Duration::from_millis(250);

fn cost(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Keys of one case: a shared backend may outlive the case, so each run is apart.
fn key(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("conformance:{name}:{}:{nanos}", std::process::id())
}

pub async fn a_burst_passes_then_the_next_waits(limiter: &dyn RateLimiter) {
    let key = key("burst");
    for remaining in (0..BURST).rev() {
        assert_eq!(
            limiter.check(&key, cost(1)).await.unwrap(),
            RateDecision::Allowed {
                limit: BURST,
                remaining
            }
        );
    }
    match limiter.check(&key, cost(1)).await.unwrap() {
        RateDecision::Denied { limit, retry_after } => {
            assert_eq!(limit, BURST);
            assert!(
                retry_after > Duration::ZERO && retry_after <= INTERVAL + SLACK,
                "{retry_after:?}"
            );
        }
        other @ RateDecision::Allowed { .. } => panic!("expected a denial, got {other:?}"),
    }
}

pub async fn keys_are_independent(limiter: &dyn RateLimiter) {
    let (spent, fresh) = (key("spent"), key("fresh"));
    for _ in 0..BURST {
        limiter.check(&spent, cost(1)).await.unwrap();
    }
    assert!(matches!(
        limiter.check(&spent, cost(1)).await.unwrap(),
        RateDecision::Denied { .. }
    ));
    assert!(matches!(
        limiter.check(&fresh, cost(1)).await.unwrap(),
        RateDecision::Allowed { .. }
    ));
}

pub async fn a_cost_spends_that_many_units(limiter: &dyn RateLimiter) {
    let key = key("cost");
    assert_eq!(
        limiter.check(&key, cost(2)).await.unwrap(),
        RateDecision::Allowed {
            limit: BURST,
            remaining: BURST - 2
        }
    );
    // Two more than the one left: refused, and nothing spent.
    assert!(matches!(
        limiter.check(&key, cost(2)).await.unwrap(),
        RateDecision::Denied { .. }
    ));
    assert!(matches!(
        limiter.check(&key, cost(1)).await.unwrap(),
        RateDecision::Allowed { remaining: 0, .. }
    ));
}

pub async fn a_cost_above_the_burst_never_passes(limiter: &dyn RateLimiter) {
    let key = key("above");
    match limiter.check(&key, cost(BURST + 1)).await.unwrap() {
        RateDecision::Denied { retry_after, .. } => {
            assert!(retry_after + SLACK >= INTERVAL * BURST, "{retry_after:?}");
        }
        other @ RateDecision::Allowed { .. } => panic!("expected a denial, got {other:?}"),
    }
    // Nothing was spent.
    assert!(matches!(
        limiter.check(&key, cost(BURST)).await.unwrap(),
        RateDecision::Allowed { remaining: 0, .. }
    ));
}

pub async fn allowance_comes_back_with_time(limiter: &dyn RateLimiter) {
    let key = key("refill");
    for _ in 0..BURST {
        limiter.check(&key, cost(1)).await.unwrap();
    }
    let wait = match limiter.check(&key, cost(1)).await.unwrap() {
        RateDecision::Denied { retry_after, .. } => retry_after,
        other @ RateDecision::Allowed { .. } => panic!("expected a denial, got {other:?}"),
    };
    tokio::time::sleep(wait + SLACK).await;
    assert!(matches!(
        limiter.check(&key, cost(1)).await.unwrap(),
        RateDecision::Allowed { .. }
    ));
}
