//! Shared adapters (on Redis, say) with a local one to fall back on while the shared
//! one is unavailable: each node goes on alone instead of failing requests.

mod presence;
mod rate_limiter;

pub use presence::FallbackPresence;
pub use rate_limiter::FallbackRateLimiter;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How long the shared side is left alone after it was found unavailable, so that
/// requests are not each held up by an unreachable backend's timeouts; then one
/// request tries it again.
pub const FALLBACK_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A port on a `shared` adapter with a `local` one answering while the shared one is
/// unavailable; [`FallbackRateLimiter`] and [`FallbackPresence`] are the two there are.
pub struct Fallback<P: ?Sized> {
    shared: Arc<P>,
    local: Arc<P>,
    switch: Switch,
}

impl<P: ?Sized> Fallback<P> {
    fn with_messages(shared: Arc<P>, local: Arc<P>, down: &'static str, up: &'static str) -> Self {
        Self {
            shared,
            local,
            switch: Switch::new(down, up),
        }
    }

    /// After the shared side was found unavailable, answers locally for `wait` before
    /// asking it again ([`FALLBACK_RETRY_AFTER`] unless set), so requests are not each
    /// held up by an unreachable backend's timeouts.
    #[must_use]
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.switch.retry_after_ms = millis(wait);
        self
    }

    /// Whether the last request was answered by the local side.
    pub fn falling_back(&self) -> bool {
        self.switch.falling_back()
    }

    /// How many requests the local side answered so far.
    pub fn fallbacks(&self) -> u64 {
        self.switch.fallbacks()
    }
}

impl<P: ?Sized> std::fmt::Debug for Fallback<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("falling_back", &self.falling_back())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

/// Which side answered last and how often the local one did; each switch is logged
/// once, when it happens.
#[derive(Debug)]
struct Switch {
    /// Logged when the shared side becomes unavailable.
    down: &'static str,
    /// Logged when it answers again.
    up: &'static str,
    falling_back: AtomicBool,
    fallbacks: AtomicU64,
    /// The clock `retry_at_ms` counts from.
    started: Instant,
    /// While falling back, when (ms after `started`) the shared side is tried again.
    retry_at_ms: AtomicU64,
    retry_after_ms: u64,
}

impl Switch {
    fn new(down: &'static str, up: &'static str) -> Self {
        Self {
            down,
            up,
            falling_back: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            started: Instant::now(),
            retry_at_ms: AtomicU64::new(0),
            retry_after_ms: millis(FALLBACK_RETRY_AFTER),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }

    /// Whether to ask the shared side: always while it answers; while it does not,
    /// once the wait is over, and then one caller at a time.
    fn worth_trying(&self) -> bool {
        if !self.falling_back() {
            return true;
        }
        let now = self.now_ms();
        let at = self.retry_at_ms.load(Ordering::Relaxed);
        now >= at
            && self
                .retry_at_ms
                .compare_exchange(
                    at,
                    now + self.retry_after_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The shared side's answer to `request`, or `None` when the local side is to
    /// answer instead: the shared side is unavailable, or was a moment ago and the
    /// wait is not over (then `request` is never run).
    async fn ask<T>(
        &self,
        request: impl Future<Output = Result<T, Error>>,
    ) -> Option<Result<T, Error>> {
        if !self.worth_trying() {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match request.await {
            Err(Error::Unavailable { source }) => {
                self.fell_back(&source);
                None
            }
            answer => {
                if answer.is_ok() {
                    self.answered();
                }
                Some(answer)
            }
        }
    }

    /// The shared side is unavailable: the local one answers this time.
    fn fell_back(&self, error: &dyn std::fmt::Display) {
        self.retry_at_ms
            .store(self.now_ms() + self.retry_after_ms, Ordering::Relaxed);
        if !self.falling_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %error, "{}", self.down);
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The shared side answered.
    fn answered(&self) {
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!("{}", self.up);
        }
    }

    fn falling_back(&self) -> bool {
        self.falling_back.load(Ordering::Relaxed)
    }

    fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
