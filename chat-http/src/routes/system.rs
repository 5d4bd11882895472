//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::resources::HealthBody;
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "system",
    responses((status = 200, description = "Alive.", body = HealthBody)))]
pub(crate) async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "system",
    responses(
        (status = 200, description = "Ready to serve.", body = HealthBody),
        (status = 503, description = "The store does not answer.", body = HealthBody),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    match state.chat().ready().await {
        Ok(()) => (StatusCode::OK, Json(HealthBody { status: "ready" })),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthBody {
                    status: "unavailable",
                }),
            )
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics()
        .websocket_connections(state.websocket().hub().connections());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
}
