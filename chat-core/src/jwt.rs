//! `JwtAuthenticator`: bearer JSON Web Tokens, verified strictly.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::error::{AuthError, Error};
use crate::ids::UserId;
use crate::ports::{Authenticator, Identity};

/// Shortest HMAC secret accepted, in bytes (the size of the SHA-256 output).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Clock skew tolerated on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// The one signature algorithm a `JwtAuthenticator` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl std::str::FromStr for JwtAlgorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            "EDDSA" => Ok(Self::EdDsa),
            _ => Err(KeyError::UnsupportedAlgorithm(s.to_owned())),
        }
    }
}

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The HMAC secret is shorter than [`MIN_HMAC_SECRET_BYTES`].
    #[error("the HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes, got {0}")]
    SecretTooShort(usize),
    /// The algorithm is not one of HS256, RS256, ES256, EdDSA.
    #[error("unsupported JWT algorithm {0:?}: use HS256, RS256, ES256 or EdDSA")]
    UnsupportedAlgorithm(String),
    /// A public-key algorithm was asked for with a secret, or the reverse.
    #[error("{0:?} does not take this kind of key")]
    WrongKeyKind(JwtAlgorithm),
    /// The PEM could not be read as a key for the algorithm.
    #[error("invalid {algorithm:?} key: {source}")]
    InvalidKey {
        /// The algorithm the key was meant for.
        algorithm: JwtAlgorithm,
        /// What the parser said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// Verifies `Authorization: Bearer` JSON Web Tokens.
///
/// Strict where the library is loose by default: exactly one algorithm, `exp` required,
/// `nbf` checked when present, an explicit leeway ([`DEFAULT_LEEWAY`]), and once an
/// issuer or audience is configured, tokens without it are refused. `sub` is the user
/// id, as a canonical decimal string (`"7"`; not `"007"`, `"+7"` or `"7.0"`) or a JSON
/// integer, and must be ≥ 1. A header with `crit` is refused: it names extensions the
/// token needs understood, and this authenticator understands none (RFC 7515 §4.1.11).
#[derive(Clone)]
pub struct JwtAuthenticator {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithm", &self.algorithm)
            .field("leeway", &self.validation.leeway)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// HS256 with a shared secret of at least 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self::with_key(
            JwtAlgorithm::Hs256,
            DecodingKey::from_secret(secret),
        ))
    }

    /// RS256, ES256 or EdDSA with a public key in PEM.
    pub fn from_public_key_pem(algorithm: JwtAlgorithm, pem: &[u8]) -> Result<Self, KeyError> {
        let key = match algorithm {
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
            JwtAlgorithm::Hs256 => return Err(KeyError::WrongKeyKind(algorithm)),
        }
        .map_err(|source| KeyError::InvalidKey { algorithm, source })?;
        Ok(Self::with_key(algorithm, key))
    }

    fn with_key(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm.algorithm());
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        Self {
            algorithm,
            key,
            validation,
        }
    }

    /// Requires tokens to carry `iss` equal to `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.validation.set_issuer(&[issuer.into()]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Requires tokens to carry `audience` in `aud`.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.validation.set_audience(&[audience.into()]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Tolerates `leeway` of clock skew on `exp` and `nbf` (whole seconds).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// The accepted algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        refuse_critical_extensions(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| auth_error(e.kind()))?;
        let user_id = data.claims.sub.user_id().ok_or(AuthError::InvalidSubject)?;
        let expires_at = OffsetDateTime::from_unix_timestamp(data.claims.exp).ok();
        Ok(Identity {
            user_id,
            expires_at,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, credential: &str) -> Result<Identity, Error> {
        self.verify(credential).map_err(Error::Unauthenticated)
    }
}

fn auth_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::AlgorithmNotAllowed
        }
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::InvalidIssuer,
        ErrorKind::InvalidAudience => AuthError::InvalidAudience,
        ErrorKind::InvalidSubject => AuthError::InvalidSubject,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::InvalidIssuer,
            "aud" => AuthError::InvalidAudience,
            "sub" => AuthError::InvalidSubject,
            _ => AuthError::MissingClaim,
        },
        _ => AuthError::Malformed,
    }
}

