//! Extractors whose rejections are `ApiError`s: JSON bodies, query strings, paths.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::num::IntErrorKind;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, RawPathParamsRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chat_core::{ValidationCode, ValidationErrors};
use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};

use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json` (415 otherwise), within the body limit
/// (413), well-formed (400), and of the right shape, unknown fields included (422,
/// naming the field). For a host's own routes beside the chat API, with the same
/// Laravel-shaped errors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

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
        // The document declares the optional body as the object or null.
        if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
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
        inspect(bytes)?;
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
            // Malformed JSON is a 400 even where a shape error came first, and a repeated
            // key (which serde refuses without naming it) is named.
            serde_json::error::Category::Data => inspect(bytes)
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

/// `Ok` when `bytes` is one well-formed JSON value with no key repeated within an
/// object; a 400 for malformed JSON, a 422 naming the first repeated key otherwise.
fn inspect(bytes: &[u8]) -> Result<(), ApiError> {
    // JSON is UTF-8; serde_json checks it only in strings it reads, not in the ones the
    // second pass below skips, so a body that is not UTF-8 is a 400 before anything.
    if let Err(error) = std::str::from_utf8(bytes) {
        return Err(ApiError::MalformedJson(format!(
            "the body is not UTF-8 (at byte {})",
            error.valid_up_to()
        )));
    }
    let repeated = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = KeyWalk {
        prefix: String::new(),
        repeated: &repeated,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    let Some(field) = repeated.into_inner() else {
        return walked.map_err(|e| ApiError::MalformedJson(e.to_string()));
    };
    // The walk stopped at the repeated key; malformed JSON after it is still a 400,
    // by the walk's own measure: every value read as it reads them (a number beyond
    // f64 is malformed there, where skipping it would have passed it).
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_json::Value::deserialize(&mut deserializer)
        .and_then(|_| deserializer.end())
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let text = format!("The {field} field appears more than once.");
    Err(ApiError::invalid(
        field,
        ValidationCode::InvalidFormat,
        text,
    ))
}

/// Walks a JSON value and records in `repeated` the path of the first key that appears
/// twice in one object, then stops. serde_json keeps the last of a repeated key and
/// derived structs refuse one without saying which, so neither can report it.
struct KeyWalk<'a> {
    /// The path of the value walked, `a.b.` style (empty at the root).
    prefix: String,
    repeated: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for KeyWalk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyWalk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0_usize;
        while seq
            .next_element_seed(KeyWalk {
                prefix: format!("{}{index}.", self.prefix),
                repeated: self.repeated,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Request objects have a handful of keys: a list beats hashing.
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.repeated.borrow_mut() = Some(format!("{}{key}", self.prefix));
                return Err(serde::de::Error::custom("a key appears more than once"));
            }
            map.next_value_seed(KeyWalk {
                prefix: format!("{}{key}.", self.prefix),
                repeated: self.repeated,
            })?;
            seen.push(key);
        }
        Ok(())
    }
}

/// Reads a JSON integer into an `i64`, also one written with a zero fraction (`2.0`,
/// `1e3`): JSON Schema, and so the OpenAPI document, counts those as integers too.
pub(crate) fn json_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<i64, D::Error> {
    deserializer.deserialize_any(JsonInteger)
}

/// [`json_integer`] for an optional field: `null` is `None`.
pub(crate) fn optional_json_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Option::<JsonIntegerValue>::deserialize(deserializer).map(|value| value.map(|v| v.0))
}

/// An `i64` read by [`json_integer`].
struct JsonIntegerValue(i64);

impl<'de> Deserialize<'de> for JsonIntegerValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json_integer(deserializer).map(JsonIntegerValue)
    }
}

/// The visitor of [`json_integer`].
struct JsonInteger;

impl Visitor<'_> for JsonInteger {
    type Value = i64;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<i64, E> {
        // 2^63: every whole f64 in [-2^63, 2^63) converts to i64 exactly.
        const LIMIT: f64 = -(i64::MIN as f64);
        if value.fract() != 0.0 {
            Err(E::invalid_type(Unexpected::Float(value), &self))
        } else if (-LIMIT..LIMIT).contains(&value) {
            #[allow(clippy::cast_possible_truncation)] // whole and in range, checked above
            Ok(value as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(value), &self))
        }
    }
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
    } else if message.starts_with("invalid value: ") || message.contains("out of range") {
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

/// An integer the API reads from a query string or a path, with the bounds the OpenAPI
/// document declares for it; the extractors refuse what lies outside them, so the
/// document and the server agree on every value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntegerBounds {
    /// The smallest value accepted.
    pub(crate) min: i64,
    /// The largest value accepted.
    pub(crate) max: i64,
}

/// Ids: 1 to the largest 64-bit integer.
pub(crate) const ID: IntegerBounds = IntegerBounds {
    min: 1,
    max: i64::MAX,
};

/// Cursors: 0 (before every message) to the largest 64-bit integer.
pub(crate) const CURSOR: IntegerBounds = IntegerBounds {
    min: 0,
    max: i64::MAX,
};

/// Parses `raw` as the integer field `name` within `bounds`; the error says which
/// rule it broke, naming the bound, in Laravel's wording.
fn parse_integer(
    name: &str,
    raw: &str,
    bounds: IntegerBounds,
) -> Result<i64, (ValidationCode, String)> {
    let too_small = || {
        let text = format!("The {name} field must be at least {}.", bounds.min);
        (ValidationCode::OutOfRange, text)
    };
    let too_large = || {
        let text = format!("The {name} field must not be greater than {}.", bounds.max);
        (ValidationCode::OutOfRange, text)
    };
    match raw.parse::<i64>() {
        Ok(value) if value < bounds.min => Err(too_small()),
        Ok(value) if value > bounds.max => Err(too_large()),
        Ok(value) => Ok(value),
        // Classified by kind: a number beyond 64 bits is out of range, not malformed.
        Err(error) => match error.kind() {
            IntErrorKind::PosOverflow => Err(too_large()),
            IntErrorKind::NegOverflow => Err(too_small()),
            _ => Err((
                ValidationCode::InvalidType,
                format!("The {name} field must be an integer."),
            )),
        },
    }
}

/// A query string type, read parameter by parameter through a [`QueryReader`].
pub(crate) trait FromQuery: Sized {
    /// Reads the parameters; problems are recorded in `query` and reported together.
    fn from_query(query: &mut QueryReader<'_>) -> Self;
}

/// The decoded pairs of a query string and the problems found reading them.
#[derive(Debug)]
pub(crate) struct QueryReader<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    errors: ValidationErrors,
}

impl<'a> QueryReader<'a> {
    pub(crate) fn new(query: &'a str) -> Self {
        Self {
            pairs: form_urlencoded::parse(query.as_bytes()).collect(),
            errors: ValidationErrors::default(),
        }
    }

    /// The only value of parameter `name`, if given; a parameter given twice is
    /// recorded as an error and read as absent.
    fn single(&mut self, name: &'static str) -> Option<&Cow<'a, str>> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value);
        let first = values.next()?;
        if values.next().is_some() {
            self.errors.add(
                name,
                ValidationCode::InvalidFormat,
                format!("The {name} parameter may be given only once."),
            );
            return None;
        }
        Some(first)
    }

    /// The text parameter `name`, if given once.
    pub(crate) fn text(&mut self, name: &'static str) -> Option<String> {
        self.single(name).map(|value| value.clone().into_owned())
    }

    /// The comma-separated ids of parameter `name` (`1,2,3`), if given once and each
    /// an id (see [`ID`]); a missing one is recorded as required.
    pub(crate) fn id_list(&mut self, name: &'static str) -> Option<Vec<i64>> {
        let Some(raw) = self.single(name).cloned() else {
            if !self.errors.has(name) {
                self.errors.add(
                    name,
                    ValidationCode::Required,
                    format!("The {name} field is required."),
                );
            }
            return None;
        };
        let mut ids = Vec::new();
        for part in raw.split(',') {
            match parse_integer(name, part.trim(), ID) {
                Ok(id) => ids.push(id),
                Err((code, _)) => {
                    self.errors.add(
                        name,
                        code,
                        format!("The {name} field must list ids (integers of at least 1) separated by commas."),
                    );
                    return None;
                }
            }
        }
        Some(ids)
    }

    /// The problems found so far, as one 422; `None` when there were none.
    pub(crate) fn into_error(self) -> Option<ApiError> {
        (!self.errors.is_empty()).then(|| ApiError::validation(self.errors))
    }

    /// The integer parameter `name`, if given once and within `bounds`. A parameter
    /// given twice is refused rather than one of its values silently chosen.
    /// Parameters that are never read are ignored, as before.
    pub(crate) fn integer<T: TryFrom<i64>>(
        &mut self,
        name: &'static str,
        bounds: IntegerBounds,
    ) -> Option<T> {
        let raw = self.single(name)?;
        match parse_integer(name, raw, bounds) {
            Ok(value) => {
                let converted = T::try_from(value).ok();
                if converted.is_none() {
                    // The bounds are wider than the field's type: a mistake here, not
                    // the caller's, but still no panic.
                    tracing::error!(name, value, "query bounds wider than the field type");
                    self.errors.add(
                        name,
                        ValidationCode::OutOfRange,
                        format!("The {name} field is out of range."),
                    );
                }
                converted
            }
            Err((code, text)) => {
                self.errors.add(name, code, text);
                None
            }
        }
    }
}

/// A query string read into `T`; every bad parameter is named in one 422.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: FromQuery, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut reader = QueryReader::new(parts.uri.query().unwrap_or_default());
        let value = T::from_query(&mut reader);
        match reader.into_error() {
            None => Ok(ApiQuery(value)),
            Some(error) => Err(error),
        }
    }
}

/// The one path parameter of a route, an id (see [`ID`]); a value that is not one is a
/// 422 naming the parameter and the bound it broke.
#[derive(Debug)]
pub(crate) struct PathId(pub(crate) i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, None).await.map(PathId)
    }
}

/// What the one path parameter of a route is called in its errors, where one template
/// serves several resources (`/messages/{id}`: a user for history, a message for
/// edits) and its own name would not say which.
pub(crate) trait PathName {
    /// The field name errors use.
    const NAME: &'static str;
}

/// The path parameter is a user id (`user_id` in errors).
#[derive(Debug)]
pub(crate) struct UserIdParam;

impl PathName for UserIdParam {
    const NAME: &'static str = "user_id";
}

/// The path parameter is a message id (`message_id` in errors).
#[derive(Debug)]
pub(crate) struct MessageIdParam;

impl PathName for MessageIdParam {
    const NAME: &'static str = "message_id";
}

/// A [`PathId`] whose errors name it `N::NAME`.
#[derive(Debug)]
pub(crate) struct NamedPathId<N>(pub(crate) i64, pub(crate) std::marker::PhantomData<N>);

impl<N: PathName, S: Send + Sync> FromRequestParts<S> for NamedPathId<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, Some(N::NAME))
            .await
            .map(|id| NamedPathId(id, std::marker::PhantomData))
    }
}

/// The route's one path parameter as an id, named `name` in errors (else as in the
/// route's template).
async fn path_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: Option<&str>,
) -> Result<i64, ApiError> {
    let params = match RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => params,
        // Percent-encoded bytes that are not UTF-8 are not an integer either.
        Err(RawPathParamsRejection::InvalidUtf8InPathParam(rejection)) => {
            let name = name
                .map(str::to_owned)
                .or_else(|| path_parameter_name(parts))
                .unwrap_or_else(|| "id".to_owned());
            tracing::debug!(%rejection, "a path parameter that is not UTF-8");
            let text = format!("The {name} field must be an integer.");
            return Err(ApiError::invalid(name, ValidationCode::InvalidType, text));
        }
        Err(_) => return Err(ApiError::BadRequest("The request path could not be read.")),
    };
    let Some((template_name, value)) = params.iter().next() else {
        tracing::error!("a route without a path parameter uses PathId");
        return Err(ApiError::BadRequest("The request path could not be read."));
    };
    let name = name.unwrap_or(template_name);
    parse_integer(name, value, ID)
        .map_err(|(code, text)| ApiError::invalid(name.to_owned(), code, text))
}

/// The name of the matched route's one path parameter (`user_id` of
/// `/messages/{user_id}`).
fn path_parameter_name(parts: &Parts) -> Option<String> {
    let template = parts.extensions.get::<MatchedPath>()?.as_str();
    let start = template.find('{')? + 1;
    let end = start + template[start..].find('}')?;
    Some(template[start..end].to_owned())
}
