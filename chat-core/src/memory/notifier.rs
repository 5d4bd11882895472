use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use futures_core::Stream;

use crate::error::Error;
use crate::event::Event;
use crate::ids::UserId;
use crate::ports::{EventStream, Notice, Notifier};

/// A drained queue that grew beyond this many slots gives its memory back.
const KEEP_SLOTS: usize = 16;

/// A [`Notifier`] within one process: each subscriber gets its own bounded queue.
/// Publishing never waits: a subscriber whose queue is full is dropped (its stream
/// ends) and resumes from the store.
///
/// A queue holds no memory while it is empty, so an idle subscriber (an idle
/// WebSocket) costs a few dozen bytes.
#[derive(Clone, Debug)]
pub struct InProcessNotifier {
    hub: Arc<Hub>,
}

/// Each user's subscribers.
type Subscribers = HashMap<UserId, Vec<Arc<Queue>>>;

#[derive(Debug)]
struct Hub {
    capacity: usize,
    next_subscriber: AtomicU64,
    subscribers: Mutex<Subscribers>,
}

/// One subscriber's pending events and the waker of its stream.
#[derive(Debug)]
struct Queue {
    id: u64,
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    notices: VecDeque<Notice>,
    waker: Option<Waker>,
    /// Dropped for falling behind: the stream ends once drained.
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so poisoning is harmless.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    /// Queues `notice`; `false` if the queue was full and is now closed. A gap right
    /// after a gap says nothing new and is not queued twice.
    fn push(&self, notice: Notice, capacity: usize) -> bool {
        let mut state = lock(&self.state);
        let accepted = state.notices.len() < capacity;
        if matches!(notice, Notice::Gap) && state.notices.back() == Some(&Notice::Gap) {
            return true;
        }
        if accepted {
            state.notices.push_back(notice);
        } else {
            state.closed = true;
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        accepted
    }
}

impl Hub {
    fn unsubscribe(&self, user: UserId, subscriber: u64) {
        let mut map = lock(&self.subscribers);
        if let Some(list) = map.get_mut(&user) {
            list.retain(|queue| queue.id != subscriber);
            if list.is_empty() {
                map.remove(&user);
            }
        }
    }
}

impl InProcessNotifier {
    /// How many events a subscriber may fall behind before it is dropped, unless
    /// [`with_capacity`](Self::with_capacity) says otherwise. A WebSocket is such a
    /// subscriber: this is its outbound queue (`CHAT_WS_OUTBOUND_QUEUE`).
    pub const DEFAULT_CAPACITY: usize = 256;

    /// A notifier whose subscribers may fall [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
    /// events behind.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
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
        lock(&self.hub.subscribers).get(&user).map_or(0, Vec::len)
    }

    /// The users with at least one subscribed stream right now.
    pub fn subscribed_users(&self) -> Vec<UserId> {
        lock(&self.hub.subscribers).keys().copied().collect()
    }

    /// Hands `event` to every stream subscribed for `user` now, without waiting: what
    /// [`publish`](Notifier::publish) does, callable from code that cannot await (a
    /// broker client's receive loop).
    pub fn deliver(&self, user: UserId, event: &Event) {
        let mut map = lock(&self.hub.subscribers);
        if let Some(list) = map.get_mut(&user) {
            // Full: drop the subscriber rather than wait or grow.
            list.retain(|queue| queue.push(Notice::Event(event.clone()), self.hub.capacity));
            if list.is_empty() {
                map.remove(&user);
            }
        }
    }

    /// Tells every current subscriber that events may have been lost: each stream
    /// yields [`Notice::Gap`] after what it already holds. A bus adapter that uses this
    /// notifier for its local fan-out calls it when its broker connection came back.
    pub fn gap_all(&self) {
        let mut map = lock(&self.hub.subscribers);
        map.retain(|_, list| {
            list.retain(|queue| queue.push(Notice::Gap, self.hub.capacity));
            !list.is_empty()
        });
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
        self.deliver(user, &event);
        Ok(())
    }

    async fn subscribe(&self, user: UserId) -> Result<EventStream, Error> {
        let id = self.hub.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue {
            id,
            state: Mutex::new(QueueState::default()),
        });
        lock(&self.hub.subscribers)
            .entry(user)
            .or_default()
            .push(Arc::clone(&queue));
        Ok(Box::pin(Subscription {
            queue,
            hub: Arc::clone(&self.hub),
            user,
        }))
    }
}

/// One subscriber's stream; unsubscribes when dropped.
struct Subscription {
    queue: Arc<Queue>,
    hub: Arc<Hub>,
    user: UserId,
}

impl Stream for Subscription {
    type Item = Notice;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notice>> {
        let mut state = lock(&self.queue.state);
        if let Some(notice) = state.notices.pop_front() {
            if state.notices.is_empty() && state.notices.capacity() > KEEP_SLOTS {
                state.notices = VecDeque::new();
            }
            return Poll::Ready(Some(notice));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.user, self.queue.id);
    }
}
