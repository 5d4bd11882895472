//! The fallbacks: the shared rate limiter or presence while it answers, the local one
//! while it is unavailable, never an error for an outage.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    Error, FallbackPresence, FallbackRateLimiter, GovernorRateLimiter, InMemoryPresence, Presence,
    RateDecision, RateLimiter, Seat, UserId, UserPresence,
};

/// How long the fallbacks in these tests answer locally before asking again.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// Waits out [`RETRY_AFTER`].
async fn retry_after_passes() {
    tokio::time::sleep(RETRY_AFTER * 2).await;
}

/// A shared limiter that allows everything, until it is switched off; counts how often
/// it is asked.
#[derive(Default)]
struct Shared {
    down: AtomicBool,
    asked: AtomicUsize,
}

#[async_trait]
impl RateLimiter for Shared {
    async fn check(&self, _: &str, _: NonZeroU32) -> Result<RateDecision, Error> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(Error::unavailable("connection refused"));
        }
        Ok(RateDecision::Allowed {
            limit: 100,
            remaining: 99,
        })
    }
}

/// Refuses with an error that is not an outage.
struct Broken;

#[async_trait]
impl RateLimiter for Broken {
    async fn check(&self, _: &str, _: NonZeroU32) -> Result<RateDecision, Error> {
        Err(Error::internal("script error"))
    }
}

fn local() -> Arc<GovernorRateLimiter> {
    Arc::new(GovernorRateLimiter::per_minute(
        NonZeroU32::new(60).unwrap(),
        NonZeroU32::new(2).unwrap(),
    ))
}

#[tokio::test]
async fn the_local_limiter_answers_while_the_shared_one_is_down() {
    let shared = Arc::new(Shared::default());
    let limiter = FallbackRateLimiter::new(shared.clone(), local()).retry_after(RETRY_AFTER);
    let one = NonZeroU32::MIN;
    assert_eq!(
        limiter.check("send:1", one).await.unwrap(),
        RateDecision::Allowed {
            limit: 100,
            remaining: 99
        }
    );
    shared.down.store(true, Ordering::Relaxed);
    // The local burst of two, then a local refusal: limited, never an error.
    let answers = [
        limiter.check("send:1", one).await.unwrap(),
        limiter.check("send:1", one).await.unwrap(),
        limiter.check("send:1", one).await.unwrap(),
    ];
    assert!(matches!(answers[0], RateDecision::Allowed { limit: 2, .. }));
    assert!(matches!(answers[1], RateDecision::Allowed { limit: 2, .. }));
    assert!(matches!(answers[2], RateDecision::Denied { limit: 2, .. }));
    assert!(limiter.falling_back());
    assert_eq!(limiter.fallbacks(), 3);
    // Back: the shared limiter answers again (once the wait is over).
    shared.down.store(false, Ordering::Relaxed);
    retry_after_passes().await;
    assert!(matches!(
        limiter.check("send:1", one).await.unwrap(),
        RateDecision::Allowed { limit: 100, .. }
    ));
    assert!(!limiter.falling_back());
    assert_eq!(limiter.fallbacks(), 3);
}

#[tokio::test]
async fn an_unavailable_shared_limiter_is_left_alone_for_a_while() {
    let shared = Arc::new(Shared::default());
    shared.down.store(true, Ordering::Relaxed);
    // Long enough that the loop below runs within it on any machine.
    let limiter =
        FallbackRateLimiter::new(shared.clone(), local()).retry_after(Duration::from_secs(3_600));
    for _ in 0..50 {
        limiter.check("send:1", NonZeroU32::MIN).await.unwrap();
    }
    // Asked once: the other checks did not wait for it.
    assert_eq!(shared.asked.load(Ordering::Relaxed), 1);
    assert_eq!(limiter.fallbacks(), 50);

    // After the wait, one check asks again.
    let shared = Arc::new(Shared::default());
    shared.down.store(true, Ordering::Relaxed);
    let limiter = FallbackRateLimiter::new(shared.clone(), local()).retry_after(RETRY_AFTER);
    limiter.check("send:1", NonZeroU32::MIN).await.unwrap();
    retry_after_passes().await;
    limiter.check("send:1", NonZeroU32::MIN).await.unwrap();
    limiter.check("send:1", NonZeroU32::MIN).await.unwrap();
    assert_eq!(shared.asked.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn other_errors_are_not_hidden() {
    let limiter = FallbackRateLimiter::new(Arc::new(Broken), local());
    assert!(matches!(
        limiter.check("send:1", NonZeroU32::MIN).await,
        Err(Error::Internal { .. })
    ));
    assert_eq!(limiter.fallbacks(), 0);
}

/// Presence every node shares, until it is switched off.
#[derive(Default)]
struct SharedPresence {
    down: AtomicBool,
    inner: InMemoryPresence,
}

impl SharedPresence {
    fn check(&self) -> Result<(), Error> {
        if self.down.load(Ordering::Relaxed) {
            return Err(Error::unavailable("connection refused"));
        }
        Ok(())
    }
}

#[async_trait]
impl Presence for SharedPresence {
    async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
        self.check()?;
        self.inner.join(user, limit).await
    }

    async fn leave(&self, seat: Seat) -> Result<(), Error> {
        self.check()?;
        self.inner.leave(seat).await
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
        self.check()?;
        self.inner.lookup(users).await
    }
}

#[tokio::test]
async fn local_presence_holds_the_limit_while_the_shared_one_is_down() {
    let alice = UserId::new(1);
    let shared = Arc::new(SharedPresence::default());
    let presence = FallbackPresence::new(shared.clone(), Arc::new(InMemoryPresence::new()))
        .retry_after(RETRY_AFTER);
    let on_shared = presence.join(alice, 2).await.unwrap().unwrap();
    assert!(!presence.falling_back());

    shared.down.store(true, Ordering::Relaxed);
    // Never refused for the outage; this node's own count holds the limit.
    let first = presence.join(alice, 2).await.unwrap().unwrap();
    let second = presence.join(alice, 2).await.unwrap().unwrap();
    assert_eq!(presence.join(alice, 2).await.unwrap(), None);
    assert!(presence.falling_back());
    assert_eq!(presence.fallbacks(), 3);
    assert!(presence.lookup(&[alice]).await.unwrap()[0].online);
    // A seat goes back where it came from.
    presence.leave(first).await.unwrap();
    let third = presence.join(alice, 2).await.unwrap().unwrap();

    shared.down.store(false, Ordering::Relaxed);
    retry_after_passes().await;
    presence.leave(on_shared).await.unwrap();
    // Back on the shared presence, the seats taken during the outage still count as
    // online until they are given back.
    assert!(presence.lookup(&[alice]).await.unwrap()[0].online);
    assert!(!presence.falling_back());
    presence.leave(second).await.unwrap();
    presence.leave(third).await.unwrap();
    assert!(!presence.lookup(&[alice]).await.unwrap()[0].online);
}
