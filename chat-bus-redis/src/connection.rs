//! Opening connections to Redis the same way for every adapter.

use std::time::Duration;

use chat_core::{Error, ValidationCode};
use redis::aio::ConnectionManagerConfig;
use redis::{Client, IntoConnectionInfo, ProtocolVersion};

/// How long a command waits for Redis before it counts as unavailable.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one connection attempt may take.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// A client for `url` (`redis://[user:pass@]host:port[/db]`; no TLS) speaking
/// `protocol`: an operator never has to add `?protocol=resp3` for pub/sub.
pub(crate) fn client(url: &str, protocol: ProtocolVersion) -> Result<Client, Error> {
    if url
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
    {
        return Err(Error::invalid(
            "redis_url",
            ValidationCode::InvalidFormat,
            "TLS to Redis (rediss://) is not supported: reach Redis over a private network \
             or a TLS tunnel, with a redis:// URL.",
        ));
    }
    let info = url.into_connection_info().map_err(|_| {
        // The URL may hold a password: it is not repeated.
        Error::invalid(
            "redis_url",
            ValidationCode::InvalidFormat,
            "The Redis URL is not a valid redis:// URL.",
        )
    })?;
    let settings = info.redis_settings().clone().set_protocol(protocol);
    Client::open(info.set_redis_settings(settings)).map_err(crate::error::from_redis)
}

/// Timeouts that turn an unreachable Redis into a quick `Unavailable`, and one retry
/// of a connection attempt before a command gives up (the next command tries again).
pub(crate) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls_are_refused_with_the_reason() {
        for url in ["rediss://127.0.0.1:6379", "REDISS://host"] {
            let error = client(url, ProtocolVersion::RESP2).unwrap_err();
            assert!(
                error.to_string().contains("not supported"),
                "{url}: {error}"
            );
        }
        let error = client("http://host", ProtocolVersion::RESP2).unwrap_err();
        assert!(
            error.to_string().contains("not a valid redis:// URL"),
            "{error}"
        );
        assert!(client("redis://127.0.0.1:6379/0", ProtocolVersion::RESP2).is_ok());
    }
}
