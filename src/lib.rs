//! Real-time one-to-one chat for Rust services.
//!
//! This package is the one dependency a host needs: it re-exports [`chat_core`] (the
//! domain, the ports and every rule in [`ChatService`]) and, behind features, the
//! adapters:
//!
//! | feature  | adds |
//! |----------|------|
//! | `sqlite` | `sqlite::SqliteStore`, the embedded durable store |
//! | `postgres` | `postgres::PostgresStore`, the store shared by many nodes |
//! | `ws` | `ws::WsEndpoint`, WebSocket delivery over axum |
//! | `http` | `http::router`, the REST + WebSocket API to nest in a host's axum router (implies `ws`) |
//! | `webhooks` | `webhooks::{WebhookPlan, WebhookSender, WorkerPool}`: Standard Webhooks from the job outbox, and `signature::verify` for receivers |
//!
//! Without features it is the core alone: no web framework, no database. Runnable
//! examples live in `examples/` (`cargo run -p example-in-memory`,
//! `cargo run -p example-embed-axum`, `cargo run -p example-testing-with-memory`,
//! `cargo run -p example-webhooks`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use chat::{ChatService, SendMessage, UserId};
//!
//! let chat = ChatService::in_memory();
//! let sent = chat
//!     .send(UserId::new(1), SendMessage {
//!         receiver_id: UserId::new(2),
//!         message: "Hi!".into(),
//!         client_message_id: None,
//!     })
//!     .await?;
//! assert_eq!(chat.unread_total(UserId::new(2)).await?, 1);
//! # let _ = sent;
//! # Ok::<(), chat::Error>(())
//! # }).unwrap();
//! ```

pub use chat_core::*;

/// The embedded SQLite store.
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use chat_store_sqlite::{SqliteStore, rusqlite};
}

/// The Postgres store.
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use chat_store_postgres::{PostgresStore, sqlx};
}

/// Webhooks (Standard Webhooks v1) and the worker pool that delivers them from a
/// store's job outbox.
#[cfg(feature = "webhooks")]
pub mod webhooks {
    pub use chat_webhooks::*;
}

/// WebSocket delivery: the endpoint, its limits and the protocol's frames.
#[cfg(feature = "ws")]
pub mod ws {
    pub use chat_transport_ws::{
        ConnectionHub, Registration, WsConfig, WsEndpoint, WsUpgrade, WsUpgradeRejection,
        close_code, protocol,
    };
}

/// The chat API over HTTP, to mount in a host's axum router.
///
/// ```
/// use std::sync::Arc;
/// use chat::http::{AppState, axum::Router, router};
/// use chat::{ChatService, JwtAuthenticator};
///
/// let authenticator = JwtAuthenticator::hs256(b"a secret of thirty-two bytes or more!")
///     .expect("a long enough secret");
/// let state = AppState::builder(ChatService::in_memory(), Arc::new(authenticator)).build();
/// let host: Router = Router::new().nest("/chat", router(state));
/// # let _ = host;
/// ```
///
/// The feature compiles no CLI parser, log subscriber, Swagger UI, metrics exporter or
/// global allocator: those belong to the reference server binary, `chat-server`.
#[cfg(feature = "http")]
pub mod http {
    pub use axum;
    pub use chat_http::{
        API_PREFIX, ApiError, AppState, AppStateBuilder, AuthUser, DEFAULT_MAX_BODY_BYTES,
        MeasuredRepository, Metrics, StoreTiming, bearer_token, client_address, openapi,
        openapi_at, openapi_at_for, openapi_for, router, system_routes, track_requests,
    };
}
