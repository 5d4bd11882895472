//! The reference chat server: the chat API of `chat-http` assembled into one binary,
//! with its settings (flags with `CHAT_*` fallbacks), logs, startup on SQLite or
//! Postgres, the OpenAPI document with Swagger UI, health and metrics at the root, and
//! graceful shutdown.
//!
//! A host that only wants the API in its own axum app depends on `chat-http` (or the
//! facade's `http` feature), which compiles none of this crate's CLI, log subscriber,
//! Swagger UI or allocator; this crate re-exports it for the binary's tests.
//!
//! [`app`] is the reference application: [`router`] under `/api/chat` plus the OpenAPI
//! document, Swagger UI, health and metrics ([`app_with_demo`] adds the demo page); [`serve`] runs it on a listener until a
//! shutdown signal, finishing requests in flight. The binary's stores are the `sqlite`
//! and `postgres` features (both default).
//!
//! ```
//! use std::sync::Arc;
//! use chat_core::{ChatService, JwtAuthenticator};
//! use chat_server::{AppState, app};
//!
//! let auth = JwtAuthenticator::hs256(b"a secret of thirty-two bytes or more!")
//!     .expect("a long enough secret");
//! let state = AppState::builder(ChatService::in_memory(), Arc::new(auth)).build();
//! let reference = app(state);
//! # let _ = reference;
//! ```

pub mod config;
mod demo;
mod dev_key;
pub mod jobs;
mod request_id;
mod startup;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa_swagger_ui::SwaggerUi;

pub use chat_http::{
    API_PREFIX, ApiError, AppState, AppStateBuilder, AuthUser, DEFAULT_MAX_BODY_BYTES,
    MeasuredRepository, Metrics, bearer_token, client_address, openapi, openapi_at, openapi_at_for,
    openapi_for, router,
};
use chat_http::{system_routes, track_requests};
pub use demo::{DEV_TOKEN_TTL, Demo};
pub use startup::{
    JobWorkers, Server, StartError, assemble, build_state, dev_secret_path, mint_token,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole reference HTTP application: [`router`] under `/api/chat`,
/// `/api/openapi.json`, Swagger UI at `/docs`, `/health`, `/ready` and `/metrics`.
pub fn app(state: AppState) -> Router {
    app_with_demo(state, &Demo::off())
}

/// [`app`] with `demo`'s page at `/` and its development token route.
pub fn app_with_demo(state: AppState, demo: &Demo) -> Router {
    system_routes()
        .merge(demo.routes(&state))
        .merge(SwaggerUi::new("/docs").url("/api/openapi.json", openapi_for(state.chat().config())))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), track_requests))
        // Added after the layer above: these routers measure their own requests.
        .merge(pusher_routes(&state))
        // Added after the layer above: the chat router measures its own requests.
        .nest(API_PREFIX, router(state.clone()))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID,
            request_id::CountingRequestId::new(),
        ))
        .with_state(state)
}

/// The Pusher routes when the state speaks Pusher (none otherwise, so their paths
/// stay 404 as any unknown path).
fn pusher_routes(state: &AppState) -> Router<AppState> {
    if state.pusher().is_some() {
        chat_http::pusher_router(state.clone())
    } else {
        Router::new()
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Chat(chat_core::Error::internal("handler panicked")).into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and
/// finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY a small write that follows another (a frame, then a pong)
    // waits for the peer's delayed acknowledgement: tens of milliseconds on a chat.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
