//! Sending, reading history, marking read, editing and deleting.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_core::{
    HistoryPosition, HistoryQuery, HistoryRequest, MessageId, SendAttempt, SendFailure,
    SendMessage, UserId,
};

use super::link;
use crate::auth::AuthUser;
use crate::error::{ApiError, rate_limit_headers};
use crate::extract::{ApiJson, ApiQuery, MessageIdParam, NamedPathId, PathId, UserIdParam};
use crate::resources::{
    CursorBody, CursorLinks, CursorMeta, Data, EditMessageRequest, ErrorBody, HistoryPageBody,
    HistoryParams, HistorySchema, MessageEnvelope, PageLinks, PageMeta, SendMessageRequest,
    ValidationErrorBody,
};
use crate::state::AppState;

/// Send a message.
///
/// Every attempt spends the sender's allowance; the `X-RateLimit-*` headers report it.
#[utoipa::path(
    post,
    operation_id = "send_message",
    path = "/send",
    tag = "messages",
    request_body = SendMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored (committed) and announced.", body = MessageEnvelope,
            headers(("X-RateLimit-Limit" = u32, description = "Burst size of the send limit"),
                    ("X-RateLimit-Remaining" = u32, description = "Sends left right now"))),
        (status = 200, description = "Replay: this client_message_id was already used with the same content; the original is returned.",
            body = MessageEnvelope),
        (status = 400, description = "Malformed JSON.", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 403, description = "This receiver cannot be messaged: a block between the two (either way) or the host's policy. The message is the same whichever it is.", body = ErrorBody),
        (status = 409, description = "The client_message_id was already used with other content.", body = ErrorBody),
        (status = 413, description = "Body over the limit.", body = ErrorBody),
        (status = 415, description = "Body is not JSON.", body = ErrorBody),
        (status = 422, description = "Invalid input, unknown fields included.", body = ValidationErrorBody),
        (status = 429, description = "Too many sends (or failed logins); see Retry-After.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The store is unavailable; see Retry-After.", body = ErrorBody),
    )
)]
pub(crate) async fn send(
    State(state): State<AppState>,
    user: AuthUser,
    body: Result<ApiJson<SendMessageRequest>, ApiError>,
) -> Response {
    let attempt = body.map(|ApiJson(request)| SendMessage {
        receiver_id: UserId::new(request.receiver_id),
        message: request.message,
        client_message_id: request.client_message_id,
    });
    let SendAttempt { allowance, result } = state.chat().attempt_send(user.id(), attempt).await;
    let result = result.map_err(|failure| match failure {
        SendFailure::Rejected(rejection) => rejection,
        SendFailure::Chat(error) => ApiError::from(error),
    });
    let mut response = match result {
        Ok(outcome) => {
            state.metrics().send(outcome.replay);
            let status = if outcome.replay {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (
                status,
                Json(Data {
                    data: outcome.message,
                }),
            )
                .into_response()
        }
        Err(error) => {
            if error.status() == StatusCode::TOO_MANY_REQUESTS {
                state.metrics().rate_limited("send");
            }
            error.into_response()
        }
    };
    if let Some(allowance) = allowance {
        rate_limit_headers(response.headers_mut(), &allowance);
    }
    response
}

/// The conversation with another user.
///
/// Page mode (default): `page` and `per_page`, newest first, with totals. Cursor mode:
/// `before_id` (newest first) or `after_id` (oldest first, for catching up), with
/// `limit`. Only the caller's own conversation is ever shown.
#[utoipa::path(
    get,
    operation_id = "get_history",
    path = "/messages/{id}",
    tag = "messages",
    params(("id" = i64, Path, description = "The other participant's user id (named `user_id` in errors)", minimum = 1, maximum = 9_223_372_036_854_775_807_i64), HistoryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the conversation.", body = HistorySchema),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 422, description = "Invalid parameters.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    NamedPathId(other, _): NamedPathId<UserIdParam>,
    ApiQuery(params): ApiQuery<HistoryParams>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let chat = state.chat();
    let query = chat.history_query(HistoryRequest {
        page: params.page,
        per_page: params.per_page,
        before_id: params.before_id.map(MessageId::new),
        after_id: params.after_id.map(MessageId::new),
        limit: params.limit,
    })?;
    let history = chat.history(user.id(), UserId::new(other), query).await?;
    let path = uri.path();
    let response = match history.position {
        HistoryPosition::Page {
            current_page,
            per_page,
            last_page,
            total,
            from,
            to,
        } => {
            let page_link = |page: u64| {
                link(
                    path,
                    &[
                        ("page", page.to_string()),
                        ("per_page", per_page.to_string()),
                    ],
                )
            };
            let current = u64::from(current_page);
            Json(HistoryPageBody {
                data: &history.messages,
                meta: PageMeta {
                    current_page,
                    per_page,
                    last_page,
                    total,
                    from,
                    to,
                },
                links: PageLinks {
                    first: page_link(1),
                    last: page_link(last_page),
                    prev: (current > 1).then(|| page_link((current - 1).min(last_page))),
                    next: (current < last_page).then(|| page_link(current + 1)),
                },
            })
            .into_response()
        }
        HistoryPosition::Cursor { limit, has_more } => {
            let key = match query {
                HistoryQuery::After { .. } => "after_id",
                _ => "before_id",
            };
            let next_cursor = history
                .messages
                .last()
                .filter(|_| has_more)
                .map(|m| m.id.get());
            Json(CursorBody {
                data: &history.messages,
                meta: CursorMeta {
                    limit,
                    has_more,
                    next_cursor,
                },
                links: CursorLinks {
                    next: next_cursor.map(|cursor| {
                        link(
                            path,
                            &[(key, cursor.to_string()), ("limit", limit.to_string())],
                        )
                    }),
                },
            })
            .into_response()
        }
    };
    Ok(response)
}

/// Mark a received message as read.
///
/// Idempotent: a message already read is returned unchanged. The sender is told by a
/// receipt.
#[utoipa::path(
    patch,
    operation_id = "mark_message_read",
    path = "/read/{message_id}",
    tag = "messages",
    params(("message_id" = i64, Path, description = "The message", minimum = 1, maximum = 9_223_372_036_854_775_807_i64)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message, read.", body = MessageEnvelope),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 403, description = "The caller sent this message; only the receiver marks it read.", body = ErrorBody),
        (status = 404, description = "No such message, or the caller took no part in it.", body = ErrorBody),
        (status = 422, description = "Invalid id.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(message_id): PathId,
) -> Result<Json<Data<chat_core::Message>>, ApiError> {
    let message = state
        .chat()
        .mark_message_read(user.id(), MessageId::new(message_id))
        .await?;
    Ok(Json(Data { data: message }))
}

/// Edit a message you sent.
///
/// The text is checked and trimmed as in a send. Allowed within the configured edit
/// window after sending; stating the text the message already has changes nothing and
/// answers 200 at any time. Both participants' devices hear of it (`message_updated`,
/// `MessageUpdated`).
#[utoipa::path(
    patch,
    operation_id = "edit_message",
    path = "/messages/{id}",
    tag = "messages",
    params(("id" = i64, Path, description = "The message (named `message_id` in errors)", minimum = 1, maximum = 9_223_372_036_854_775_807_i64)),
    request_body = EditMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message, edited (`edited_at` set).", body = MessageEnvelope),
        (status = 400, description = "Malformed JSON.", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 403, description = "The caller received this message, or the edit window has passed.", body = ErrorBody),
        (status = 404, description = "No such message, or the caller took no part in it.", body = ErrorBody),
        (status = 409, description = "The message was deleted.", body = ErrorBody),
        (status = 413, description = "Body over the limit.", body = ErrorBody),
        (status = 415, description = "Body is not JSON.", body = ErrorBody),
        (status = 422, description = "Invalid id or text, unknown fields included.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn edit(
    State(state): State<AppState>,
    user: AuthUser,
    NamedPathId(message_id, _): NamedPathId<MessageIdParam>,
    ApiJson(request): ApiJson<EditMessageRequest>,
) -> Result<Json<Data<chat_core::Message>>, ApiError> {
    let message = state
        .chat()
        .edit_message(user.id(), MessageId::new(message_id), request.message)
        .await?;
    Ok(Json(Data { data: message }))
}

/// Delete a message you sent, for everyone.
///
/// The text is removed from the store; the message stays in history as a tombstone
/// (`deleted_at` set, `message` empty), so ids and counts stay as they were.
/// Idempotent: deleting again answers the tombstone. Both participants' devices hear
/// of it (`message_deleted`, `MessageDeleted`).
#[utoipa::path(
    delete,
    operation_id = "delete_message",
    path = "/messages/{id}",
    tag = "messages",
    params(("id" = i64, Path, description = "The message (named `message_id` in errors)", minimum = 1, maximum = 9_223_372_036_854_775_807_i64)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tombstone: `deleted_at` set, `message` empty.", body = MessageEnvelope),
        (status = 401, description = "Missing, invalid or expired token.", body = ErrorBody),
        (status = 403, description = "The caller received this message; only the sender deletes it.", body = ErrorBody),
        (status = 404, description = "No such message, or the caller took no part in it.", body = ErrorBody),
        (status = 422, description = "Invalid id.", body = ValidationErrorBody),
        (status = 429, description = "Too many failed logins from this address.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    NamedPathId(message_id, _): NamedPathId<MessageIdParam>,
) -> Result<Json<Data<chat_core::Message>>, ApiError> {
    let message = state
        .chat()
        .delete_message(user.id(), MessageId::new(message_id))
        .await?;
    Ok(Json(Data { data: message }))
}
