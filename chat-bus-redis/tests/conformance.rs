//! The Redis adapters run the shared conformance suites against the Redis at
//! `CHAT_TEST_REDIS_URL`, each run under a key prefix of its own.
#![allow(clippy::unwrap_used)]

mod rate_limiter {
    use std::num::NonZeroU32;

    use chat_bus_redis::RedisRateLimiter;
    use chat_core::testing::rate_limiter::{BURST, PER_MINUTE};
    use chat_core::testing::service_url;

    chat_core::rate_limiter_suite!(async {
        let url = service_url("CHAT_TEST_REDIS_URL")?;
        let prefix = format!("chat-test-{}", std::process::id());
        Some(std::sync::Arc::new(
            RedisRateLimiter::connect(
                &url,
                &prefix,
                NonZeroU32::new(PER_MINUTE).unwrap(),
                NonZeroU32::new(BURST).unwrap(),
            )
            .unwrap(),
        ))
    });
}
