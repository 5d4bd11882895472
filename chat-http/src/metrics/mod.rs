//! The metrics of one server: requests, sends, refusals, store calls and WebSocket
//! connections, kept in atomics and rendered in the Prometheus text format.
//!
//! There is no global recorder, so several servers can share a process, and nothing
//! grows with traffic: a sample is a few relaxed atomic additions under a shared
//! (read) lock that is written only when a series appears for the first time.

mod histogram;
mod middleware;
mod registry;
mod store;

pub use middleware::track_requests;
pub use registry::Metrics;
pub use store::{MeasuredRepository, StoreTiming};
