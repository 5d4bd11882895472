//! How Redis failures become the core's errors.

use redis::RedisError;

/// `Unavailable` when Redis cannot be reached or did not answer in time; `Internal`
/// for anything else (a script error is a bug, not an outage).
pub(crate) fn from_redis(error: RedisError) -> chat_core::Error {
    if error.is_io_error()
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
