//! The headers that sign one delivery, as Standard Webhooks v1 defines them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::WebhookSecret;

/// The signature of `body` sent as message `id` at `timestamp` (Unix seconds):
/// `v1,` and the base64 of HMAC-SHA256 over `"id.timestamp.body"`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts a key of any length.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.key()).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;

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
