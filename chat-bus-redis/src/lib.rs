//! Redis adapters of the chat library, for several nodes that share one Redis.
//!
//! [`RedisRateLimiter`] keeps every key's allowance in Redis (GCRA in one Lua script,
//! one round trip a check), so a per-user limit holds whichever node the user's
//! requests reach. Wrap it in [`chat_core::FallbackRateLimiter`] to keep limiting on
//! each node's own while Redis cannot be reached.
//!
//! Keys live under a prefix (`chat` by default in the reference server), so several
//! deployments can share one Redis.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::num::NonZeroU32;
//! use chat_bus_redis::RedisRateLimiter;
//!
//! let limiter = RedisRateLimiter::connect(
//!     "redis://127.0.0.1:6379",
//!     "chat",
//!     NonZeroU32::new(60).unwrap(),
//!     NonZeroU32::new(20).unwrap(),
//! )?;
//! # let _ = limiter;
//! # Ok(()) }
//! ```

mod error;
mod rate_limiter;

pub use rate_limiter::RedisRateLimiter;
/// The redis client this crate is built with, so callers use the matching version.
pub use redis;
