//! The headers that sign one delivery, as Standard Webhooks v1 defines them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::WebhookSecret;

/// The signature of `body` sent as message `id` at `timestamp` (Unix seconds):
/// `v1,` and the base64 of HMAC-SHA256 over `"id.timestamp.body"`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = signed_content(secret, id, timestamp, body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The HMAC-SHA256 of `"id.timestamp.body"` under the secret, before its result is read.
fn signed_content(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts a key of any length.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.key()).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The three headers of a delivery: `webhook-id` (the same on every attempt),
/// `webhook-timestamp` (this attempt's) and `webhook-signature`.
pub fn headers(
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secret, id, timestamp, body)),
    ]
}

/// How far a delivery's `webhook-timestamp` may be from the receiver's clock: older
/// (or newer) deliveries are refused, so a captured one cannot be replayed later.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Why a delivery does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// `webhook-timestamp` is not a number of seconds.
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    /// `webhook-timestamp` is more than [`TOLERANCE_SECONDS`] away from now.
    #[error("webhook-timestamp is too far from now")]
    Stale,
    /// No `v1` signature in `webhook-signature` matches.
    #[error("no signature matches")]
    Mismatch,
}

/// Verifies a delivery as a receiver should before trusting its body: `id`,
/// `timestamp` and `signatures` are the `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers (space-separated `v1,<base64>` entries, any of which may
/// match), `now` the receiver's Unix time. Signatures are compared in constant time.
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if now.abs_diff(sent) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let mac = signed_content(secret, id, sent, body);
    let matches = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_its_own_signatures_and_refuses_changes() {
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signed = sign(&secret, "msg_1", 1_614_265_330, body);
        let other = format!("v1,{} {signed}", STANDARD.encode([0_u8; 32]));
        for signatures in [signed.as_str(), other.as_str()] {
            assert_eq!(
                verify(
                    &secret,
                    "msg_1",
                    "1614265330",
                    signatures,
                    body,
                    1_614_265_400
                ),
                Ok(())
            );
        }
        let check = |id, timestamp, signature: &str, body: &[u8], now| {
            verify(&secret, id, timestamp, signature, body, now)
        };
        assert_eq!(
            check("msg_2", "1614265330", &signed, body, 1_614_265_330),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("msg_1", "1614265330", &signed, b"{}", 1_614_265_330),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("msg_1", "1614265330", "v2,abc", body, 1_614_265_330),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("msg_1", "1614265330", &signed, body, 1_614_266_000),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check("msg_1", "soon", &signed, body, 1_614_265_330),
            Err(VerifyError::BadTimestamp)
        );
    }

    /// The worked example of the Standard Webhooks reference libraries.
    #[test]
    fn the_reference_example_signs_the_same() {
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
