//! The Redis rate limiter as nodes use it: one allowance for every node, and a clear
//! `Unavailable` when Redis is out of reach.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chat_bus_redis::RedisRateLimiter;
use chat_core::testing::service_url;
use chat_core::{Error, RateDecision, RateLimiter};

fn limiter(url: &str, prefix: &str) -> RedisRateLimiter {
    RedisRateLimiter::connect(
        url,
        prefix,
        NonZeroU32::new(60).unwrap(),
        NonZeroU32::new(5).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn nodes_on_one_redis_share_one_allowance() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("chat-test-nodes-{}", std::process::id());
    let nodes = [
        limiter(&url, &prefix),
        limiter(&url, &prefix),
        limiter(&url, &prefix),
    ];
    let one = NonZeroU32::MIN;
    let mut allowed = 0;
    for _ in 0..4 {
        for node in &nodes {
            if let RateDecision::Allowed { .. } = node.check("send:7", one).await.unwrap() {
                allowed += 1;
            }
        }
    }
    // Twelve requests spread over three nodes, one burst of five between them.
    assert_eq!(allowed, 5);
    // Another prefix is another deployment.
    let other = limiter(&url, &format!("{prefix}-other"));
    assert!(matches!(
        other.check("send:7", one).await.unwrap(),
        RateDecision::Allowed { .. }
    ));
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_within_about_a_second() {
    // Nothing listens on port 1.
    let down = limiter("redis://127.0.0.1:1", "chat-test-down");
    let started = Instant::now();
    let error = down.check("send:1", NonZeroU32::MIN).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_malformed_url_is_refused_without_repeating_it() {
    let error = RedisRateLimiter::connect(
        "http://user:secret@host",
        "chat",
        NonZeroU32::MIN,
        NonZeroU32::MIN,
    )
    .unwrap_err();
    assert!(!error.to_string().contains("secret"), "{error}");
}

/// A limit set far above any traffic (a load test's) allows every check: it must not
/// fail on a zero expiry or a zero emission interval.
#[tokio::test]
async fn a_limit_far_above_any_traffic_allows_every_check() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("chat-test-unlimited-{}", std::process::id());
    let huge = NonZeroU32::new(1_000_000_000).unwrap();
    let limiter = RedisRateLimiter::connect(&url, &prefix, huge, huge).unwrap();
    for _ in 0..100 {
        let decision = limiter.check("send:1", NonZeroU32::MIN).await.unwrap();
        assert!(
            matches!(decision, RateDecision::Allowed { .. }),
            "{decision:?}"
        );
    }
}
