//! Presence as users see each other: online with a grace, last seen from the store,
//! hidden across blocks and from strangers, and the news of changes for watchers.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{ChatService, validation};
use crate::error::{Error, ValidationErrors};
use crate::ids::UserId;
use crate::ports::{Broadcast, BroadcastStream, Seat, UserPresence};
use crate::timestamp;

/// Most users one presence lookup (and one connection's watch list) may name.
pub const MAX_PRESENCE_USERS: usize = 100;

/// The longest grace a user keeps being shown online after their last connection
/// closed.
pub const MAX_PRESENCE_GRACE: Duration = Duration::from_secs(10);

impl ChatService {
    /// Publishes presence news (the id of a user whose presence may have changed)
    /// through `changes`, one shared by every node say, instead of within this
    /// process only. Watchers subscribe to it ([`presence_changes`](Self::presence_changes)).
    pub fn with_presence_changes(mut self, changes: Arc<dyn Broadcast>) -> Self {
        self.presence_changes = changes;
        self
    }

    /// Subscribes to presence news: each payload is the decimal id of a user whose
    /// presence may have changed; what a watcher may see of it comes from
    /// [`presence_of`](Self::presence_of). A gap means news may be lost: ask again
    /// for everyone watched.
    pub async fn presence_changes(&self) -> Result<BroadcastStream, Error> {
        self.presence_changes.subscribe().await
    }

    /// The user a presence news payload names; `None` for anything else.
    pub fn presence_news_user(payload: &[u8]) -> Option<UserId> {
        let id: i64 = std::str::from_utf8(payload).ok()?.parse().ok()?;
        (id >= 1).then(|| UserId::new(id))
    }

    /// Each of `users` as `caller` may see them, in order: whether online (a
    /// connection on any node, or one closed less than the grace ago) and when last
    /// seen. Users `caller` may not see (a block either way, or the policy says no; by
    /// default people they have no conversation with) answer offline and never seen,
    /// exactly like strangers. 1 to [`MAX_PRESENCE_USERS`] ids, each at least 1.
    ///
    /// While shared presence cannot be reached, users answer as this node and the
    /// store know them (offline unless connected here, last seen as stored).
    pub async fn presence_of(
        &self,
        caller: UserId,
        users: &[UserId],
    ) -> Result<Vec<UserPresence>, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        if users.is_empty() || users.len() > MAX_PRESENCE_USERS {
            errors.add(
                "user_ids",
                crate::ValidationCode::OutOfRange,
                format!("The user_ids field must list 1 to {MAX_PRESENCE_USERS} ids."),
            );
        }
        if users.iter().any(|user| user.get() < 1) {
            errors.add(
                "user_ids",
                crate::ValidationCode::OutOfRange,
                "Every id in user_ids must be at least 1.",
            );
        }
        errors.into_result()?;
        let visible = self.visible_to(caller, users).await?;
        self.presence_of_visible(users, &visible).await
    }

    /// The presence of each of `users`, shown only for those in `visible`.
    pub(super) async fn presence_of_visible(
        &self,
        users: &[UserId],
        visible: &[UserId],
    ) -> Result<Vec<UserPresence>, Error> {
        let now = timestamp::now();
        let (live, stored) = if visible.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let live = match self.presence.lookup(visible).await {
                Ok(live) => live,
                Err(error) => {
                    tracing::debug!(%error, "presence unavailable: answering from the store");
                    Vec::new()
                }
            };
            (live, self.repository.last_seen(visible).await?)
        };
        let grace =
            time::Duration::try_from(self.config.presence_grace).unwrap_or(time::Duration::ZERO);
        Ok(users
            .iter()
            .map(|&user_id| {
                if !visible.contains(&user_id) {
                    return UserPresence {
                        user_id,
                        online: false,
                        last_seen_at: None,
                    };
                }
                let here = live.iter().find(|p| p.user_id == user_id);
                let kept = stored
                    .iter()
                    .find(|(u, _)| *u == user_id)
                    .map(|(_, at)| *at);
                let last_seen_at = match (here.and_then(|p| p.last_seen_at), kept) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                let connected = here.is_some_and(|p| p.online);
                // A phone that reconnects within the grace never shows offline.
                let lingering = last_seen_at.is_some_and(|at| now - at < grace);
                UserPresence {
                    user_id,
                    online: connected || lingering,
                    last_seen_at: last_seen_at.map(timestamp::truncate_to_micros),
                }
            })
            .collect())
    }

    /// Tells watchers that `user`'s presence may have changed. Best effort.
    pub(super) async fn announce_presence(&self, user: UserId) {
        let payload = user.get().to_string().into_bytes();
        if let Err(error) = self.presence_changes.publish(payload).await {
            tracing::debug!(%user, %error, "could not announce a presence change");
        }
    }

    /// Settles `user`'s presence once the grace after a connection closed has passed
    /// (the transport calls it then): if no connection of theirs is left on any node,
    /// their last-seen time is stored (it outlives restarts) and watchers are told they
    /// went offline. Nothing happens while they are connected again.
    pub async fn settle_presence(&self, user: UserId) {
        let looked = match self.presence.lookup(&[user]).await {
            Ok(looked) => looked,
            Err(error) => {
                tracing::debug!(%user, %error, "presence unavailable: not settled");
                return;
            }
        };
        let Some(state) = looked.first().filter(|state| !state.online) else {
            return;
        };
        let at: OffsetDateTime = state.last_seen_at.unwrap_or_else(timestamp::now);
        if let Err(error) = self.repository.set_last_seen(user, at).await {
            tracing::warn!(%user, %error, "could not store a last-seen time");
        }
        self.announce_presence(user).await;
    }

    /// How long after a connection closes to call [`settle_presence`](Self::settle_presence)
    /// for its user.
    pub fn presence_grace(&self) -> Duration {
        self.config.presence_grace.min(MAX_PRESENCE_GRACE)
    }

    /// Gives back the seat of a connection that closed. Call
    /// [`settle_presence`](Self::settle_presence) for its user once
    /// [`presence_grace`](Self::presence_grace) has passed.
    pub async fn release(&self, seat: Seat) {
        if let Err(error) = self.presence.leave(seat).await {
            // The seat expires by itself within the presence's time to live.
            tracing::debug!(user = %seat.user, %error, "presence unavailable: seat left to expire");
        }
    }
}
