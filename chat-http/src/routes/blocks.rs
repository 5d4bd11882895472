//! Blocking: a user refusing another's messages, typing and sight of their presence.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_core::{Block, UserId};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::PathId;
use crate::resources::{BlockEnvelope, BlocksSchema, Data, ErrorBody, ValidationErrorBody};
use crate::state::AppState;

/// Block a user.
///
/// From now on neither of you can message the other (403 with a neutral message), and
/// neither sees the other's typing or presence. Your history together stays readable.
/// Idempotent: blocking again answers the block already made with 200.
#[utoipa::path(
    post,
    operation_id = "block_user",
    path = "/blocks/{user_id}",
    tag = "blocks",
    params(("user_id" = i64, Path, description = "The user to block", minimum = 1, maximum = 9_223_372_036_854_775_807_i64)),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Blocked.", body = BlockEnvelope),
        (status = 200, description = "Already blocked: the block as it was made.", body = BlockEnvelope),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 422, description = "Invalid id, or the caller's own.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn block(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(other): PathId,
) -> Result<Response, ApiError> {
    let blocked = state
        .chat()
        .block_user(user.id(), UserId::new(other))
        .await?;
    let status = if blocked.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Data {
            data: blocked.block,
        }),
    )
        .into_response())
}

/// Unblock a user.
///
/// Idempotent: 204 whether or not there was a block. A block the other user made of
/// you stays.
#[utoipa::path(
    delete,
    operation_id = "unblock_user",
    path = "/blocks/{user_id}",
    tag = "blocks",
    params(("user_id" = i64, Path, description = "The user to unblock", minimum = 1, maximum = 9_223_372_036_854_775_807_i64)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Not blocked (any more)."),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 422, description = "Invalid id, or the caller's own.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn unblock(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(other): PathId,
) -> Result<StatusCode, ApiError> {
    state
        .chat()
        .unblock_user(user.id(), UserId::new(other))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The users you block, the newest block first.
#[utoipa::path(
    get,
    operation_id = "list_blocks",
    path = "/blocks",
    tag = "blocks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user the caller blocks.", body = BlocksSchema),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Data<Vec<Block>>>, ApiError> {
    let blocks = state.chat().blocks(user.id()).await?;
    Ok(Json(Data { data: blocks }))
}
