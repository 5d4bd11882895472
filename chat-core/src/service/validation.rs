//! Input rules, each naming the field it checks.

use crate::error::{ValidationCode, ValidationErrors};
use crate::ids::{MessageId, UserId};
use crate::page::MAX_PAGE_SIZE;

/// Longest `client_message_id`, in characters.
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 64;

/// Requires `id` ≥ 1.
pub(crate) fn positive_id(errors: &mut ValidationErrors, field: &'static str, id: i64) {
    if id < 1 {
        errors.add(
            field,
            ValidationCode::OutOfRange,
            format!("The {field} field must be at least 1."),
        );
    }
}

/// Requires a cursor ≥ 0 (0 means "from the beginning").
pub(crate) fn cursor_id(errors: &mut ValidationErrors, field: &'static str, id: MessageId) {
    if id.get() < 0 {
        errors.add(
            field,
            ValidationCode::OutOfRange,
            format!("The {field} field must be at least 0."),
        );
    }
}

/// Requires `other` to be a user other than `caller`.
pub(crate) fn counterpart(
    errors: &mut ValidationErrors,
    field: &'static str,
    caller: UserId,
    other: UserId,
) {
    positive_id(errors, field, other.get());
    if other == caller {
        errors.add(
            field,
            ValidationCode::SelfReference,
            format!("The {field} field must be another user."),
        );
    }
}

/// Requires 1 ≤ `value` ≤ 100.
pub(crate) fn page_size(errors: &mut ValidationErrors, field: &'static str, value: u32) {
    if !(1..=MAX_PAGE_SIZE).contains(&value) {
        errors.add(
            field,
            ValidationCode::OutOfRange,
            format!("The {field} field must be between 1 and {MAX_PAGE_SIZE}."),
        );
    }
}

/// Trims `text` and checks it is non-empty, at most `max_chars` characters, and free of
/// control characters other than tab, line feed and carriage return (a NUL byte, for
/// one, cannot be stored by every database). Returns the trimmed text.
pub(crate) fn message_text<'a>(
    errors: &mut ValidationErrors,
    text: &'a str,
    max_chars: usize,
) -> &'a str {
    const FIELD: &str = "message";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        errors.add(
            FIELD,
            ValidationCode::Required,
            "The message field is required.",
        );
        return trimmed;
    }
    // Counting stops one past the limit: a huge body costs no more than a legal one.
    if trimmed.chars().take(max_chars + 1).count() > max_chars {
        errors.add(
            FIELD,
            ValidationCode::TooLong,
            format!("The message field must not be greater than {max_chars} characters."),
        );
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        errors.add(
            FIELD,
            ValidationCode::InvalidFormat,
            "The message field must not contain control characters.",
        );
    }
    trimmed
}

/// Checks a client message id: 1–64 characters of `[A-Za-z0-9._:-]`.
pub(crate) fn client_message_id(errors: &mut ValidationErrors, id: &str) {
    const FIELD: &str = "client_message_id";
    if id.is_empty() {
        errors.add(
            FIELD,
            ValidationCode::Required,
            "The client_message_id field must not be empty.",
        );
    } else if id.len() > MAX_CLIENT_MESSAGE_ID_CHARS {
        // Every allowed character is one byte, so bytes bound characters here.
        errors.add(
            FIELD,
            ValidationCode::TooLong,
            format!(
                "The client_message_id field must not be greater than {MAX_CLIENT_MESSAGE_ID_CHARS} characters."
            ),
        );
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        errors.add(
            FIELD,
            ValidationCode::InvalidFormat,
            "The client_message_id field may only contain letters, digits and . _ : -",
        );
    }
}

/// Checks a batch of message ids: 1 to `max` ids, each ≥ 1.
pub(crate) fn id_batch(
    errors: &mut ValidationErrors,
    field: &'static str,
    ids: &[MessageId],
    max: usize,
) {
    if ids.is_empty() {
        errors.add(
            field,
            ValidationCode::Required,
            format!("The {field} field must list at least one id."),
        );
    } else if ids.len() > max {
        errors.add(
            field,
            ValidationCode::TooLong,
            format!("The {field} field must not list more than {max} ids."),
        );
    } else if ids.iter().any(|id| id.get() < 1) {
        errors.add(
            field,
            ValidationCode::OutOfRange,
            format!("Every id in the {field} field must be at least 1."),
        );
    }
}
