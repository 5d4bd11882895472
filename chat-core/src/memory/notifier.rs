use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::event::Event;
use crate::ids::UserId;
use crate::ports::{EventStream, Notifier};

/// Default number of events a subscriber may fall behind before it is dropped.
const DEFAULT_CAPACITY: usize = 1024;

/// A [`Notifier`] within one process: each subscriber gets its own bounded tokio
/// channel. Publishing never waits: a subscriber whose channel is full is dropped (its
/// stream ends) and resumes from the store.
#[derive(Clone, Debug)]
pub struct InProcessNotifier {
    hub: Arc<Hub>,
}

/// Each user's subscribers, as (subscriber id, channel).
type Subscribers = HashMap<UserId, Vec<(u64, mpsc::Sender<Event>)>>;

#[derive(Debug)]
struct Hub {
    capacity: usize,
    next_subscriber: AtomicU64,
    subscribers: Mutex<Subscribers>,
}

impl Hub {
    fn subscribers(&self) -> MutexGuard<'_, Subscribers> {
        // Every critical section leaves the map consistent, so poisoning is harmless.
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn unsubscribe(&self, user: UserId, subscriber: u64) {
        let mut map = self.subscribers();
        if let Some(list) = map.get_mut(&user) {
            list.retain(|(id, _)| *id != subscriber);
            if list.is_empty() {
                map.remove(&user);
            }
        }
    }
}

impl InProcessNotifier {
    /// A notifier whose subscribers may fall 1024 events behind.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A notifier whose subscribers may fall `capacity` (at least 1) events behind.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            hub: Arc::new(Hub {
                capacity: capacity.max(1),
                next_subscriber: AtomicU64::new(0),
                subscribers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How many streams are subscribed for `user` right now.
    pub fn subscriber_count(&self, user: UserId) -> usize {
        self.hub.subscribers().get(&user).map_or(0, Vec::len)
    }
}

impl Default for InProcessNotifier {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Notifier for InProcessNotifier {
    async fn publish(&self, user: UserId, event: Event) -> Result<(), Error> {
        let mut map = self.hub.subscribers();
        if let Some(list) = map.get_mut(&user) {
            // Full or closed: drop the subscriber rather than wait or grow.
            list.retain(|(_, sender)| sender.try_send(event.clone()).is_ok());
            if list.is_empty() {
                map.remove(&user);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, user: UserId) -> Result<EventStream, Error> {
        let (sender, receiver) = mpsc::channel(self.hub.capacity);
        let id = self.hub.next_subscriber.fetch_add(1, Ordering::Relaxed);
        self.hub
            .subscribers()
            .entry(user)
            .or_default()
            .push((id, sender));
        Ok(Box::pin(Subscription {
            receiver,
            hub: Arc::clone(&self.hub),
            user,
            id,
        }))
    }
}

/// One subscriber's stream; unsubscribes when dropped.
struct Subscription {
    receiver: mpsc::Receiver<Event>,
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.user, self.id);
    }
}
