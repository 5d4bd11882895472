use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::UserId;
use crate::ports::{Presence, Seat, UserPresence};
use crate::timestamp;

/// [`Presence`] within one process: each user's live seats and last-seen time.
#[derive(Debug, Default)]
pub struct InMemoryPresence {
    next_seat: AtomicU64,
    users: Mutex<HashMap<UserId, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    seats: Vec<u64>,
    last_seen_at: Option<OffsetDateTime>,
}

impl InMemoryPresence {
    /// Nobody online.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Presence for InMemoryPresence {
    async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = users.entry(user).or_default();
        if entry.seats.len() >= limit {
            return Ok(None);
        }
        let id = self.next_seat.fetch_add(1, Ordering::Relaxed);
        entry.seats.push(id);
        Ok(Some(Seat { user, id }))
    }

    async fn leave(&self, seat: Seat) -> Result<(), Error> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = users.get_mut(&seat.user) {
            let before = entry.seats.len();
            entry.seats.retain(|id| *id != seat.id);
            if entry.seats.is_empty() && before > 0 {
                entry.last_seen_at = Some(timestamp::now());
            }
        }
        Ok(())
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
        let known = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(users
            .iter()
            .map(|&user_id| {
                let entry = known.get(&user_id);
                let online = entry.is_some_and(|entry| !entry.seats.is_empty());
                UserPresence {
                    user_id,
                    online,
                    last_seen_at: if online {
                        Some(timestamp::now())
                    } else {
                        entry.and_then(|entry| entry.last_seen_at)
                    },
                }
            })
            .collect())
    }
}
