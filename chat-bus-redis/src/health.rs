//! Whether the bus's two connections are up, shared by its tasks and readiness.

use std::sync::atomic::{AtomicBool, Ordering};

/// The state of the subscribing and the publishing connection. Each outage is logged
/// once, when it begins, and once when it ends.
#[derive(Debug, Default)]
pub(crate) struct Health {
    subscriber_down: AtomicBool,
    publisher_down: AtomicBool,
    /// Events of this node were dropped and the other nodes have not been told yet.
    gap_owed: AtomicBool,
}

impl Health {
    pub(crate) fn is_up(&self) -> bool {
        !self.subscriber_down.load(Ordering::Acquire)
            && !self.publisher_down.load(Ordering::Acquire)
    }

    pub(crate) fn subscriber_is_down(&self) -> bool {
        self.subscriber_down.load(Ordering::Acquire)
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

    /// Events were dropped instead of published: the publisher is down until it has
    /// announced a gap to the other nodes.
    pub(crate) fn lost_events(&self, why: &dyn std::fmt::Display) {
        self.gap_owed.store(true, Ordering::Release);
        self.set_publisher(false, why);
    }

    pub(crate) fn gap_owed(&self) -> bool {
        self.gap_owed.load(Ordering::Acquire)
    }

    /// Takes the duty to announce a gap, before announcing it: events dropped from
    /// now on owe another announcement.
    pub(crate) fn take_owed_gap(&self) {
        self.gap_owed.store(false, Ordering::Release);
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
