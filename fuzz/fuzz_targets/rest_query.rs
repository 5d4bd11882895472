//! Arbitrary query strings through the REST API's query parsers, in the real router:
//! history paging and cursors, the conversation list's cursor, the WebSocket
//! handshake's `after_id`, and the path id before a history query. The first byte picks
//! the endpoint. Never a 5xx or a panic; a refusal is a 422 naming each bad parameter.
#![no_main]

use axum::http::Method;
use chat_fuzz::rest::{Caller, check, rest, segment_from_bytes, with_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let caller = if selector & 0x80 == 0 {
        Caller::Alice
    } else {
        Caller::Bob
    };
    let counterpart = caller.counterpart();
    let (uri, expected): (String, &[u16]) = match selector % 4 {
        0 => (
            with_query(&format!("/api/chat/messages/{counterpart}"), input),
            &[200, 422],
        ),
        1 => (with_query("/api/chat/conversations", input), &[200, 422]),
        // Not an upgrade request: after the query is read, the handshake is refused.
        2 => (with_query("/api/chat/ws", input), &[400, 422, 426]),
        _ => {
            // The bytes before the first `?` are the path id, the rest the query.
            let split = input.iter().position(|&b| b == b'?').unwrap_or(input.len());
            let (id, query) = input.split_at(split);
            let path = format!("/api/chat/messages/{}", segment_from_bytes(id));
            let uri = with_query(&path, query.get(1..).unwrap_or_default());
            // An id that is not UTF-8 once decoded is not an integer either: 422.
            if std::str::from_utf8(id).is_ok() {
                (uri, &[200, 404, 422])
            } else {
                (uri, &[422])
            }
        }
    };
    let answer = rest().call(caller, Method::GET, &uri, None, b"");
    check(&answer, expected, &format_args!("GET {uri}"));
});
