//! The chat API nested in a host's axum router: the host's routes, state and
//! middleware keep working, the chat routes work under the host's prefix with the
//! host's own authenticator, and a refused request never reaches the chat service.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use chat::{
    AuthError, Authenticator, ChatService, Error, GovernorRateLimiter, Identity,
    InMemoryRepository, InProcessNotifier, RateDecision, RateLimiter, UserId,
};
use chat_http::{AppState, Metrics};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The host's API keys: `key-<id>` is user `<id>`; every call is counted.
#[derive(Default)]
struct HostKeys {
    calls: AtomicUsize,
}

#[chat::async_trait]
impl Authenticator for HostKeys {
    async fn authenticate(&self, credential: &str) -> Result<Identity, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match credential
            .strip_prefix("key-")
            .and_then(|id| id.parse::<i64>().ok())
        {
            Some(id) if id >= 1 => Ok(Identity {
                user_id: UserId::new(id),
                expires_at: None,
            }),
            _ => Err(Error::Unauthenticated(AuthError::Invalid)),
        }
    }
}

/// A send limiter that counts how often the chat service consulted it.
struct CountingLimiter {
    inner: GovernorRateLimiter,
    calls: AtomicUsize,
}

#[chat::async_trait]
impl RateLimiter for CountingLimiter {
    async fn check(&self, key: &str, cost: NonZeroU32) -> Result<RateDecision, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.check(key, cost).await
    }
}

/// The host's own state.
#[derive(Clone)]
struct HostState {
    name: &'static str,
}

struct Host {
    app: Router,
    keys: Arc<HostKeys>,
    limiter: Arc<CountingLimiter>,
    metrics: Metrics,
}

impl Host {
    fn new() -> Self {
        let keys = Arc::new(HostKeys::default());
        let limiter = Arc::new(CountingLimiter {
            inner: GovernorRateLimiter::per_minute(
                NonZeroU32::new(600).unwrap(),
                NonZeroU32::new(100).unwrap(),
            ),
            calls: AtomicUsize::new(0),
        });
        let metrics = Metrics::new();
        // Every store call is timed into `metrics`: an empty store histogram means the
        // store was never touched.
        let store = metrics.measure(Arc::new(InMemoryRepository::new()));
        let chat = ChatService::new(Arc::new(store), Arc::new(InProcessNotifier::new()))
            .with_send_limiter(limiter.clone());
        let state = AppState::builder(chat, keys.clone())
            .metrics(metrics.clone())
            .build();
        let app = Router::new()
            .route(
                "/",
                get(|State(host): State<HostState>| async move { host.name }),
            )
            .nest("/chat", chat_http::router(state))
            .layer(middleware::from_fn(stamp))
            .with_state(HostState { name: "host home" });
        Self {
            app,
            keys,
            limiter,
            metrics,
        }
    }

    async fn call(&self, method: &str, uri: &str, key: &str, body: Option<Value>) -> Response {
        call(&self.app, method, uri, key, body).await
    }

    fn store_calls(&self) -> usize {
        self.metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("chat_store_duration_seconds_count"))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
            .sum()
    }
}

/// The host's middleware, around its routes and the chat's alike.
async fn stamp(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("x-host", HeaderValue::from_static("yes"));
    response
}

/// One request to `app` with `key` as the bearer value (none when empty).
async fn call(app: &Router, method: &str, uri: &str, key: &str, body: Option<Value>) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    if !key.is_empty() {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    app.clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap()
}

async fn json(response: Response) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test]
async fn host_routes_and_nested_chat_routes_both_work() {
    let host = Host::new();

    let home = host.call("GET", "/", "", None).await;
    assert_eq!(home.status(), StatusCode::OK);
    assert_eq!(home.headers()["x-host"], "yes");
    let bytes = home.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"host home");

    let sent = host
        .call(
            "POST",
            "/chat/send",
            "key-1",
            Some(json!({"receiver_id": 2, "message": "hello from the host"})),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(
        sent.headers()["x-host"],
        "yes",
        "host middleware wraps chat"
    );
    let sent = json(sent).await;
    assert_eq!(sent["data"]["sender_id"], 1);

    let page = host
        .call("GET", "/chat/messages/1?per_page=1", "key-2", None)
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = json(page).await;
    assert_eq!(page["data"][0]["message"], "hello from the host");
    let first = page["links"]["first"].as_str().unwrap();
    assert!(
        first.starts_with("/chat/messages/1?"),
        "links follow the host's prefix: {first}"
    );

    let conversations = json(host.call("GET", "/chat/conversations", "key-2", None).await).await;
    assert_eq!(conversations["data"][0]["unread_count"], 1);

    let missing = host.call("GET", "/chat/no-such-route", "key-1", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(json(missing).await["message"].is_string());
    // The WebSocket route is mounted too: without an upgrade it is refused, not missing.
    let socket = host.call("GET", "/chat/ws", "key-1", None).await;
    assert_ne!(socket.status(), StatusCode::NOT_FOUND);
    assert!(socket.status().is_client_error(), "{}", socket.status());
}

#[tokio::test]
async fn a_request_the_host_refuses_never_reaches_the_chat_service() {
    let host = Host::new();
    let refused = [
        (
            "POST",
            "/chat/send",
            Some(json!({"receiver_id": 2, "message": "sneaky"})),
        ),
        ("GET", "/chat/messages/2", None),
        ("PATCH", "/chat/read/1", None),
        ("GET", "/chat/conversations", None),
        ("POST", "/chat/conversations/2/read", None),
        ("GET", "/chat/ws", None),
    ];
    for key in ["", "key-0", "stolen", "key-abc"] {
        for (method, uri, body) in &refused {
            let answer = host.call(method, uri, key, body.clone()).await;
            assert_eq!(
                answer.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {key:?}"
            );
            assert_eq!(answer.headers()["x-host"], "yes");
        }
    }
    assert!(
        host.keys.calls.load(Ordering::SeqCst) >= refused.len() * 3,
        "the host's authenticator decided"
    );
    assert_eq!(
        host.limiter.calls.load(Ordering::SeqCst),
        0,
        "no allowance spent"
    );
    assert_eq!(host.store_calls(), 0, "the store was never touched");

    // The probes do see a request that gets through.
    let sent = host
        .call(
            "POST",
            "/chat/send",
            "key-1",
            Some(json!({"receiver_id": 2, "message": "welcome"})),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(host.limiter.calls.load(Ordering::SeqCst), 1);
    assert!(host.store_calls() >= 1);
}

#[tokio::test]
async fn two_chat_instances_in_one_process_share_nothing() {
    let keys = Arc::new(HostKeys::default());
    let instance = || {
        let state = AppState::builder(ChatService::in_memory(), keys.clone()).build();
        chat_http::router::<()>(state)
    };
    let app = Router::new()
        .nest("/support", instance())
        .nest("/sales", instance());
    let sent = call(
        &app,
        "POST",
        "/support/send",
        "key-1",
        Some(json!({"receiver_id": 2, "message": "to support"})),
    )
    .await;
    assert_eq!(json(sent).await["data"]["id"], 1);
    let other = json(call(&app, "GET", "/sales/messages/2", "key-1", None).await).await;
    assert_eq!(
        other["data"],
        json!([]),
        "the other instance has no messages"
    );
    let sent = call(
        &app,
        "POST",
        "/sales/send",
        "key-1",
        Some(json!({"receiver_id": 2, "message": "to sales"})),
    )
    .await;
    assert_eq!(json(sent).await["data"]["id"], 1, "ids are per instance");
}
