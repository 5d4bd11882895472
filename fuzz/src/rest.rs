//! The REST API in process: `chat_server::app` called with `tower::ServiceExt::oneshot`,
//! as the API tests do, so every extractor, handler and error body is the server's own.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chat_transport_ws::WsConfig;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::runtime::Runtime;
use tower::ServiceExt;

use crate::{ALICE, BOB, seeded_state, token};

/// The router and the runtime that drives it, built once per process.
pub struct Rest {
    runtime: Runtime,
    app: Router,
    alice: String,
    bob: String,
}

/// The caller of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// User 1.
    Alice,
    /// User 2.
    Bob,
}

impl Caller {
    /// The caller's user id.
    pub fn id(self) -> i64 {
        match self {
            Self::Alice => ALICE,
            Self::Bob => BOB,
        }
    }

    /// The other participant of the seeded conversation.
    pub fn counterpart(self) -> i64 {
        match self {
            Self::Alice => BOB,
            Self::Bob => ALICE,
        }
    }
}

/// An answer of the API.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body, whole.
    pub body: Vec<u8>,
}

/// The process's harness.
pub fn rest() -> &'static Rest {
    static REST: OnceLock<Rest> = OnceLock::new();
    REST.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let state = seeded_state(&runtime, WsConfig::default());
        Rest {
            app: chat_server::app(state),
            runtime,
            alice: format!("Bearer {}", token(ALICE)),
            bob: format!("Bearer {}", token(BOB)),
        }
    })
}

impl Rest {
    /// Sends one request as `caller` and reads the whole answer.
    pub fn call(
        &self,
        caller: Caller,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri).header(
            header::AUTHORIZATION,
            match caller {
                Caller::Alice => &self.alice,
                Caller::Bob => &self.bob,
            },
        );
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Body::from(body.to_vec()))
            .unwrap_or_else(|error| panic!("the harness built a bad request for {uri}: {error}"));
        self.runtime.block_on(async {
            let response = match self.app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("an in-memory body is read whole")
                .to_bytes()
                .to_vec();
            Answer { status, body }
        })
    }
}

/// Panics unless `answer` has one of the `expected` statuses (never a 5xx) and a JSON
/// body in the API's shape: an error has a non-empty `message`, and a 422 an `errors`
/// object whose every field has at least one non-empty message.
pub fn check(answer: &Answer, expected: &[u16], request: &dyn std::fmt::Display) {
    let status = answer.status.as_u16();
    let body = String::from_utf8_lossy(&answer.body);
    assert!(
        !answer.status.is_server_error(),
        "{status} for {request}: {body}"
    );
    assert!(
        expected.contains(&status),
        "unexpected {status} (expected one of {expected:?}) for {request}: {body}"
    );
    let json: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|error| panic!("{status} for {request} is not JSON ({error}): {body}"));
    if !answer.status.is_success() {
        let message = json["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{status} for {request} without a message: {body}"
        );
    }
    if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
        let errors = json["errors"]
            .as_object()
            .unwrap_or_else(|| panic!("422 for {request} without errors: {body}"));
        assert!(
            !errors.is_empty(),
            "422 for {request} with no field named: {body}"
        );
        for (field, messages) in errors {
            let messages = messages.as_array().map(Vec::as_slice).unwrap_or_default();
            assert!(
                // A field may be named "" when the body has a key "".
                !messages.is_empty()
                    && messages
                        .iter()
                        .all(|m| m.as_str().is_some_and(|m| !m.is_empty())),
                "422 for {request} with a bad entry for {field:?}: {body}"
            );
        }
    }
}

/// `path?query` with arbitrary bytes as the query. Bytes a query may hold as they are
/// stay (so `&`, `=`, `+` and `%` keep their meaning, and `%` may start a bad escape);
/// every other byte is percent-encoded, and `%` too should the URI not parse.
pub fn with_query(path: &str, query: &[u8]) -> String {
    let raw = format!(
        "{path}?{}",
        encode(query, |b| {
            b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
        })
    );
    if raw.parse::<axum::http::Uri>().is_ok() {
        return raw;
    }
    format!(
        "{path}?{}",
        encode(query, |b| {
            b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b)
        })
    )
}

/// Arbitrary bytes as one path segment: everything but unreserved characters
/// percent-encoded, so the segment never splits and the route always matches.
pub fn segment_from_bytes(bytes: &[u8]) -> String {
    encode(bytes, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn encode(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
