//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::resources::{HealthBody, ReadyBody};
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "system",
    responses((status = 200, description = "Alive.", body = HealthBody)))]
pub(crate) async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

/// Readiness: the store and the bus, each on its own.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "system",
    responses(
        (status = 200, description = "The store answers; `status` is `degraded` while the bus is down.", body = ReadyBody),
        (status = 503, description = "The store does not answer.", body = ReadyBody),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let readiness = state.chat().readiness().await;
    if let Err(error) = &readiness.store {
        tracing::warn!(%error, "not ready: the store does not answer");
    }
    if let Err(error) = &readiness.bus {
        tracing::warn!(%error, "degraded: the bus does not answer");
    }
    let up = |result: &Result<(), _>| if result.is_ok() { "up" } else { "down" };
    let body = ReadyBody {
        status: match (&readiness.store, &readiness.bus) {
            (Ok(()), Ok(())) => "ready",
            (Ok(()), Err(_)) => "degraded",
            (Err(_), _) => "unavailable",
        },
        store: up(&readiness.store),
        bus: up(&readiness.bus),
    };
    let status = if readiness.store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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
