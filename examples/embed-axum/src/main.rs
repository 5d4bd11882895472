//! Run with: cargo run -p example-embed-axum
//!
//! An existing axum application — its own state, its own routes, its own API keys and
//! its own middleware — nests the chat API under `/chat`, stored in SQLite. The chat
//! authenticates with the host's API keys through a custom `Authenticator`, and follows
//! the host's own rule of who may talk to whom through a custom `Policy` (only members
//! of the same team). The example serves on a loopback port, calls both the host's
//! routes and the chat's as a client would, prints what it got, and exits.

use std::collections::HashMap;
use std::sync::Arc;

use chat::http::axum::extract::{Request, State};
use chat::http::axum::http::{HeaderMap, HeaderValue, StatusCode};
use chat::http::axum::middleware::{self, Next};
use chat::http::axum::response::Response;
use chat::http::axum::{Router, routing::get};
use chat::http::{AppState, bearer_token, router};
use chat::sqlite::SqliteStore;
use chat::{
    AuthError, Authenticator, ChatService, Error, Identity, InProcessNotifier, Policy, UserId,
};

/// The host's own accounts: API key → user id.
#[derive(Clone)]
struct ApiKeys(Arc<HashMap<&'static str, i64>>);

impl ApiKeys {
    fn user(&self, key: &str) -> Option<UserId> {
        self.0.get(key).map(|&id| UserId::new(id))
    }
}

/// The chat accepts exactly the keys the host accepts.
#[chat::async_trait]
impl Authenticator for ApiKeys {
    async fn authenticate(&self, credential: &str) -> Result<Identity, Error> {
        match self.user(credential) {
            Some(user_id) => Ok(Identity {
                user_id,
                expires_at: None,
            }),
            None if credential.is_empty() => Err(Error::Unauthenticated(AuthError::Missing)),
            None => Err(Error::Unauthenticated(AuthError::Invalid)),
        }
    }
}

/// The host's teams: user id → team. The chat asks it before every send, typing
/// indicator and presence lookup; blocks users make still hold on top of it.
#[derive(Clone)]
struct Teams(Arc<HashMap<i64, &'static str>>);

#[chat::async_trait]
impl Policy for Teams {
    async fn may_message(&self, sender: UserId, receiver: UserId) -> Result<bool, Error> {
        let team = |user: UserId| self.0.get(&user.get());
        Ok(team(sender).is_some() && team(sender) == team(receiver))
    }

    /// Team mates see each other's presence even before they first talk.
    async fn may_see(
        &self,
        watcher: UserId,
        user: UserId,
        _acquainted: bool,
    ) -> Result<bool, Error> {
        self.may_message(watcher, user).await
    }
}

/// The host's own route, behind the host's own authentication.
async fn me(State(keys): State<ApiKeys>, headers: HeaderMap) -> Result<String, StatusCode> {
    let user = keys.user(bearer_token(&headers));
    user.map(|u| format!("you are user {u}"))
        .ok_or(StatusCode::UNAUTHORIZED)
}

/// The host's middleware: it wraps the chat routes like any other.
async fn served_by(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("x-served-by", HeaderValue::from_static("host-app"));
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = ApiKeys(Arc::new(HashMap::from([
        ("alice-key", 1),
        ("bob-key", 2),
        ("carol-key", 3),
    ])));
    let teams = Teams(Arc::new(HashMap::from([
        (1, "red"),
        (2, "red"),
        (3, "blue"),
    ])));
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("chat.db")).await?;
    let chat = ChatService::new(Arc::new(store), Arc::new(InProcessNotifier::new()))
        .with_policy(Arc::new(teams));
    let chat_state = AppState::builder(chat, Arc::new(keys.clone())).build();

    let app = Router::new()
        .route("/", get(|| async { "the host's home page" }))
        .route("/me", get(me))
        .nest("/chat", router(chat_state))
        .layer(middleware::from_fn(served_by))
        .with_state(keys);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { chat::http::axum::serve(listener, app).await });
    println!("host app with the chat API nested under /chat at {base}\n");

    let http = reqwest::Client::new();
    let show = |what: &str, answer: &reqwest::Response| {
        let by = answer
            .headers()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok());
        println!(
            "{what}: {} (x-served-by: {})",
            answer.status(),
            by.unwrap_or("-")
        );
    };
    let answer = http
        .get(format!("{base}/me"))
        .bearer_auth("alice-key")
        .send()
        .await?;
    show("GET /me as Alice", &answer);
    println!("  {}", answer.text().await?);

    let body = serde_json::json!({"receiver_id": 2, "message": "Hi Bob, from inside the host app"});
    let answer = http
        .post(format!("{base}/chat/send"))
        .bearer_auth("alice-key")
        .json(&body)
        .send()
        .await?;
    show("POST /chat/send as Alice", &answer);
    println!("  {}", answer.text().await?);

    let answer = http
        .get(format!("{base}/chat/messages/1"))
        .bearer_auth("bob-key")
        .send()
        .await?;
    show("GET /chat/messages/1 as Bob", &answer);
    let page: serde_json::Value = answer.json().await?;
    println!(
        "  {} message(s); first: {}",
        page["meta"]["total"], page["data"][0]["message"]
    );

    let answer = http
        .post(format!("{base}/chat/send"))
        .bearer_auth("stolen-key")
        .json(&body)
        .send()
        .await?;
    show("POST /chat/send with an unknown key", &answer);
    println!("  {}", answer.text().await?);

    // Carol is in another team: the host's policy refuses, with a neutral message.
    let to_alice = serde_json::json!({"receiver_id": 1, "message": "Hi Alice, from team blue"});
    let answer = http
        .post(format!("{base}/chat/send"))
        .bearer_auth("carol-key")
        .json(&to_alice)
        .send()
        .await?;
    show("POST /chat/send as Carol to Alice (another team)", &answer);
    let refused = answer.status();
    println!("  {}", answer.text().await?);

    server.abort();
    if refused != StatusCode::FORBIDDEN.as_u16() {
        return Err(format!("the host's policy did not refuse: {refused}").into());
    }
    Ok(())
}
