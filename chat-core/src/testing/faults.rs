//! A [`RepositoryLayer`] that makes chosen store calls fail: a database that goes
//! away and comes back, for tests of what callers do then.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::Error;
use crate::ports::{RepositoryLayer, StoreOperation};

/// Fails the store calls it is told to with `Error::Unavailable`, until healed.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use chat_core::testing::Faults;
/// use chat_core::{Error, InMemoryRepository, Layered, MessageRepository, StoreOperation};
///
/// let store = Layered::new(Arc::new(InMemoryRepository::new()), Faults::default());
/// store.layer().fail(StoreOperation::Ping);
/// assert!(matches!(store.ping().await, Err(Error::Unavailable { .. })));
/// store.layer().heal();
/// assert!(store.ping().await.is_ok());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    all: bool,
    some: BTreeSet<StoreOperation>,
}

impl Faults {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails every call from now on.
    pub fn fail_all(&self) {
        self.state().all = true;
    }

    /// Fails every call of `operation` from now on.
    pub fn fail(&self, operation: StoreOperation) {
        self.state().some.insert(operation);
    }

    /// Fails nothing any more.
    pub fn heal(&self) {
        let mut state = self.state();
        state.all = false;
        state.some.clear();
    }
}

impl RepositoryLayer for Faults {
    fn before(&self, operation: StoreOperation) -> Result<(), Error> {
        let state = self.state();
        if state.all || state.some.contains(&operation) {
            return Err(Error::unavailable(format!(
                "injected fault: {} cannot reach the database (driver detail that must not leak)",
                operation.name()
            )));
        }
        Ok(())
    }
}
