//! How Redis failures become the core's errors.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Server answers that mean "not now" rather than "never": Redis loading its data,
/// a replica after a failover, a cluster settling, memory full, a script running too
/// long. Callers treat them like an outage (each node goes on alone) instead of a bug.
const TRANSIENT_CODES: [&str; 2] = ["OOM", "BUSY"];

/// `Unavailable` when Redis cannot be reached, did not answer in time, or answered
/// that it cannot serve now; `Internal` for anything else (a script error is a bug,
/// not an outage).
pub(crate) fn from_redis(error: RedisError) -> chat_core::Error {
    let transient_server = matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
        )
    ) || error
        .code()
        .is_some_and(|code| TRANSIENT_CODES.contains(&code));
    if transient_server
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
    {
        chat_core::Error::unavailable(error)
    } else {
        chat_core::Error::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> RedisError {
        // How the client reports an error reply of the server.
        redis::parse_redis_value(format!("-{code} {detail}\r\n").as_bytes())
            .and_then(redis::Value::extract_error)
            .unwrap_err()
    }

    #[test]
    fn transient_server_answers_are_outages_and_script_errors_are_bugs() {
        for (code, detail) in [
            ("LOADING", "Redis is loading the dataset in memory"),
            ("READONLY", "You can't write against a read only replica."),
            ("MASTERDOWN", "Link with MASTER is down"),
            ("TRYAGAIN", "Multiple keys request during rehashing of slot"),
            ("OOM", "command not allowed when used memory > 'maxmemory'."),
            ("BUSY", "Redis is busy running a script."),
        ] {
            let error = from_redis(server(code, detail));
            assert!(
                matches!(error, chat_core::Error::Unavailable { .. }),
                "{code}: {error:?}"
            );
        }
        let error = from_redis(server("ERR", "Error running script"));
        assert!(
            matches!(error, chat_core::Error::Internal { .. }),
            "{error:?}"
        );
    }
}
