//! Redis adapters of the chat library, for several nodes that share one Redis.
//!
//! - [`RedisNotifier`] carries events between nodes over Redis pub/sub (one RESP3
//!   connection per node that subscribes the topics of the users connected there), and
//!   turns every moment Redis may have lost events into a gap that the live feed
//!   answers from the store.
//! - [`RedisPresence`] knows which users hold live connections on any node (each
//!   node refreshes its own with a time to live, so a node that dies leaves no ghosts),
//!   and holds the per-user connection limit across nodes. Wrap it in
//!   [`chat_core::FallbackPresence`] to count each node's own connections while Redis
//!   cannot be reached.
//! - [`RedisBroadcast`] carries opaque payloads to every node on one topic (the
//!   Pusher transport's channel events and presence members), with a gap after every
//!   moment Redis may have lost some.
//! - [`RedisRateLimiter`] keeps every key's allowance in Redis (GCRA in one Lua
//!   script, one round trip a check), so a per-user limit holds whichever node the
//!   user's requests reach. Wrap it in [`chat_core::FallbackRateLimiter`] to keep
//!   limiting on each node's own while Redis cannot be reached.
//!
//! Keys and topics live under a prefix (`chat` by default in the reference server), so
//! several deployments can share one Redis. Redis holds no message: events are hints
//! the feed checks against the store, and seats and allowances come back as clients
//! do; only last-seen times live in Redis alone. URLs are `redis://` (TLS to Redis is
//! not built in).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::num::NonZeroU32;
//! use std::sync::Arc;
//! use chat_bus_redis::{RedisNotifier, RedisRateLimiter};
//! use chat_core::{ChatService, InMemoryRepository};
//!
//! let url = "redis://127.0.0.1:6379";
//! let notifier = RedisNotifier::connect(url, "chat")?;
//! let limiter = RedisRateLimiter::connect(
//!     url,
//!     "chat",
//!     NonZeroU32::new(60).unwrap(),
//!     NonZeroU32::new(20).unwrap(),
//! )?;
//! let chat = ChatService::new(Arc::new(InMemoryRepository::new()), Arc::new(notifier));
//! # let _ = (chat, limiter);
//! # Ok(()) }
//! ```

mod broadcast;
mod connection;
mod error;
mod health;
mod notifier;
mod presence;
mod publisher;
mod rate_limiter;
mod subscriber;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use broadcast::RedisBroadcast;
pub use notifier::RedisNotifier;
pub use presence::RedisPresence;
pub use rate_limiter::RedisRateLimiter;
/// The redis client this crate is built with, so callers use the matching version.
pub use redis;
