//! What a readiness probe learns: the store and the bus, each on its own.

use crate::error::Error;

/// The state of the store and of the bus (the notifier), checked one after the other.
///
/// The store decides whether a node can serve at all; a bus that is away only stops
/// events crossing to other nodes, and the node keeps serving its own connections.
#[derive(Debug)]
#[non_exhaustive]
pub struct Readiness {
    /// Whether the store answers.
    pub store: Result<(), Error>,
    /// Whether events published here reach the other nodes.
    pub bus: Result<(), Error>,
}

impl Readiness {
    /// Both answer.
    pub fn is_ready(&self) -> bool {
        self.store.is_ok() && self.bus.is_ok()
    }
}
