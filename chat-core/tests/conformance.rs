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
