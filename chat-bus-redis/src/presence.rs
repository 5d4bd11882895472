//! Presence shared by every node: each live connection is a seat in a sorted set per
//! user, scored by when it expires; each node refreshes its own seats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{Error, Presence, Seat, UserId, UserPresence};
use redis::aio::ConnectionManager;
use redis::{ProtocolVersion, Script};
use tokio::sync::RwLock;

use crate::connection;
use crate::error::from_redis;

/// How long a user's last-seen time is kept after they were last seen.
const LAST_SEEN_KEPT_MS: u64 = 30 * 24 * 3600 * 1000;
/// Most seats refreshed in one script call.
const REFRESH_BATCH: usize = 500;

/// Takes a seat (ARGV: member, time to live in ms, limit) after dropping expired ones;
/// 1 when taken, 0 at the limit.
const JOIN: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
";

/// Gives a seat back (KEYS: seats, last seen; ARGV: member, how long last seen is
/// kept) and records now as the user's last-seen time.
const LEAVE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SET', KEYS[2], now, 'PX', tonumber(ARGV[2]))
end
return 1
";

/// Moves the expiry of n seats on (KEYS: n seat sets, then n last-seen keys; ARGV:
/// time to live, how long last seen is kept, then n members), adding a seat Redis lost.
const REFRESH: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[1])
local n = #KEYS / 2
for i = 1, n do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 2])
  redis.call('PEXPIRE', KEYS[i], ttl)
  redis.call('SET', KEYS[n + i], now, 'PX', tonumber(ARGV[2]))
end
return n
";

/// Live seats and last-seen times of n users (KEYS: n seat sets, then n last-seen
/// keys): a flat list of {live seats, last seen in ms or -1} pairs.
const LOOKUP: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local n = #KEYS / 2
local out = {}
for i = 1, n do
  out[2 * i - 1] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
  out[2 * i] = tonumber(redis.call('GET', KEYS[n + i]) or '-1')
end
return out
";

/// A [`Presence`] shared by every node on one Redis.
///
/// Each seat lives `ttl` unless its node refreshes it, which a running node does every
/// third of `ttl`: the users of a node that died go offline within `ttl`. Times are
/// Redis' own clock, so nodes whose clocks differ still agree. Last-seen times are kept
/// 30 days (Redis holds nothing the store needs; a Redis that lost them answers `null`).
///
/// Cloning shares the connection and the seats; refreshing stops with the last clone.
#[derive(Clone)]
pub struct RedisPresence {
    shared: Arc<Shared>,
}

struct Shared {
    connection: ConnectionManager,
    prefix: String,
    node: u64,
    ttl: Duration,
    next_seat: AtomicU64,
    /// This node's seats, refreshed by the background task.
    seats: Mutex<HashMap<u64, UserId>>,
    /// Leaves share it and each refresh batch holds it alone, from choosing its seats
    /// until Redis answered or the call gave up (a later leave then goes out on the
    /// same connection, after it): a refresh re-adds seats Redis lost, so one that read
    /// a seat before its leave and wrote after would give it back to its user.
    refreshing: RwLock<()>,
    join: Script,
    leave: Script,
    refresh: Script,
    lookup: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.shared.prefix)
            .field("ttl", &self.shared.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    /// Presence on `url`, keys under `prefix`, seats living `ttl` (at least 1 s)
    /// without a refresh. Must be called within a Tokio runtime (it refreshes in the
    /// background).
    pub fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, Error> {
        let client = connection::client(url, ProtocolVersion::RESP2)?;
        let connection =
            ConnectionManager::new_lazy_with_config(client, connection::manager_config())
                .map_err(from_redis)?;
        let shared = Arc::new(Shared {
            connection,
            prefix: prefix.to_owned(),
            node: crate::notifier::node_id(),
            ttl: ttl.max(Duration::from_secs(1)),
            next_seat: AtomicU64::new(0),
            seats: Mutex::new(HashMap::new()),
            refreshing: RwLock::new(()),
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            refresh: Script::new(REFRESH),
            lookup: Script::new(LOOKUP),
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&shared), shared.ttl / 3));
        Ok(Self { shared })
    }
}

