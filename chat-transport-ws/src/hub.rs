//! The registry of live connections: how many each user holds, and a shutdown signal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chat_core::UserId;
use tokio::sync::watch;

/// Counts each user's connections (to enforce the per-user limit) and tells every
/// connection when the server shuts down. Cloning shares it.
#[derive(Clone, Debug)]
pub struct ConnectionHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_per_user: usize,
    per_user: Mutex<HashMap<UserId, usize>>,
    total: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

/// A connection's place in the hub; dropping it frees the place.
#[derive(Debug)]
pub struct Registration {
    inner: Arc<Inner>,
    user: UserId,
}

impl ConnectionHub {
    /// A hub allowing `max_per_user` connections per user.
    pub fn new(max_per_user: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_per_user: max_per_user.max(1),
                per_user: Mutex::new(HashMap::new()),
                total: AtomicUsize::new(0),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// Takes a place for one more connection of `user`, or `None` at the limit.
    pub fn register(&self, user: UserId) -> Option<Registration> {
        let mut per_user = self
            .inner
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = per_user.entry(user).or_insert(0);
        if *count >= self.inner.max_per_user {
            return None;
        }
        *count += 1;
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        Some(Registration {
            inner: Arc::clone(&self.inner),
            user,
        })
    }

    /// Live connections of `user`.
    pub fn connections_of(&self, user: UserId) -> usize {
        self.inner
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user)
            .copied()
            .unwrap_or(0)
    }

    /// Live connections in all.
    pub fn connections(&self) -> usize {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// Tells every connection to close with 1001 (going away).
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Changes to `true` when [`shut_down`](Self::shut_down) is called: a connection
    /// of another transport sharing this hub closes then.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut per_user = self
            .inner
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_user.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                per_user.remove(&self.user);
            }
        }
        self.inner.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_frees_on_drop() {
        let hub = ConnectionHub::new(2);
        let a = hub.register(UserId::new(1));
        let b = hub.register(UserId::new(1));
        assert!(a.is_some() && b.is_some());
        assert!(hub.register(UserId::new(1)).is_none());
        let other = hub.register(UserId::new(2));
        assert!(other.is_some());
        assert_eq!(
            (hub.connections_of(UserId::new(1)), hub.connections()),
            (2, 3)
        );
        drop(a);
        assert!(hub.register(UserId::new(1)).is_some());
        drop((b, other));
        assert_eq!(hub.connections(), 0);
    }
}
