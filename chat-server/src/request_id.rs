//! Request ids: unique per process run without a system call per request.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Makes ids `<random prefix>-<counter>`: the prefix (drawn once) tells process runs
/// apart, the counter tells requests apart. A UUID per request would cost a
/// `getrandom` system call each time.
#[derive(Clone, Debug)]
pub(crate) struct CountingRequestId {
    prefix: u64,
    next: std::sync::Arc<AtomicU64>,
}

impl CountingRequestId {
    pub(crate) fn new() -> Self {
        let mut bytes = [0u8; 8];
        // Without randomness the ids are still unique within the run.
        let _ = getrandom::fill(&mut bytes);
        Self {
            prefix: u64::from_le_bytes(bytes),
            next: std::sync::Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for CountingRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{:016x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
