//! The one error type of the chat library.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A boxed error from a driver or transport, kept for logs and never shown to clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the chat library. Adapters convert their driver
/// errors into it; servers map each variant to one status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input broke a rule; each field error says which field and why.
    #[error("{0}")]
    Validation(ValidationErrors),
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up (`"message"`).
        what: &'static str,
    },
    /// The caller may see the thing but not do this to it.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why, in words safe to show the caller.
        reason: &'static str,
    },
    /// The request conflicts with stored state (a reused idempotency key).
    #[error("conflict: {message}")]
    Conflict {
        /// What conflicted, in words safe to show the caller.
        message: String,
    },
    /// Too many requests; try again after `retry_after`.
    #[error("too many requests; retry after {retry_after:?}")]
    RateLimited {
        /// How long until the request would be allowed.
        retry_after: Duration,
        /// The limit that was hit (requests in a burst).
        limit: u32,
    },
    /// The credential is missing or not acceptable.
    #[error("unauthenticated: {0}")]
    Unauthenticated(AuthError),
    /// A backing service (database, broker) cannot be reached right now; retrying later
    /// may succeed.
    #[error("service unavailable")]
    Unavailable {
        /// The underlying failure, for logs.
        #[source]
        source: BoxError,
    },
    /// A bug or an unexpected state: never the caller's fault.
    #[error("internal error")]
    Internal {
        /// The underlying failure, for logs.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A validation error with a single field error.
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        code: ValidationCode,
        message: impl Into<String>,
    ) -> Self {
        let mut errors = ValidationErrors::default();
        errors.add(field, code, message);
        Self::Validation(errors)
    }

    /// An `Unavailable` error from any source.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }

    /// An `Internal` error from any source.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal {
            source: source.into(),
        }
    }

    /// The validation errors, if this is a validation error.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match self {
            Self::Validation(errors) => Some(errors),
            _ => None,
        }
    }
}

/// Why a credential was refused. The messages are safe to show to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential was presented.
    #[error("missing credential")]
    Missing,
    /// The credential could not be parsed.
    #[error("malformed credential")]
    Malformed,
    /// The signature does not verify with the configured key.
    #[error("invalid signature")]
    InvalidSignature,
    /// The token names an algorithm other than the one allowed.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token is not valid yet (`nbf` in the future).
    #[error("token not yet valid")]
    NotYetValid,
    /// The issuer is missing or not the configured one.
    #[error("invalid issuer")]
    InvalidIssuer,
    /// The audience is missing or not the configured one.
    #[error("invalid audience")]
    InvalidAudience,
    /// The subject is missing or not a user id ≥ 1.
    #[error("invalid subject")]
    InvalidSubject,
    /// A required claim is missing.
    #[error("missing required claim")]
    MissingClaim,
    /// The credential is unknown or revoked.
    #[error("invalid credential")]
    Invalid,
}

/// What kind of rule a field broke; lets callers react without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValidationCode {
    /// Required and missing or blank.
    Required,
    /// Longer than allowed.
    TooLong,
    /// Outside the allowed range.
    OutOfRange,
    /// Characters or shape not allowed.
    InvalidFormat,
    /// Names the caller where another user is required.
    SelfReference,
    /// Two fields that cannot be used together.
    Exclusive,
    /// Not of the expected type (a string where a number belongs).
    InvalidType,
    /// Not a field of this input.
    Unknown,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as named in the HTTP API (`receiver_id`, `message`, …).
    pub field: Cow<'static, str>,
    /// The kind of rule.
    pub code: ValidationCode,
    /// A sentence for people.
    pub message: String,
}

/// Every broken rule of one input, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// Records a broken rule.
    pub fn add(
        &mut self,
        field: impl Into<Cow<'static, str>>,
        code: ValidationCode,
        message: impl Into<String>,
    ) {
        self.errors.push(FieldError {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    /// No rule broken.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The field errors in the order found.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Whether `field` broke a rule.
    pub fn has(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// Messages grouped by field, the shape of Laravel's `errors` object.
    pub fn by_field(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in &self.errors {
            map.entry(&e.field).or_default().push(&e.message);
        }
        map
    }

    /// `Ok(())` when empty, else the validation error.
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [] => f.write_str("the given data was invalid"),
            [first] => f.write_str(&first.message),
            [first, rest @ ..] => write!(
                f,
                "{} (and {} more error{})",
                first.message,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }
}
