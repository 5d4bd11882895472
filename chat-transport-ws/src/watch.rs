//! Presence watches: each connection's bounded list of watched users, and the node's
//! one relay that hands presence news to the connections watching the user it names.
//!
//! News only says "look again at this user": what a watcher is shown comes from
//! `ChatService::presence_of`, which applies the grace, blocks and the policy. A
//! connection therefore never learns more than a REST lookup would tell it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chat_core::{Broadcasted, ChatService, UserId, UserPresence};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// How long the relay waits before subscribing again after the news stopped.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The node's relay of presence news to watching connections. Cloning shares it.
#[derive(Clone, Debug)]
pub(crate) struct PresenceRelay {
    inner: Arc<RelayInner>,
}

#[derive(Debug)]
struct RelayInner {
    chat: ChatService,
    /// The watches of each watched user, by watch id.
    watchers: Mutex<HashMap<UserId, HashMap<u64, Arc<Pending>>>>,
    next_watch: AtomicU64,
    started: AtomicBool,
}

/// The users a watch should look at again, and the wake-up of its connection.
#[derive(Debug, Default)]
struct Pending {
    users: Mutex<BTreeSet<UserId>>,
    notify: Notify,
}

impl Pending {
    fn mark(&self, user: UserId) {
        lock(&self.users).insert(user);
        // Stores a permit when the connection is busy: no news is lost.
        self.notify.notify_one();
    }
}

impl PresenceRelay {
    pub(crate) fn new(chat: ChatService) -> Self {
        Self {
            inner: Arc::new(RelayInner {
                chat,
                watchers: Mutex::new(HashMap::new()),
                next_watch: AtomicU64::new(0),
                started: AtomicBool::new(false),
            }),
        }
    }

    /// A new, empty watch for one connection.
    pub(crate) fn watch(&self) -> Watch {
        self.start();
        Watch {
            relay: self.clone(),
            id: self.inner.next_watch.fetch_add(1, Ordering::Relaxed),
            pending: Arc::new(Pending::default()),
            users: Vec::new(),
            shown: HashMap::new(),
        }
    }

    /// Subscribes to the news once, on the first watch, for as long as the relay lives.
    fn start(&self) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let relay = Arc::downgrade(&self.inner);
        tokio::spawn(async move { relay_news(relay).await });
    }
}

/// Hands each piece of news to the watches of the user it names; after a gap, every
/// watch looks again at everyone it watches.
async fn relay_news(relay: Weak<RelayInner>) {
    loop {
        let Some(inner) = relay.upgrade() else { return };
        let subscribed = inner.chat.presence_changes().await;
        drop(inner);
        let mut news = match subscribed {
            Ok(news) => news,
            Err(error) => {
                tracing::debug!(%error, "presence news unavailable; trying again");
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                continue;
            }
        };
        while let Some(item) = news.next().await {
            let Some(inner) = relay.upgrade() else { return };
            let watchers = lock(&inner.watchers);
            match item {
                Broadcasted::Payload(payload) => {
                    if let Some(user) = ChatService::presence_news_user(&payload)
                        && let Some(watches) = watchers.get(&user)
                    {
                        for pending in watches.values() {
                            pending.mark(user);
                        }
                    }
                }
                _ => {
                    for (&user, watches) in watchers.iter() {
                        for pending in watches.values() {
                            pending.mark(user);
                        }
                    }
                }
            }
        }
        // The stream ended (the broker went away): everyone looks again once it is back.
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

/// One connection's watch list and what it has shown of each user.
#[derive(Debug)]
pub(crate) struct Watch {
    relay: PresenceRelay,
    id: u64,
    pending: Arc<Pending>,
    users: Vec<UserId>,
    shown: HashMap<UserId, UserPresence>,
}

impl Watch {
    /// Watches `users` instead of the current list; what it had shown is forgotten.
    pub(crate) fn replace(&mut self, users: &[UserId]) {
        self.unregister();
        self.users = users.to_vec();
        self.users.sort_unstable();
        self.users.dedup();
        self.shown.clear();
        lock(&self.pending.users).clear();
        let mut watchers = lock(&self.relay.inner.watchers);
        for &user in &self.users {
            watchers
                .entry(user)
                .or_default()
                .insert(self.id, Arc::clone(&self.pending));
        }
    }

    /// Waits for news of a watched user. Cancel-safe.
    pub(crate) async fn news(&self) {
        self.pending.notify.notified().await;
    }

    /// The watched users with news since the last call.
    pub(crate) fn take(&self) -> Vec<UserId> {
        std::mem::take(&mut *lock(&self.pending.users))
            .into_iter()
            .filter(|user| self.users.binary_search(user).is_ok())
            .collect()
    }

    /// Of `looked`, what differs from what was shown (now remembered as shown): a
    /// user coming online, going offline, or seen later while offline. A user who
    /// became hidden (a block) while shown offline brings no frame: nothing new is
    /// shown, and the old time says nothing the watcher did not know.
    pub(crate) fn changes(&mut self, looked: Vec<UserPresence>) -> Vec<UserPresence> {
        looked
            .into_iter()
            .filter(|now| {
                let changed = self.shown.get(&now.user_id).is_none_or(|before| {
                    before.online != now.online
                        || (!now.online
                            && now.last_seen_at.is_some()
                            && before.last_seen_at != now.last_seen_at)
                });
                if changed {
                    self.shown.insert(now.user_id, *now);
                }
                changed
            })
            .collect()
    }

    fn unregister(&self) {
        let mut watchers = lock(&self.relay.inner.watchers);
        for user in &self.users {
            if let Some(watches) = watchers.get_mut(user) {
                watches.remove(&self.id);
                if watches.is_empty() {
                    watchers.remove(user);
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.unregister();
    }
}
