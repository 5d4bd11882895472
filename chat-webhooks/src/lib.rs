//! Webhooks of the chat library, by [Standard Webhooks] v1: what a delivery carries and
//! how it is signed, independent of how it is sent.
//!
//! - [`WebhookSecret`]: the endpoint's `whsec_…` secret;
//! - [`signature`]: the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers
//!   of one delivery (HMAC-SHA256 of `"id.timestamp.body"`);
//! - [`WebhookEvent`] and [`payload`]: `message.created`, `message.read` and
//!   `message.undelivered`, in Standard Webhooks' shape
//!   (`{"type", "timestamp", "data": {"message": Message}}`);
//! - [`RetrySchedule`]: when a failed delivery is tried again (exponential, with jitter,
//!   `Retry-After` honoured), and when it is dead;
//! - [`WebhookPlan`]: the delivery jobs a new message or a read causes, stored with the
//!   change by `ChatService`; [`WebhookSender`]: delivers one, signed, with a timeout and
//!   no redirects followed;
//! - [`WorkerPool`]: claims due jobs from a store's outbox under a lease and runs them,
//!   on every node sharing the store.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

mod delivery;
mod event;
mod schedule;
mod secret;
pub mod signature;
mod worker;

pub use delivery::{WEBHOOK_JOB, WebhookConfig, WebhookPlan, WebhookSender, describe};
pub use event::{WebhookEvent, payload};
pub use schedule::RetrySchedule;
pub use secret::{SecretError, WebhookSecret};
pub use worker::{
    JobHandler, LatencyObserver, PoolConfig, PoolStats, PoolWaker, Verdict, WorkerPool,
};
