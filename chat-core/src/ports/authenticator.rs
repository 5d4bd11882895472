use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::UserId;

/// Who a credential belongs to, and until when it is good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user (≥ 1).
    pub user_id: UserId,
    /// When the credential stops being valid, if it expires; long-lived connections
    /// close then.
    pub expires_at: Option<OffsetDateTime>,
}

/// Turns a bearer credential into an [`Identity`].
///
/// Implement it to reuse the host's sessions or API keys; `JwtAuthenticator` is the
/// provided one.
///
/// # Contract
///
/// - The credential is the bearer value without the `Bearer ` prefix; an empty string
///   means none was presented and gives `AuthError::Missing`.
/// - A refused credential is `Error::Unauthenticated` with the reason; the reasons are
///   safe to show the client. No other variant for a bad credential.
/// - A backend that cannot be reached (a session store) is `Error::Unavailable`, so
///   callers answer 503, not 401.
/// - The returned `user_id` is ≥ 1.
/// - It is cheap enough to call on every request, and must not panic on any input.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Checks `credential` and says whose it is.
    async fn authenticate(&self, credential: &str) -> Result<Identity, Error>;
}
