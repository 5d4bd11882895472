//! The fallback rate limiter: the shared limiter while it answers, the local one while
//! it is unavailable, never an error for an outage.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chat_core::{Error, FallbackRateLimiter, GovernorRateLimiter, RateDecision, RateLimiter};

/// A shared limiter that allows everything, until it is switched off.
#[derive(Default)]
struct Shared {
    down: AtomicBool,
}

#[async_trait]
impl RateLimiter for Shared {
    async fn check(&self, _: &str, _: NonZeroU32) -> Result<RateDecision, Error> {
        if self.down.load(Ordering::Relaxed) {
            return Err(Error::unavailable("connection refused"));
        }
        Ok(RateDecision::Allowed {
            limit: 100,
            remaining: 99,
        })
    }
}

/// Refuses with an error that is not an outage.
struct Broken;

#[async_trait]
impl RateLimiter for Broken {
    async fn check(&self, _: &str, _: NonZeroU32) -> Result<RateDecision, Error> {
        Err(Error::internal("script error"))
    }
}

fn local() -> Arc<GovernorRateLimiter> {
    Arc::new(GovernorRateLimiter::per_minute(
        NonZeroU32::new(60).unwrap(),
        NonZeroU32::new(2).unwrap(),
    ))
}

#[tokio::test]
async fn the_local_limiter_answers_while_the_shared_one_is_down() {
    let shared = Arc::new(Shared::default());
    let limiter = FallbackRateLimiter::new(shared.clone(), local());
    let one = NonZeroU32::MIN;
    assert_eq!(
        limiter.check("send:1", one).await.unwrap(),
        RateDecision::Allowed {
            limit: 100,
            remaining: 99
        }
    );
    shared.down.store(true, Ordering::Relaxed);
    // The local burst of two, then a local refusal: limited, never an error.
    let answers = [
        limiter.check("send:1", one).await.unwrap(),
        limiter.check("send:1", one).await.unwrap(),
        limiter.check("send:1", one).await.unwrap(),
    ];
    assert!(matches!(answers[0], RateDecision::Allowed { limit: 2, .. }));
    assert!(matches!(answers[1], RateDecision::Allowed { limit: 2, .. }));
    assert!(matches!(answers[2], RateDecision::Denied { limit: 2, .. }));
    assert!(limiter.falling_back());
    assert_eq!(limiter.fallbacks(), 3);
    // Back: the shared limiter answers again.
    shared.down.store(false, Ordering::Relaxed);
    assert!(matches!(
        limiter.check("send:1", one).await.unwrap(),
        RateDecision::Allowed { limit: 100, .. }
    ));
    assert!(!limiter.falling_back());
    assert_eq!(limiter.fallbacks(), 3);
}

#[tokio::test]
async fn other_errors_are_not_hidden() {
    let limiter = FallbackRateLimiter::new(Arc::new(Broken), local());
    assert!(matches!(
        limiter.check("send:1", NonZeroU32::MIN).await,
        Err(Error::Internal { .. })
    ));
    assert_eq!(limiter.fallbacks(), 0);
}
