//! A [`Broadcast`] within one process.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use futures_core::Stream;

use crate::error::Error;
use crate::ports::{Broadcast, BroadcastStream, Broadcasted};

/// A [`Broadcast`] within one process: each subscriber has its own queue of at most
/// `capacity` payloads; one that falls further behind loses what is queued and gets a
/// [`Broadcasted::Gap`] instead.
#[derive(Clone, Debug)]
pub struct InProcessBroadcast {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    subscribers: Mutex<Vec<Weak<Queue>>>,
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Broadcasted>,
    waker: Option<Waker>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so poisoning is harmless.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for InProcessBroadcast {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl InProcessBroadcast {
    /// A broadcast whose subscribers each hold up to `capacity` payloads.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                subscribers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Hands `item` to every live subscriber of this process (what a broker-backed
    /// broadcast does with what arrives from the broker).
    pub fn deliver(&self, item: &Broadcasted) {
        let mut subscribers = lock(&self.inner.subscribers);
        subscribers.retain(|queue| match queue.upgrade() {
            Some(queue) => {
                queue.push(item.clone(), self.inner.capacity);
                true
            }
            None => false,
        });
    }
}

impl Queue {
    fn push(&self, item: Broadcasted, capacity: usize) {
        let mut state = lock(&self.state);
        if state.items.len() >= capacity {
            // Too far behind: what is queued is lost, and said to be.
            state.items.clear();
            state.items.push_back(Broadcasted::Gap);
        } else if !(item == Broadcasted::Gap && state.items.back() == Some(&Broadcasted::Gap)) {
            state.items.push_back(item);
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

struct Subscription(Arc<Queue>);

impl Stream for Subscription {
    type Item = Broadcasted;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Broadcasted>> {
        let mut state = lock(&self.0.state);
        match state.items.pop_front() {
            Some(item) => Poll::Ready(Some(item)),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[async_trait]
impl Broadcast for InProcessBroadcast {
    async fn publish(&self, payload: Vec<u8>) -> Result<(), Error> {
        self.deliver(&Broadcasted::Payload(payload.into()));
        Ok(())
    }

    async fn subscribe(&self) -> Result<BroadcastStream, Error> {
        let queue = Arc::new(Queue::default());
        lock(&self.inner.subscribers).push(Arc::downgrade(&queue));
        Ok(Box::pin(Subscription(queue)))
    }
}
