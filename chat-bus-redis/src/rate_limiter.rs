//! A rate limiter whose state lives in Redis: GCRA in a Lua script.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{Error, RateDecision, RateLimiter};
use redis::aio::ConnectionManager;
use redis::{ProtocolVersion, Script};

use crate::connection;
use crate::error::from_redis;

/// GCRA (the generic cell rate algorithm) on Redis' own clock. A key holds its
/// theoretical arrival time (TAT) in microseconds; a request of `cost` units moves it
/// `cost` emission intervals on, and passes when the TAT stays within the burst's span
/// of now. Answers `{allowed, remaining, wait in µs}`.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local span = interval * burst
if cost > burst then
  return {0, 0, span}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local new_tat = tat + interval * cost
local used = new_tat - now
if used > span then
  return {0, 0, used - span}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil(used / 1000)))
return {1, math.floor((span - used) / interval), 0}
";

/// A [`RateLimiter`] shared by every node on one Redis: `per_minute` units a minute on
/// average, bursts of up to `burst`, per key. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    prefix: String,
    interval_micros: u64,
    burst: u32,
    script: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on `url` (`redis://[user:pass@]host:port[/db]`), keys under
    /// `prefix`. Connects on first use and reconnects by itself; a check while Redis
    /// is out of reach is `Error::Unavailable` within about a second.
    pub fn connect(
        url: &str,
        prefix: &str,
        per_minute: NonZeroU32,
        burst: NonZeroU32,
    ) -> Result<Self, Error> {
        let client = connection::client(url, ProtocolVersion::RESP2)?;
        let connection =
            ConnectionManager::new_lazy_with_config(client, connection::manager_config())
                .map_err(from_redis)?;
        Ok(Self::new(connection, prefix, per_minute, burst))
    }

    /// A limiter on an existing connection, keys under `prefix`.
    pub fn new(
        connection: ConnectionManager,
        prefix: &str,
        per_minute: NonZeroU32,
        burst: NonZeroU32,
    ) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
            // Above 60 million a minute the interval would round to nothing: one
            // microsecond is the finest the script keeps.
            interval_micros: (60_000_000 / u64::from(per_minute.get())).max(1),
            burst: burst.get(),
            script: Script::new(GCRA),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error> {
        let mut connection = self.connection.clone();
        let (allowed, remaining, wait_micros): (i64, i64, i64) = self
            .script
            .key(format!("{}:rate:{key}", self.prefix))
            .arg(self.interval_micros)
            .arg(self.burst)
            .arg(cost.get())
            .invoke_async(&mut connection)
            .await
            .map_err(from_redis)?;
        let limit = self.burst;
        Ok(if allowed == 1 {
            RateDecision::Allowed {
                limit,
                remaining: u32::try_from(remaining).unwrap_or(0),
            }
        } else {
            RateDecision::Denied {
                limit,
                retry_after: Duration::from_micros(u64::try_from(wait_micros).unwrap_or(0)),
            }
        })
    }
}
