//! `GET /api/chat/ws`: the WebSocket, authenticated before the upgrade.

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chat_core::{FeedStart, MessageId};
use chat_transport_ws::{AcceptError, WsUpgrade, WsUpgradeRejection};

use crate::auth::{authenticate, bearer_token};
use crate::error::ApiError;
use crate::extract::{CURSOR, QueryReader};
use crate::resources::{ErrorBody, ValidationErrorBody};
use crate::state::AppState;

/// Open the real-time connection.
///
/// Authenticate with `Authorization: Bearer <token>` or, from browsers, `?token=`.
/// Without `after_id` the connection first receives every undelivered message, oldest
/// first; with `?after_id=N`, every message to or from the user after N. Then live
/// events. The frames and close codes are described in `docs/websocket-protocol.md`.
#[utoipa::path(
    get,
    path = "/ws",
    operation_id = "open_websocket",
    tag = "websocket",
    params(
        ("token" = Option<String>, Query, description = "Bearer token, for clients that cannot set headers"),
        ("after_id" = Option<i64>, Query, minimum = 0, maximum = 9_223_372_036_854_775_807_i64, description = "Resume: send every message after this id first"),
    ),
    security(("bearer" = []), ("query_token" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, description = "Not a valid WebSocket handshake.", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 403, description = "The Origin is not in CHAT_ALLOWED_ORIGINS.", body = ErrorBody),
        (status = 405, description = "The handshake must be a GET.", body = ErrorBody),
        (status = 422, description = "Invalid after_id.", body = ValidationErrorBody),
        (status = 426, description = "The connection cannot be upgraded.", body = ErrorBody),
        (status = 429, description = "Too many connections for this user, or too many failed logins.", body = ErrorBody),
        (status = 503, description = "The authentication backend or the store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn connect(
    State(state): State<AppState>,
    parts: Parts,
    RawQuery(query): RawQuery,
    upgrade: Result<WsUpgrade, WsUpgradeRejection>,
) -> Response {
    match open(&state, &parts, query.as_deref(), upgrade).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn open(
    state: &AppState,
    parts: &Parts,
    query: Option<&str>,
    upgrade: Result<WsUpgrade, WsUpgradeRejection>,
) -> Result<Response, ApiError> {
    let endpoint = state.websocket();
    if !endpoint.origin_allowed(parts.headers.get(header::ORIGIN)) {
        return Err(ApiError::OriginNotAllowed);
    }
    // Read as the REST API reads its queries: each parameter at most once, the cursor
    // within its bounds; the problems are answered after authentication.
    let mut reader = QueryReader::new(query.unwrap_or_default());
    let query_token = reader.text("token");
    let after_id = reader.integer::<i64>("after_id", CURSOR);
    let header_token = bearer_token(&parts.headers);
    let token = if header_token.is_empty() {
        query_token.as_deref().unwrap_or_default()
    } else {
        header_token
    };
    // The same client address and failed-login rule as the REST API.
    let identity = authenticate(state, token, parts).await?;
    if let Some(error) = reader.into_error() {
        return Err(error);
    }
    let start = after_id.map_or(FeedStart::Undelivered, |after| {
        FeedStart::After(MessageId::new(after))
    });
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::NotUpgradable(rejection.status(), rejection.body_text().to_owned())
    })?;
    endpoint
        .accept(upgrade, identity, start)
        .await
        .map_err(|refused| match refused {
            AcceptError::TooManyConnections { limit } => ApiError::TooManyConnections(limit),
            AcceptError::Chat(error) => ApiError::Chat(error),
            other => ApiError::Chat(chat_core::Error::internal(other)),
        })
}
