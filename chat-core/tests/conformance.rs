//! The in-memory adapters run the shared conformance suites.

mod repository {
    chat_core::message_repository_suite!(async {
        Some(std::sync::Arc::new(chat_core::InMemoryRepository::new()))
    });
}

mod notifier {
    chat_core::notifier_suite!(async {
        Some(std::sync::Arc::new(chat_core::InProcessNotifier::new()))
    });
}

mod rate_limiter {
    use std::num::NonZeroU32;

    use chat_core::testing::rate_limiter::{BURST, PER_MINUTE};

    chat_core::rate_limiter_suite!(async {
        Some(std::sync::Arc::new(
            chat_core::GovernorRateLimiter::per_minute(
                NonZeroU32::new(PER_MINUTE).unwrap(),
                NonZeroU32::new(BURST).unwrap(),
            ),
        ))
    });
}

mod presence {
    chat_core::presence_suite!(async {
        Some(std::sync::Arc::new(chat_core::InMemoryPresence::new()))
    });
}

mod broadcast {
    chat_core::broadcast_suite!(async {
        let broadcast = std::sync::Arc::new(chat_core::InProcessBroadcast::new(64));
        Some((std::sync::Arc::clone(&broadcast), broadcast))
    });
}

mod jobs {
    chat_core::job_store_suite!(async {
        Some(std::sync::Arc::new(chat_core::InMemoryJobStore::new()))
    });
}

mod message_jobs {
    chat_core::message_jobs_suite!(async {
        Some(std::sync::Arc::new(chat_core::InMemoryRepository::new()))
    });
}
