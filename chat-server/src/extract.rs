//! Extractors whose rejections are `ApiError`s: JSON bodies, query strings, paths.

use std::borrow::Cow;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chat_core::ValidationCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json` (415 otherwise), within the body limit
/// (413), well-formed (400), and of the right shape, unknown fields included (422,
/// naming the field).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], but an empty body means `None` (for optional bodies).
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(&req);
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(|value| Self(Some(value)))
    }
}

fn is_json(req: &Request) -> bool {
    let Some(content_type) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge
            } else {
                ApiError::BadRequest("The request body could not be read.")
            }
        })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from an array, positionally; only objects are inputs.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        check_syntax(bytes)?;
        return Err(ApiError::invalid(
            "body",
            ValidationCode::InvalidType,
            "The request body must be a JSON object.".to_owned(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            // Malformed JSON is a 400 even where a shape error came first.
            serde_json::error::Category::Data => check_syntax(bytes)
                .err()
                .unwrap_or_else(|| shape_error(&path, &inner.to_string())),
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// `Ok` when `bytes` is one well-formed JSON value.
fn check_syntax(bytes: &[u8]) -> Result<(), ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde::de::IgnoredAny::deserialize(&mut deserializer)
        .and_then(|_| deserializer.end())
        .map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// Turns a serde data error into a 422 naming the field, in Laravel's wording.
pub(crate) fn shape_error(path: &str, message: &str) -> ApiError {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("missing field `") {
        let text = format!("The {field} field is required.");
        return ApiError::invalid(field, ValidationCode::Required, text);
    }
    if let Some(field) = quoted("unknown field `") {
        let text = format!("The {field} field is not allowed.");
        return ApiError::invalid(field, ValidationCode::Unknown, text);
    }
    if path == "." || path.is_empty() {
        return ApiError::invalid(
            "body",
            ValidationCode::InvalidType,
            "The request body must be a JSON object.".to_owned(),
        );
    }
    let field: Cow<'static, str> = Cow::Owned(path.to_owned());
    let (code, text) = if message.starts_with("invalid type: null") {
        (
            ValidationCode::Required,
            format!("The {field} field is required."),
        )
    } else if message.starts_with("invalid value: integer") || message.contains("out of range") {
        (
            ValidationCode::OutOfRange,
            format!("The {field} field is out of range."),
        )
    } else if ["expected i64", "expected u32", "expected u64", "integer"]
        .iter()
        .any(|hint| message.contains(hint))
    {
        (
            ValidationCode::InvalidType,
            format!("The {field} field must be an integer."),
        )
    } else if message.contains("expected a string") {
        (
            ValidationCode::InvalidType,
            format!("The {field} field must be a string."),
        )
    } else {
        (
            ValidationCode::InvalidType,
            format!("The {field} field is invalid."),
        )
    };
    ApiError::invalid(field, code, text)
}

/// A query string parsed into `T`; a bad value is a 422 naming the parameter.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                if message.contains("invalid digit") || message.contains("number") {
                    let text = format!("The {path} field must be a positive integer.");
                    ApiError::invalid(path, ValidationCode::InvalidType, text)
                } else {
                    shape_error(&path, &message)
                }
            })
    }
}

/// The one path parameter of a route, parsed with `FromStr`; a value that does not
/// parse is a 422 naming the parameter.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: FromStr + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("The request path could not be read."))?;
        let Some((name, value)) = params.iter().next() else {
            tracing::error!("a route without a path parameter uses ApiPath");
            return Err(ApiError::BadRequest("The request path could not be read."));
        };
        value.parse().map(ApiPath).map_err(|_| {
            let text = format!("The {name} field must be an integer.");
            ApiError::invalid(name.to_owned(), ValidationCode::InvalidType, text)
        })
    }
}
