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

/// A key prefix no other case of this run shares: the cases use the same user ids.
fn fresh_prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "chat-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Publisher and subscribers on one node: Redis carries nothing the node needs.
mod notifier_one_node {
    use chat_bus_redis::RedisNotifier;
    use chat_core::testing::service_url;

    chat_core::notifier_suite!(async {
        let url = service_url("CHAT_TEST_REDIS_URL")?;
        Some(std::sync::Arc::new(
            RedisNotifier::connect(&url, &super::fresh_prefix()).unwrap(),
        ))
    });
}

/// Every event published on one node and received on another: all of it through Redis.
mod notifier_across_nodes {
    use chat_bus_redis::RedisNotifier;
    use chat_core::testing::service_url;
    use chat_core::{Error, Event, EventStream, Notifier, UserId, async_trait};

    struct TwoNodes {
        publishing: RedisNotifier,
        subscribing: RedisNotifier,
    }

    #[async_trait]
    impl Notifier for TwoNodes {
        async fn publish(&self, user: UserId, event: Event) -> Result<(), Error> {
            self.publishing.publish(user, event).await
        }

        async fn subscribe(&self, user: UserId) -> Result<EventStream, Error> {
            self.subscribing.subscribe(user).await
        }
    }

    chat_core::notifier_suite!(async {
        let url = service_url("CHAT_TEST_REDIS_URL")?;
        let prefix = super::fresh_prefix();
        Some(std::sync::Arc::new(TwoNodes {
            publishing: RedisNotifier::connect(&url, &prefix).unwrap(),
            subscribing: RedisNotifier::connect(&url, &prefix).unwrap(),
        }))
    });
}

mod presence_one_node {
    use std::time::Duration;

    use chat_bus_redis::RedisPresence;
    use chat_core::testing::service_url;

    chat_core::presence_suite!(async {
        let url = service_url("CHAT_TEST_REDIS_URL")?;
        Some(std::sync::Arc::new(
            RedisPresence::connect(&url, &super::fresh_prefix(), Duration::from_secs(30)).unwrap(),
        ))
    });
}

/// Seats taken on one node, presence read on another.
mod presence_across_nodes {
    use std::time::Duration;

    use chat_bus_redis::RedisPresence;
    use chat_core::testing::service_url;
    use chat_core::{Error, Presence, Seat, UserId, UserPresence, async_trait};

    struct TwoNodes {
        seating: RedisPresence,
        reading: RedisPresence,
    }

    #[async_trait]
    impl Presence for TwoNodes {
        async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
            self.seating.join(user, limit).await
        }

        async fn leave(&self, seat: Seat) -> Result<(), Error> {
            self.seating.leave(seat).await
        }

        async fn lookup(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
            self.reading.lookup(users).await
        }
    }

    chat_core::presence_suite!(async {
        let url = service_url("CHAT_TEST_REDIS_URL")?;
        let prefix = super::fresh_prefix();
        let ttl = Duration::from_secs(30);
        Some(std::sync::Arc::new(TwoNodes {
            seating: RedisPresence::connect(&url, &prefix, ttl).unwrap(),
            reading: RedisPresence::connect(&url, &prefix, ttl).unwrap(),
        }))
    });
}

/// Two nodes on one Redis: a payload published on one reaches the other through it.
mod broadcast_across_nodes {
    use chat_bus_redis::RedisBroadcast;
    use chat_core::testing::service_url;

    chat_core::broadcast_suite!(async {
        let url = service_url("CHAT_TEST_REDIS_URL")?;
        let prefix = super::fresh_prefix();
        let here = RedisBroadcast::connect(&url, &prefix, "conformance", 1024).unwrap();
        let there = RedisBroadcast::connect(&url, &prefix, "conformance", 1024).unwrap();
        Some((std::sync::Arc::new(here), std::sync::Arc::new(there)))
    });
}
