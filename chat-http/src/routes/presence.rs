//! Who is online, and when they were last seen.

use axum::Json;
use axum::extract::State;
use chat_core::{UserId, UserPresence};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::resources::{Data, ErrorBody, PresenceListSchema, PresenceParams, ValidationErrorBody};
use crate::state::AppState;

/// The presence of some users.
///
/// Online means connected on some node (or within a few seconds of the last connection
/// closing, so a reconnecting phone does not flicker). Users the caller may not see —
/// by default anyone they have no conversation with, and anyone across a block either
/// way — answer offline and never seen, exactly like strangers.
#[utoipa::path(
    get,
    operation_id = "get_presence",
    path = "/presence",
    tag = "presence",
    params(PresenceParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One entry per requested id, in order.", body = PresenceListSchema),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 422, description = "Missing, malformed or too many ids.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn lookup(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<PresenceParams>,
) -> Result<Json<Data<Vec<UserPresence>>>, ApiError> {
    let users: Vec<UserId> = params
        .user_ids
        .unwrap_or_default()
        .into_iter()
        .map(UserId::new)
        .collect();
    let presence = state.chat().presence_of(user.id(), &users).await?;
    Ok(Json(Data { data: presence }))
}
