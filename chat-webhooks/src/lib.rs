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
//!   `Retry-After` honoured), and when it is dead.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

mod event;
mod schedule;
mod secret;
pub mod signature;

pub use event::{WebhookEvent, payload};
pub use schedule::RetrySchedule;
pub use secret::{SecretError, WebhookSecret};
