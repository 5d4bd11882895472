//! Whether the bus's two connections are up, shared by its tasks and readiness.

use std::sync::atomic::{AtomicBool, Ordering};

/// The state of the subscribing and the publishing connection. Each outage is logged
/// once, when it begins, and once when it ends.
#[derive(Debug, Default)]
pub(crate) struct Health {
    subscriber_down: AtomicBool,
    publisher_down: AtomicBool,
}

impl Health {
    pub(crate) fn is_up(&self) -> bool {
        !self.subscriber_down.load(Ordering::Acquire)
            && !self.publisher_down.load(Ordering::Acquire)
    }

    pub(crate) fn subscriber_is_down(&self) -> bool {
        self.subscriber_down.load(Ordering::Acquire)
    }

    pub(crate) fn publisher_is_down(&self) -> bool {
        self.publisher_down.load(Ordering::Acquire)
    }

    pub(crate) fn set_subscriber(&self, up: bool, why: &dyn std::fmt::Display) {
        if self.subscriber_down.swap(!up, Ordering::AcqRel) == up {
            if up {
                tracing::info!("the bus receives from Redis");
            } else {
                tracing::warn!(error = %why, "the bus lost its Redis subscription: events from other nodes wait until it is back");
            }
        }
    }

    pub(crate) fn set_publisher(&self, up: bool, why: &dyn std::fmt::Display) {
        if self.publisher_down.swap(!up, Ordering::AcqRel) == up {
            if up {
                tracing::info!("the bus publishes to Redis again");
            } else {
                tracing::warn!(error = %why, "the bus cannot publish to Redis: other nodes catch up from the store once it is back");
            }
        }
    }
}
