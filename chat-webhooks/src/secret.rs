//! An endpoint's signing secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of a Standard Webhooks secret.
const PREFIX: &str = "whsec_";
/// Shortest and longest secret, in bytes (Standard Webhooks: 24 to 64).
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

/// A webhook endpoint's secret: `whsec_` and the base64 of 24 to 64 random bytes.
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a webhook secret starts with whsec_")]
    Prefix,
    /// What follows the prefix is not base64.
    #[error("a webhook secret is whsec_ followed by base64")]
    Base64,
    /// It decodes to too few or too many bytes.
    #[error("a webhook secret holds 24 to 64 bytes, not {0}")]
    Length(usize),
}

impl WebhookSecret {
    /// The raw key.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }

    /// A fresh secret of 32 random bytes, for development and for operators.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The secret as written in configuration: `whsec_` and base64.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let encoded = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Prefix)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Self(bytes))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_and_24_to_64_bytes_of_base64() {
        let text = format!("whsec_{}", STANDARD.encode([7_u8; 24]));
        let secret: WebhookSecret = text.parse().unwrap();
        assert_eq!(secret.to_text(), text);
        assert_eq!(
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse::<WebhookSecret>(),
            Err(SecretError::Prefix)
        );
        assert_eq!(
            "whsec_not base64!".parse::<WebhookSecret>(),
            Err(SecretError::Base64)
        );
        let short = format!("whsec_{}", STANDARD.encode([7_u8; 23]));
        assert_eq!(short.parse::<WebhookSecret>(), Err(SecretError::Length(23)));
        let long = format!("whsec_{}", STANDARD.encode([7_u8; 65]));
        assert_eq!(long.parse::<WebhookSecret>(), Err(SecretError::Length(65)));
        let fresh = WebhookSecret::generate().unwrap();
        assert_eq!(fresh.to_text().parse::<WebhookSecret>().unwrap(), fresh);
        assert!(!format!("{fresh:?}").contains(&fresh.to_text()[6..]));
    }
}
