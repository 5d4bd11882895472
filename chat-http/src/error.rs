//! `ApiError`: every failure of the HTTP API, as Laravel-shaped JSON.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_core::{AuthError, Error, RateStatus, ValidationCode, ValidationErrors};
use serde_json::json;

/// How long clients should wait before retrying when the store is unavailable.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An error answer of the API. Internal details are logged here and never sent.
#[derive(Debug)]
pub enum ApiError {
    /// A failure from the chat core.
    Chat(Error),
    /// The body is not well-formed JSON (400).
    MalformedJson(String),
    /// The body is larger than allowed (413).
    BodyTooLarge,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// Reading the request failed for another reason (400).
    BadRequest(&'static str),
    /// No route answers this path (404).
    RouteNotFound,
    /// The route exists but not for this method (405).
    MethodNotAllowed,
    /// A browser page from an origin outside the allow-list (403).
    OriginNotAllowed,
    /// Not a valid WebSocket upgrade request (400, 405 or 426).
    NotUpgradable(StatusCode, String),
    /// The user holds the most WebSocket connections allowed (429).
    TooManyConnections(usize),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::Chat(error)
    }
}

impl ApiError {
    /// A 422 with one field error.
    pub(crate) fn invalid(
        field: impl Into<std::borrow::Cow<'static, str>>,
        code: ValidationCode,
        message: String,
    ) -> Self {
        Self::Chat(Error::invalid(field, code, message))
    }

    /// A 422 from collected field errors.
    pub(crate) fn validation(errors: ValidationErrors) -> Self {
        Self::Chat(Error::Validation(errors))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Chat(error) => match error {
                Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
                Error::NotFound { .. } => StatusCode::NOT_FOUND,
                Error::Forbidden { .. } => StatusCode::FORBIDDEN,
                Error::Conflict { .. } => StatusCode::CONFLICT,
                Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::NotUpgradable(status, _) => *status,
            Self::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Whole seconds, rounded up, never 0: what `Retry-After` carries.
fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Adds `X-RateLimit-Limit` / `X-RateLimit-Remaining` (and `Retry-After` when refused).
pub(crate) fn rate_limit_headers(headers: &mut HeaderMap, status: &RateStatus) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(status.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(status.remaining));
    if let Some(wait) = status.retry_after {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_seconds(wait)),
        );
    }
}

fn auth_message(reason: AuthError) -> &'static str {
    match reason {
        AuthError::Missing => "missing bearer token",
        AuthError::Expired => "the token has expired",
        AuthError::NotYetValid => "the token is not valid yet",
        AuthError::InvalidIssuer => "the token has the wrong issuer",
        AuthError::InvalidAudience => "the token has the wrong audience",
        AuthError::InvalidSubject => "the token's subject is not a user id",
        _ => "the token is invalid",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut headers = HeaderMap::new();
        let body = match self {
            Self::Chat(error) => match error {
                Error::Validation(errors) => json!({
                    "message": errors.to_string(),
                    "errors": errors.by_field(),
                }),
                Error::NotFound { what } => {
                    let mut what = what.to_owned();
                    if let Some(first) = what.get_mut(..1) {
                        first.make_ascii_uppercase();
                    }
                    json!({ "message": format!("{what} not found.") })
                }
                Error::Forbidden { reason } => {
                    json!({ "message": format!("This action is unauthorized: {reason}.") })
                }
                Error::Conflict { message } => json!({ "message": message }),
                Error::RateLimited { retry_after, limit } => {
                    rate_limit_headers(
                        &mut headers,
                        &RateStatus {
                            limit,
                            remaining: 0,
                            retry_after: Some(retry_after),
                        },
                    );
                    json!({ "message": "Too Many Attempts." })
                }
                Error::Unauthenticated(reason) => {
                    let challenge = if reason == AuthError::Missing {
                        "Bearer".to_owned()
                    } else {
                        format!(
                            "Bearer error=\"invalid_token\", error_description=\"{}\"",
                            auth_message(reason)
                        )
                    };
                    if let Ok(value) = HeaderValue::from_str(&challenge) {
                        headers.insert(header::WWW_AUTHENTICATE, value);
                    }
                    json!({ "message": "Unauthenticated." })
                }
                Error::Unavailable { source } => {
                    tracing::warn!(error = %source, "store unavailable");
                    headers.insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(UNAVAILABLE_RETRY_AFTER.as_secs()),
                    );
                    json!({ "message": "Service Unavailable." })
                }
                other => {
                    tracing::error!(error = ?other, "internal error");
                    json!({ "message": "Server Error." })
                }
            },
            Self::MalformedJson(detail) => {
                json!({ "message": format!("The request body is not valid JSON: {detail}.") })
            }
            Self::BodyTooLarge => json!({ "message": "The request body is too large." }),
            Self::UnsupportedMediaType => {
                json!({ "message": "The request body must be JSON (Content-Type: application/json)." })
            }
            Self::BadRequest(message) => json!({ "message": message }),
            Self::RouteNotFound => json!({ "message": "Not Found." }),
            Self::MethodNotAllowed => json!({ "message": "Method Not Allowed." }),
            Self::OriginNotAllowed => {
                json!({ "message": "This origin may not open a WebSocket here." })
            }
            Self::NotUpgradable(_, reason) => {
                json!({ "message": format!("Not a WebSocket upgrade: {reason}.") })
            }
            Self::TooManyConnections(limit) => json!({
                "message": format!("Too many WebSocket connections for this user (the limit is {limit}).")
            }),
        };
        (status, headers, Json(body)).into_response()
    }
}
