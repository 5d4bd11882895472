//! The conversation list and marking a whole conversation read.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use chat_core::{MessageId, UserId};

use super::link;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiQuery, OptionalJson, PathId};
use crate::resources::{
    ConversationItem, ConversationParams, ConversationsMeta, ConversationsSchema, CursorBody,
    CursorLinks, Data, ErrorBody, MarkConversationReadRequest, Updated, UpdatedEnvelope,
    ValidationErrorBody, cursor_of,
};
use crate::state::AppState;

/// The caller's conversations, newest activity first.
#[utoipa::path(
    get,
    operation_id = "list_conversations",
    path = "/conversations",
    tag = "conversations",
    params(ConversationParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One row per counterpart, with unread counts.", body = ConversationsSchema),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 422, description = "Invalid parameters.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<ConversationParams>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let chat = state.chat();
    let limit = params
        .limit
        .unwrap_or(chat.config().default_conversations_limit);
    let page = chat
        .conversations(user.id(), params.before.map(MessageId::new), limit)
        .await?;
    let items: Vec<ConversationItem<'_>> = page
        .items
        .iter()
        .zip(&page.presence)
        .map(|(c, presence)| ConversationItem {
            user_id: c.counterpart.get(),
            last_message: &c.last_message,
            unread_count: c.unread_count,
            online: presence.online,
            last_seen_at: presence.last_seen_at,
        })
        .collect();
    let next_before = cursor_of(page.next_before);
    let body = CursorBody {
        data: &items,
        meta: ConversationsMeta {
            total_unread: page.total_unread,
            limit,
            next_before,
        },
        links: CursorLinks {
            next: next_before.map(|before| {
                link(
                    uri.path(),
                    &[("before", before.to_string()), ("limit", limit.to_string())],
                )
            }),
        },
    };
    Ok(Json(body).into_response())
}

/// Mark what the caller received from `user_id` as read, up to `up_to_id` (or all).
#[utoipa::path(
    post,
    operation_id = "mark_conversation_read",
    path = "/conversations/{user_id}/read",
    tag = "conversations",
    params(("user_id" = i64, Path, description = "The other participant", minimum = 1, maximum = 9_223_372_036_854_775_807_i64)),
    request_body(content = Option<MarkConversationReadRequest>, description = "Optional; an empty body marks everything."),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many messages became read.", body = UpdatedEnvelope),
        (status = 400, description = "Malformed JSON.", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 413, description = "Body over the limit.", body = ErrorBody),
        (status = 415, description = "Body is not JSON.", body = ErrorBody),
        (status = 422, description = "Invalid input.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(other): PathId,
    OptionalJson(body): OptionalJson<MarkConversationReadRequest>,
) -> Result<Json<Data<Updated>>, ApiError> {
    let up_to = body.unwrap_or_default().up_to_id.map(MessageId::new);
    let updated = state
        .chat()
        .mark_conversation_read(user.id(), UserId::new(other), up_to)
        .await?;
    Ok(Json(Data {
        data: Updated { updated },
    }))
}
