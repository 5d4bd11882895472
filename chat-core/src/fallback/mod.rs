//! Shared adapters (on Redis, say) with a local one to fall back on while the shared
//! one is unavailable: each node goes on alone instead of failing requests.

mod presence;
mod rate_limiter;

pub use presence::FallbackPresence;
pub use rate_limiter::FallbackRateLimiter;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
}

impl Switch {
    const fn new(down: &'static str, up: &'static str) -> Self {
        Self {
            down,
            up,
            falling_back: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// The shared side is unavailable: the local one answers this time.
    fn fell_back(&self, error: &dyn std::fmt::Display) {
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
