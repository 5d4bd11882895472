//! The Pusher routes as the server assembles them: a host's own channels through its
//! authorizer, the Origin check, and the settings that turn them on. (pusher-js,
//! laravel-echo and the `pusher` library drive the rest against the binary, in
//! `tests/pusher-js`.)
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chat_core::{ChatService, JwtAuthenticator, UserId};
use chat_server::AppState;
use chat_server::config::Cli;
use chat_transport_pusher::signature::channel_auth_is_valid;
use chat_transport_pusher::{
    ChannelAuthorizer, ChannelName, Grant, PusherApp, PusherConfig, SocketId,
};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn token(user: i64) -> String {
    chat_core::JwtIssuer::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(UserId::new(user), std::time::Duration::from_secs(600))
        .unwrap()
}

fn app() -> PusherApp {
    PusherApp::new("app", "key", "pusher-secret").unwrap()
}

/// The host's rule: `private-orders.{user}` for that user.
struct Orders;

impl ChannelAuthorizer for Orders {
    fn authorize(&self, user: UserId, channel: &ChannelName) -> Grant {
        if channel.as_str() == format!("private-orders.{}", user.get()) {
            Grant::Private
        } else {
            Grant::Refused
        }
    }
}

fn router(origins: &[&str]) -> axum::Router {
    router_of(ChatService::in_memory(), origins)
}

fn router_of(chat: ChatService, origins: &[&str]) -> axum::Router {
    let auth = JwtAuthenticator::hs256(SECRET.as_bytes()).unwrap();
    let state = AppState::builder(chat, Arc::new(auth))
        .pusher(app(), PusherConfig::default())
        .channel_authorizer(Arc::new(Orders))
        .allowed_origins(origins.iter().map(|o| (*o).to_owned()))
        .build();
    chat_server::app(state)
}

async fn authorize(router: &axum::Router, user: i64, channel: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/broadcasting/auth")
        .header(header::AUTHORIZATION, format!("Bearer {}", token(user)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "socket_id=12.34&channel_name={channel}"
        )))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_host_authorizes_its_own_channels_and_cannot_widen_the_chats() {
    let router = router(&[]);
    let (status, body) = authorize(&router, 5, "private-orders.5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let socket: SocketId = "12.34".parse().unwrap();
    let channel: ChannelName = "private-orders.5".parse().unwrap();
    assert!(channel_auth_is_valid(
        &app(),
        &socket,
        &channel,
        None,
        body["auth"].as_str().unwrap()
    ));
    assert_eq!(
        authorize(&router, 6, "private-orders.5").await.0,
        StatusCode::FORBIDDEN
    );
    // The chat's channels keep the chat's rules; unknown ones are refused.
    assert_eq!(
        authorize(&router, 5, "private-chat.6").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        authorize(&router, 5, "private-other").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        authorize(&router, 5, "presence-orders.5").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_block_closes_the_conversation_presence_channel_to_both() {
    let chat = ChatService::in_memory();
    let router = router_of(chat.clone(), &[]);
    assert_eq!(
        authorize(&router, 3, "presence-chat.3.4").await.0,
        StatusCode::OK
    );
    chat.block_user(UserId::new(4), UserId::new(3))
        .await
        .unwrap();
    for user in [3, 4] {
        let (status, body) = authorize(&router, user, "presence-chat.3.4").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {body}");
    }
    // Each keeps their own private channel, and other conversations stay open.
    assert_eq!(
        authorize(&router, 3, "private-chat.3").await.0,
        StatusCode::OK
    );
    assert_eq!(
        authorize(&router, 3, "presence-chat.3.5").await.0,
        StatusCode::OK
    );
    chat.unblock_user(UserId::new(4), UserId::new(3))
        .await
        .unwrap();
    assert_eq!(
        authorize(&router, 4, "presence-chat.3.4").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn browsers_from_other_origins_cannot_open_a_pusher_connection() {
    let router = router(&["https://app.example"]);
    let handshake = |origin: &str| {
        Request::builder()
            .uri("/app/key?protocol=7")
            .header(header::ORIGIN, origin)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Body::empty())
            .unwrap()
    };
    let refused = router
        .clone()
        .oneshot(handshake("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Allowed: past the Origin check (a handshake over oneshot cannot be upgraded).
    let allowed = router
        .oneshot(handshake("https://app.example"))
        .await
        .unwrap();
    assert_ne!(allowed.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_settings_turn_pusher_on_with_all_three_credentials_or_in_development() {
    let build = |args: &[&str]| {
        let mut all = vec!["chat-server", "--database-url", "sqlite::memory:"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().settings
    };
    let configured = chat_server::build_state(&build(&[
        "--jwt-secret",
        SECRET,
        "--pusher-app-id",
        "app",
        "--pusher-app-key",
        "key",
        "--pusher-app-secret",
        "s3cret",
    ]))
    .await
    .unwrap();
    assert_eq!(configured.pusher().unwrap().app().key(), "key");
    let off = chat_server::build_state(&build(&["--jwt-secret", SECRET]))
        .await
        .unwrap();
    assert!(off.pusher().is_none());
    let development = chat_server::build_state(&build(&[])).await.unwrap();
    assert_eq!(development.pusher().unwrap().app().id(), "chat-dev");
    let partial = chat_server::build_state(&build(&["--pusher-app-id", "app"])).await;
    assert!(
        partial
            .unwrap_err()
            .to_string()
            .contains("all three of CHAT_PUSHER_APP_ID")
    );
    let namespace =
        chat_server::build_state(&build(&["--pusher-event-namespace", "App/Events"])).await;
    assert!(
        namespace
            .unwrap_err()
            .to_string()
            .contains("CHAT_PUSHER_EVENT_NAMESPACE")
    );
}
