//! Timing every store call by operation and outcome.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{Layered, MessageRepository, RepositoryLayer, StoreOperation};

use super::Metrics;

/// A store whose every call is timed into [`Metrics`] (`chat_store_duration_seconds`,
/// by operation and outcome). Made by [`Metrics::measure`].
pub type MeasuredRepository = Layered<StoreTiming>;

/// The layer that times store calls into a [`Metrics`].
#[derive(Clone, Debug)]
pub struct StoreTiming {
    metrics: Metrics,
}

impl RepositoryLayer for StoreTiming {
    fn after(&self, operation: StoreOperation, elapsed: Duration, succeeded: bool) {
        self.metrics
            .store_call(operation.name(), elapsed, succeeded);
    }
}

impl Metrics {
    /// `store`, with every call timed into these metrics.
    pub fn measure(&self, store: Arc<dyn MessageRepository>) -> MeasuredRepository {
        Layered::new(
            store,
            StoreTiming {
                metrics: self.clone(),
            },
        )
    }
}
