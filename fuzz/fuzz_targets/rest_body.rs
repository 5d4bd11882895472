//! Arbitrary bytes as the JSON body of the send and mark-read endpoints, in the real
//! router: the body extractors, their error messages (malformed JSON, repeated keys,
//! unknown fields, wrong types) and the handlers behind them. The first byte picks the
//! endpoint, the content type and the caller. Never a 5xx or a panic, and a body is
//! refused as malformed (400) exactly when it is not well-formed JSON.
#![no_main]

use axum::http::Method;
use chat_fuzz::rest::{Caller, check, rest};
use chat_fuzz::shown;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let caller = if selector & 0x80 == 0 {
        Caller::Alice
    } else {
        Caller::Bob
    };
    let read_path = format!("/api/chat/conversations/{}/read", caller.counterpart());
    let (path, content_type, expected): (&str, Option<&str>, &[u16]) = match selector % 4 {
        0 => (
            "/api/chat/send",
            Some("application/json"),
            &[200, 201, 400, 409, 422],
        ),
        1 => (&read_path, Some("application/json"), &[200, 400, 422]),
        // A structured-syntax suffix with parameters is JSON too.
        2 => (
            "/api/chat/send",
            Some("application/vnd.chat+json; charset=utf-8"),
            &[200, 201, 400, 409, 422],
        ),
        // The optional body without a content type: empty or null is no body, the rest 415.
        _ => (&read_path, None, &[200, 415]),
    };
    let answer = rest().call(caller, Method::POST, path, content_type, body);
    let request = format_args!("POST {path} {}", shown(body));
    check(&answer, expected, &request);
    // An empty or `null` optional body is no body at all, not malformed JSON. (The
    // server trims ASCII whitespace, form feed included, which JSON does not count.)
    let no_body = path == read_path && matches!(body.trim_ascii(), b"" | b"null");
    if content_type.is_some() && !no_body {
        let well_formed = serde_json::from_slice::<serde_json::Value>(body).is_ok();
        assert_eq!(
            answer.status == 400,
            !well_formed,
            "{} for {request} (well-formed JSON: {well_formed}): {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
});
