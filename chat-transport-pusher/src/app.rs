//! The application's credentials.

/// One Pusher application: the `id` in the HTTP API's paths, the public `key` clients
/// connect with, and the `secret` both sides sign with. `Debug` never shows the secret.
#[derive(Clone)]
pub struct PusherApp {
    id: String,
    key: String,
    secret: String,
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The id or the key is empty, too long, or holds a character other than ASCII
    /// letters, digits, `-`, `_` and `.` (both appear in URLs).
    #[error("the Pusher app {0} must be 1 to 64 of A-Z, a-z, 0-9, '-', '_' and '.'")]
    BadName(&'static str),
    /// The secret is empty.
    #[error("the Pusher app secret must not be empty")]
    EmptySecret,
}

/// Longest id or key.
const MAX_NAME: usize = 64;

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl PusherApp {
    /// The application `id` with its `key` and `secret`.
    pub fn new(
        id: impl Into<String>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<Self, AppError> {
        let (id, key, secret) = (id.into(), key.into(), secret.into());
        if !plain_name(&id) {
            return Err(AppError::BadName("id"));
        }
        if !plain_name(&key) {
            return Err(AppError::BadName("key"));
        }
        if secret.is_empty() {
            return Err(AppError::EmptySecret);
        }
        Ok(Self { id, key, secret })
    }

    /// The id in the HTTP API's paths (`/apps/{id}/events`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key clients connect with (`/app/{key}`) and that prefixes every
    /// authorization string.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Development credentials derived from `seed` (a server's development secret):
    /// id `chat-dev`, key `chat-dev-key`, and a secret that is the same for the same
    /// seed, so a Laravel `.env` written once keeps working across restarts, and that
    /// does not reveal the seed.
    pub fn development(seed: &[u8]) -> Self {
        use hmac::{KeyInit, Mac};
        // HMAC accepts a key of any length.
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(seed)
            .expect("HMAC takes any key length");
        mac.update(b"chat pusher development secret");
        let secret = hex::encode(&mac.finalize().into_bytes()[..16]);
        Self {
            id: "chat-dev".to_owned(),
            key: "chat-dev-key".to_owned(),
            secret,
        }
    }

    /// The secret, for printing development credentials; never log a real one.
    pub fn secret_text(&self) -> &str {
        &self.secret
    }

    pub(crate) fn secret(&self) -> &[u8] {
        self.secret.as_bytes()
    }
}

impl std::fmt::Debug for PusherApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherApp")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys_are_plain_names_and_the_secret_is_required() {
        assert!(PusherApp::new("1", "app-key_1.x", "s").is_ok());
        assert_eq!(
            PusherApp::new("", "key", "s").unwrap_err(),
            AppError::BadName("id")
        );
        assert_eq!(
            PusherApp::new("1", "a/b", "s").unwrap_err(),
            AppError::BadName("key")
        );
        assert_eq!(
            PusherApp::new("1", "k".repeat(65), "s").unwrap_err(),
            AppError::BadName("key")
        );
        assert_eq!(
            PusherApp::new("1", "key", "").unwrap_err(),
            AppError::EmptySecret
        );
    }

    #[test]
    fn development_credentials_follow_the_seed() {
        let one = PusherApp::development(b"seed one");
        assert_eq!((one.id(), one.key()), ("chat-dev", "chat-dev-key"));
        assert_eq!(
            one.secret_text(),
            PusherApp::development(b"seed one").secret_text()
        );
        assert_ne!(
            one.secret_text(),
            PusherApp::development(b"seed two").secret_text()
        );
        assert_eq!(one.secret_text().len(), 32);
        assert!(!one.secret_text().contains("seed"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let app = PusherApp::new("1", "key", "hush-hush").unwrap();
        assert!(!format!("{app:?}").contains("hush"));
    }
}