/// Refuses a token whose header has a `crit` member, whatever its value.
///
/// RFC 7515 §4.1.11 makes a recipient refuse a token whose `crit` lists an extension it
/// does not understand, and we understand none; an empty or non-array `crit` is invalid
/// by the same section. jsonwebtoken parses `crit` but never enforces it, and reads
/// `"crit": null` as absent, so the header segment is read here.
fn refuse_critical_extensions(token: &str) -> Result<(), AuthError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let json = decode_base64url(encoded).ok_or(AuthError::Malformed)?;
    let header: HeaderProbe = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    if header.crit {
        return Err(AuthError::Malformed);
    }
    Ok(())
}

/// The one header member looked at before jsonwebtoken verifies the token.
#[derive(Deserialize)]
struct HeaderProbe {
    /// Whether `crit` is present at all (`null` included).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: Deserializer<'de>>(value: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(value).map(|_| true)
}

/// Unpadded base64url (RFC 7515 §2), as JWS segments are written; `None` for any other
/// character or an impossible length.
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits).to_le_bytes()[0]);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[derive(Deserialize)]
struct Claims {
    sub: Subject,
    exp: i64,
}

/// `sub` as a decimal string (the standard) or a JSON integer (common in practice).
///
/// A JSON number with a fraction or an exponent (`7.0`) is neither, so it is refused.
#[derive(Deserialize)]
#[serde(untagged)]
enum Subject {
    Number(i64),
    Text(String),
}

impl Subject {
    fn user_id(&self) -> Option<UserId> {
        let raw = match self {
            Self::Number(n) => *n,
            Self::Text(s) => canonical_decimal(s)?,
        };
        (raw >= 1).then_some(UserId::new(raw))
    }
}

/// The value of `text` when it is written exactly as the id prints: ASCII digits, no
/// sign, no space, no leading zero, within `i64`. One id has one spelling, so ids
/// compared or logged as text elsewhere cannot disagree (`"007"` is not user 7).
fn canonical_decimal(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let canonical = match bytes {
        [] | [b'0', _, ..] => false,
        _ => bytes.iter().all(u8::is_ascii_digit),
    };
    // `parse` alone would take a leading `+`; the check above refuses it first.
    canonical.then(|| text.parse().ok()).flatten()
}

/// Mints tokens the matching `JwtAuthenticator` accepts: for development tools and
/// tests.
#[derive(Clone)]
pub struct JwtIssuer {
    header: Header,
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("algorithm", &self.header.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl JwtIssuer {
    /// HS256 with a shared secret of at least 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self {
            header: Header::new(Algorithm::HS256),
            key: EncodingKey::from_secret(secret),
            issuer: None,
            audience: None,
        })
    }

    /// Sets `iss` in minted tokens.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets `aud` in minted tokens.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A token for `user` valid for `ttl` from now.
    pub fn mint(&self, user: UserId, ttl: Duration) -> Result<String, Error> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = MintedClaims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(ttl),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(Error::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::{canonical_decimal, decode_base64url};

    #[test]
    fn base64url_segments() {
        assert_eq!(
            decode_base64url("eyJhbGciOiJIUzI1NiJ9").as_deref(),
            Some(&br#"{"alg":"HS256"}"#[..])
        );
        assert_eq!(decode_base64url("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64url("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(decode_base64url("Zm9vYmE").as_deref(), Some(&b"fooba"[..]));
        assert_eq!(
            decode_base64url("-_-_").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
        for bad in ["A", "Zm9vYg==", "ab+c", "ab/c", "ab c", "é"] {
            assert_eq!(decode_base64url(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_decimals() {
        assert_eq!(canonical_decimal("7"), Some(7));
        assert_eq!(canonical_decimal("0"), Some(0));
        assert_eq!(canonical_decimal("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "007",
            "00",
            "+7",
            "-7",
            " 7",
            "7 ",
            "7.0",
            "9223372036854775808",
        ] {
            assert_eq!(canonical_decimal(bad), None, "{bad}");
        }
    }
}
