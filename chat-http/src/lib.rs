//! The chat API over HTTP, for a host's axum app: the REST and WebSocket routes, JWT
//! authentication before every handler, Laravel-shaped errors, the OpenAPI 3.1
//! document and request metrics.
//!
//! [`router`] is the chat API alone (relative paths) for a host to nest under any
//! prefix of its own router, with its own [`Authenticator`](chat_core::Authenticator),
//! state and middleware. The crate compiles no CLI parser, log subscriber, Swagger UI
//! or global allocator: those belong to the reference server, `chat-server`.
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use chat_core::{ChatService, JwtAuthenticator};
//! use chat_http::{AppState, router};
//!
//! let auth = JwtAuthenticator::hs256(b"a secret of thirty-two bytes or more!")
//!     .expect("a long enough secret");
//! let state = AppState::builder(ChatService::in_memory(), Arc::new(auth)).build();
//! let host: Router = Router::new().nest("/chat", router(state));
//! # let _ = host;
//! ```

mod auth;
pub mod client_address;
mod error;
mod extract;
mod metrics;
mod openapi;
mod resources;
mod routes;
mod state;
mod webhooks_doc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;

pub use auth::{AuthUser, bearer_token};
pub use error::ApiError;
pub use extract::ApiJson;
pub use metrics::{MeasuredRepository, Metrics, StoreTiming, track_requests};
pub use openapi::{API_PREFIX, openapi, openapi_at, openapi_at_for, openapi_for, system_routes};
pub use state::{AppState, AppStateBuilder, DEFAULT_MAX_BODY_BYTES};

/// Smallest body the Pusher HTTP API accepts: a full batch of events at their data
/// limit, with room for names and channels.
const PUSHER_API_BODY_BYTES: usize = 1024 * 1024;

/// The Pusher routes at the paths Pusher clients and Laravel use, for a host to merge at
/// its root: `GET /app/{key}` (pusher-js and Laravel Echo), `POST /broadcasting/auth`
/// (authorizing private and presence channels for the bearer token's user) and the
/// HTTP API under `/apps/{id}/` (events, batch events, channels, users, terminating a
/// user's connections). Every route answers 404 when `state` was built without
/// [`AppStateBuilder::pusher`].
pub fn pusher_router<S>(state: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::routing::{get, post};
    let api = get(routes::pusher::api).post(routes::pusher::api);
    Router::new()
        .route("/app/{key}", get(routes::pusher::connect))
        .route(
            "/broadcasting/auth",
            post(routes::pusher::authorize).layer(DefaultBodyLimit::max(state.max_body_bytes())),
        )
        .route(
            "/apps/{*rest}",
            api.layer(DefaultBodyLimit::max(PUSHER_API_BODY_BYTES)),
        )
        .layer(from_fn_with_state(state.clone(), track_requests))
        .with_state(state)
}

/// The chat API, REST and WebSocket, for a host to nest in its own router.
///
/// Paths are relative to the mount point (`/send`, `/messages/{user_id}`, `/read/{id}`,
/// `/conversations`, `/conversations/{user_id}/read`, `/ws`), pagination links follow
/// the prefix, and the router's state is fixed, so it nests into a router of any state
/// type. It carries the request-body limit and the request metrics of `state`; the
/// host's own layers (tracing, CORS, sessions...) wrap it like any of its routes.
/// Every request is authenticated by `state`'s [`Authenticator`](chat_core::Authenticator)
/// before any handler touches the chat service.
pub fn router<S>(state: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (routes, _) = openapi::chat_routes().split_for_parts();
    routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), track_requests))
        .layer(DefaultBodyLimit::max(state.max_body_bytes()))
        .with_state(state)
}