impl Shared {
    fn seats_key(&self, user: UserId) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    fn seen_key(&self, user: UserId) -> String {
        format!("{}:seen:{user}", self.prefix)
    }

    fn member(&self, seat: u64) -> String {
        format!("{:x}:{seat}", self.node)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn local_seats(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UserId>> {
        self.seats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refreshes every seat of this node, in batches, each holding `refreshing` alone.
    async fn refresh(&self) -> redis::RedisResult<()> {
        let ids: Vec<u64> = self.local_seats().keys().copied().collect();
        let mut connection = self.connection.clone();
        for ids in ids.chunks(REFRESH_BATCH) {
            let _alone = self.refreshing.write().await;
            // Only the seats still held: a leave since the list was taken is done.
            let batch: Vec<(u64, UserId)> = {
                let seats = self.local_seats();
                ids.iter()
                    .filter_map(|id| seats.get(id).map(|user| (*id, *user)))
                    .collect()
            };
            if batch.is_empty() {
                continue;
            }
            let mut invocation = self.refresh.prepare_invoke();
            for (_, user) in &batch {
                invocation.key(self.seats_key(*user));
            }
            for (_, user) in &batch {
                invocation.key(self.seen_key(*user));
            }
            invocation.arg(self.ttl_ms()).arg(LAST_SEEN_KEPT_MS);
            for (seat, _) in &batch {
                invocation.arg(self.member(*seat));
            }
            invocation.invoke_async::<i64>(&mut connection).await?;
        }
        Ok(())
    }
}

/// Refreshes the node's seats every `period` while the presence lives.
async fn refresh_loop(shared: Weak<Shared>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.refresh().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("presence refreshes on Redis again");
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "presence cannot refresh on Redis: this node's users may show offline until it is back");
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, user: UserId, limit: usize) -> Result<Option<Seat>, Error> {
        let shared = &self.shared;
        let id = shared.next_seat.fetch_add(1, Ordering::Relaxed);
        let mut connection = shared.connection.clone();
        let taken: i64 = shared
            .join
            .key(shared.seats_key(user))
            .arg(shared.member(id))
            .arg(shared.ttl_ms())
            .arg(limit)
            .invoke_async(&mut connection)
            .await
            .map_err(from_redis)?;
        if taken == 0 {
            return Ok(None);
        }
        shared.local_seats().insert(id, user);
        Ok(Some(Seat { user, id }))
    }

    async fn leave(&self, seat: Seat) -> Result<(), Error> {
        let shared = &self.shared;
        // Before any wait, so a leave dropped while it waits is still never refreshed:
        // a batch that chose the seat already holds the lock and answers first.
        shared.local_seats().remove(&seat.id);
        let _no_refresh = shared.refreshing.read().await;
        let mut connection = shared.connection.clone();
        shared
            .leave
            .key(shared.seats_key(seat.user))
            .key(shared.seen_key(seat.user))
            .arg(shared.member(seat.id))
            .arg(LAST_SEEN_KEPT_MS)
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(from_redis)?;
        Ok(())
    }

    async fn lookup(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        let mut invocation = shared.lookup.prepare_invoke();
        for user in users {
            invocation.key(shared.seats_key(*user));
        }
        for user in users {
            invocation.key(shared.seen_key(*user));
        }
        let mut connection = shared.connection.clone();
        let answer: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(from_redis)?;
        Ok(users
            .iter()
            .zip(answer.chunks_exact(2))
            .map(|(&user_id, pair)| UserPresence {
                user_id,
                online: pair[0] > 0,
                last_seen_at: (pair[1] >= 0)
                    .then(|| chat_core::timestamp::from_unix_micros(pair[1].saturating_mul(1_000)))
                    .flatten(),
            })
            .collect())
    }
}
