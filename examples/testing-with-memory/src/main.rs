//! Run with: cargo run -p example-testing-with-memory
//!
//! How a host tests its own use of the chat API: the chat router with in-memory
//! adapters and a stand-in authenticator, driven with `tower::ServiceExt::oneshot` —
//! no socket, no database, no tokens to mint. Each check below is an ordinary async
//! function: `main` runs them and prints the outcome, and `cargo test -p
//! example-testing-with-memory` runs the same functions as `#[tokio::test]`s.

use std::sync::Arc;

use chat::http::axum::Router;
use chat::http::axum::body::Body;
use chat::http::axum::http::{Request, StatusCode};
use chat::http::{AppState, router};
use chat::{AuthError, Authenticator, ChatService, Error, Identity, UserId};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Tests log in as `user-<id>`; anything else is refused.
struct TestUsers;

#[chat::async_trait]
impl Authenticator for TestUsers {
    async fn authenticate(&self, credential: &str) -> Result<Identity, Error> {
        let id = credential
            .strip_prefix("user-")
            .and_then(|id| id.parse().ok());
        match id {
            Some(id) if id >= 1 => Ok(Identity {
                user_id: UserId::new(id),
                expires_at: None,
            }),
            _ => Err(Error::Unauthenticated(AuthError::Invalid)),
        }
    }
}

/// The host under test: its chat nested at `/chat`, everything in memory.
struct TestHost {
    app: Router,
    chat: ChatService,
}

impl TestHost {
    fn new() -> Self {
        let chat = ChatService::in_memory();
        let state = AppState::builder(chat.clone(), Arc::new(TestUsers)).build();
        Self {
            app: Router::new().nest("/chat", router(state)),
            chat,
        }
    }

    /// One request as `user` (0: anonymous); the status and the JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        user: i64,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if user > 0 {
            request = request.header("authorization", format!("Bearer user-{user}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).expect("a valid request"))
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

async fn a_sent_message_shows_in_the_receivers_history() {
    let host = TestHost::new();
    let (status, sent) = host
        .call(
            "POST",
            "/chat/send",
            1,
            Some(json!({"receiver_id": 2, "message": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sent["data"]["status"], "sent");
    let (status, page) = host.call("GET", "/chat/messages/1", 2, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"][0]["message"], "hi");
    // The service the host holds sees the same store.
    assert_eq!(
        host.chat
            .unread_total(UserId::new(2))
            .await
            .expect("unread"),
        1
    );
}

async fn invalid_input_is_a_422_naming_the_field() {
    let host = TestHost::new();
    let (status, body) = host
        .call(
            "POST",
            "/chat/send",
            1,
            Some(json!({"receiver_id": 2, "message": "  "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["errors"]["message"].is_array(), "{body}");
}

async fn strangers_and_anonymous_callers_see_nothing() {
    let host = TestHost::new();
    host.call(
        "POST",
        "/chat/send",
        1,
        Some(json!({"receiver_id": 2, "message": "private"})),
    )
    .await;
    let (status, page) = host.call("GET", "/chat/messages/1", 3, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"], json!([]), "user 3 must not see 1↔2");
    let (status, _) = host.call("GET", "/chat/messages/1", 0, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::main]
async fn main() {
    a_sent_message_shows_in_the_receivers_history().await;
    println!("ok  a sent message shows in the receiver's history");
    invalid_input_is_a_422_naming_the_field().await;
    println!("ok  invalid input is a 422 naming the field");
    strangers_and_anonymous_callers_see_nothing().await;
    println!("ok  strangers and anonymous callers see nothing");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_sent_message_shows_in_the_receivers_history() {
        super::a_sent_message_shows_in_the_receivers_history().await;
    }

    #[tokio::test]
    async fn invalid_input_is_a_422_naming_the_field() {
        super::invalid_input_is_a_422_naming_the_field().await;
    }

    #[tokio::test]
    async fn strangers_and_anonymous_callers_see_nothing() {
        super::strangers_and_anonymous_callers_see_nothing().await;
    }
}
