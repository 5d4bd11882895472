//! Shared adapters (on Redis, say) with a local one to fall back on while the shared
//! one is unavailable: each node goes on alone instead of failing requests.

mod presence;
mod rate_limiter;

pub use presence::FallbackPresence;
pub use rate_limiter::FallbackRateLimiter;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the shared side is left alone after it was found unavailable, so that
/// requests are not each held up by an unreachable backend's timeouts; then one
/// request tries it again.
pub const FALLBACK_RETRY_AFTER: Duration = Duration::from_secs(1);

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

    fn set_retry_after(&mut self, wait: Duration) {
        self.retry_after_ms = millis(wait);
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

    /// The local side answers without the shared one being asked (within the wait).
    fn skipped(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
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
