//! In-memory adapters of every port: for tests, examples and single-process use.

mod broadcast;
mod jobs;
mod notifier;
mod presence;
mod rate_limiter;
mod repository;

pub use broadcast::InProcessBroadcast;
pub use jobs::InMemoryJobStore;
pub use notifier::InProcessNotifier;
pub use presence::InMemoryPresence;
pub use rate_limiter::GovernorRateLimiter;
pub use repository::InMemoryRepository;
