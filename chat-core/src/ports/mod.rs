//! The ports: what the core needs from the outside world.

mod authenticator;
mod broadcast;
mod jobs;
mod layered;
mod notifier;
mod policy;
mod presence;
mod rate_limiter;
mod repository;

pub use authenticator::{Authenticator, Identity};
pub use broadcast::{Broadcast, BroadcastStream, Broadcasted};
pub use jobs::{Claimed, Job, JobState, JobStore, MessageJobs, NewJob, Outcome};
pub use layered::{Layered, RepositoryLayer, StoreOperation};
pub use notifier::{EventStream, Notice, Notifier};
pub use policy::{DefaultPolicy, Policy};
pub use presence::{Presence, Seat, UserPresence};
pub use rate_limiter::{RateDecision, RateLimiter};
pub use repository::MessageRepository;
