//! `JwtAuthenticator` accepts good tokens and refuses every known attack.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chat_core::jwt::{KeyError, MIN_HMAC_SECRET_BYTES};
use chat_core::{
    AuthError, Authenticator, Error, JwtAlgorithm, JwtAuthenticator, JwtIssuer, UserId,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &[u8] = b"an-hs256-secret-of-at-least-32-bytes!!";
const OTHER_SECRET: &[u8] = b"another-secret-that-is-also-32-bytes-long";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn refused(auth: &JwtAuthenticator, token: &str) -> AuthError {
    match auth.authenticate(token).await {
        Err(Error::Unauthenticated(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn accepts_a_valid_token_with_string_or_integer_subject() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let exp = now() + 600;
    for sub in [json!("42"), json!(42)] {
        let identity = auth
            .authenticate(&hs256(&json!({"sub": sub, "exp": exp}), SECRET))
            .await
            .unwrap();
        assert_eq!(identity.user_id, UserId::new(42));
        assert_eq!(identity.expires_at.unwrap().unix_timestamp(), exp);
    }
}

#[tokio::test]
async fn refuses_bad_subjects() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let exp = now() + 600;
    for sub in [
        json!("0"),
        json!(-3),
        json!("abc"),
        json!(""),
        json!("1.5"),
        json!(" 7"),
        json!(null),
    ] {
        let token = hs256(&json!({"sub": sub, "exp": exp}), SECRET);
        let reason = refused(&auth, &token).await;
        assert!(
            matches!(reason, AuthError::InvalidSubject | AuthError::Malformed),
            "sub {sub}: {reason:?}"
        );
    }
    let no_sub = hs256(&json!({"exp": exp}), SECRET);
    assert!(matches!(
        refused(&auth, &no_sub).await,
        AuthError::Malformed | AuthError::InvalidSubject
    ));
}

/// A token over a hand-written header and claims, signed with HS256 and `secret`: for
/// headers `jsonwebtoken::Header` cannot express.
fn hs256_with_raw_header(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        chat_core::testing::base64url(header.to_string().as_bytes()),
        chat_core::testing::base64url(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{signing_input}.{signature}")
}

#[tokio::test]
async fn subject_must_be_a_canonical_decimal_user_id() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let exp = now() + 600;
    for (sub, expected) in [
        (json!("7"), 7),
        (json!(7), 7),
        (json!("9223372036854775807"), i64::MAX),
        (json!(i64::MAX), i64::MAX),
    ] {
        let token = hs256(&json!({"sub": sub, "exp": exp}), SECRET);
        assert_eq!(
            auth.authenticate(&token).await.unwrap().user_id,
            UserId::new(expected),
            "sub {sub}"
        );
    }
    for sub in [
        json!("007"),
        json!("07"),
        json!("00"),
        json!("0"),
        json!("+7"),
        json!(" 7"),
        json!("7 "),
        json!("7.0"),
        json!("7e0"),
        json!("-7"),
        json!("\u{0667}"),
        json!("9223372036854775808"),
        json!("99999999999999999999999"),
        json!(0),
        json!(-7),
        json!(7.0),
        json!(7.5),
        json!(9_223_372_036_854_775_808_u64),
        json!(true),
        json!(["7"]),
        json!({"id": 7}),
    ] {
        let token = hs256(&json!({"sub": sub, "exp": exp}), SECRET);
        let reason = refused(&auth, &token).await;
        assert!(
            matches!(reason, AuthError::InvalidSubject | AuthError::Malformed),
            "sub {sub}: {reason:?}"
        );
    }
}

#[tokio::test]
async fn refuses_any_critical_header_extension() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let claims = json!({"sub": "1", "exp": now() + 600});
    // The same signing path without `crit` is accepted, so each refusal below is the
    // `crit` header's doing.
    let plain = hs256_with_raw_header(&json!({"alg": "HS256", "typ": "JWT"}), &claims, SECRET);
    auth.authenticate(&plain).await.unwrap();
    for header in [
        json!({"alg": "HS256", "crit": ["exp"], "exp": 1_900_000_000}),
        json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
        json!({"alg": "HS256", "crit": []}),
        json!({"alg": "HS256", "crit": "exp", "exp": 1}),
        json!({"alg": "HS256", "crit": null}),
        json!({"alg": "HS256", "crit": {}}),
        json!({"alg": "HS256", "crit": [1]}),
    ] {
        let token = hs256_with_raw_header(&header, &claims, SECRET);
        assert_eq!(
            refused(&auth, &token).await,
            AuthError::Malformed,
            "{header}"
        );
    }
    // Spelled with an escape, it is still `crit`.
    let escaped = r#"{"alg":"HS256","cr\u0069t":["exp"],"exp":1}"#;
    let signing_input = format!(
        "{}.{}",
        chat_core::testing::base64url(escaped.as_bytes()),
        chat_core::testing::base64url(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    let token = format!("{signing_input}.{signature}");
    assert_eq!(refused(&auth, &token).await, AuthError::Malformed);
    // Through the library's own header type too.
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".to_owned()]);
    let token = encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(refused(&auth, &token).await, AuthError::Malformed);
}

#[tokio::test]
async fn refuses_alg_none_and_foreign_algorithms() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let claims = json!({"sub": "1", "exp": now() + 600});
    let payload = chat_core::testing::base64url(claims.to_string().as_bytes());
    for header in [json!({"alg": "none", "typ": "JWT"}), json!({"alg": "None"})] {
        let token = format!(
            "{}.{payload}.",
            chat_core::testing::base64url(header.to_string().as_bytes())
        );
        let reason = refused(&auth, &token).await;
        assert!(
            matches!(
                reason,
                AuthError::Malformed | AuthError::AlgorithmNotAllowed
            ),
            "{reason:?}"
        );
    }
    // HS512 with the right secret is still not the one allowed algorithm.
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(refused(&auth, &hs512).await, AuthError::AlgorithmNotAllowed);
}

#[tokio::test]
async fn refuses_another_key_and_tampering() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let claims = json!({"sub": "1", "exp": now() + 600});
    assert_eq!(
        refused(&auth, &hs256(&claims, OTHER_SECRET)).await,
        AuthError::InvalidSignature
    );
    let good = hs256(&claims, SECRET);
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = chat_core::testing::base64url(
        json!({"sub": "2", "exp": now() + 600})
            .to_string()
            .as_bytes(),
    );
    parts[1] = &forged;
    assert_eq!(
        refused(&auth, &parts.join(".")).await,
        AuthError::InvalidSignature
    );
}

#[tokio::test]
async fn refuses_expired_and_not_yet_valid_tokens() {
    let auth = JwtAuthenticator::hs256(SECRET)
        .unwrap()
        .with_leeway(Duration::from_secs(5));
    let expired = hs256(&json!({"sub": "1", "exp": now() - 30}), SECRET);
    assert_eq!(refused(&auth, &expired).await, AuthError::Expired);
    let future = hs256(
        &json!({"sub": "1", "exp": now() + 600, "nbf": now() + 300}),
        SECRET,
    );
    assert_eq!(refused(&auth, &future).await, AuthError::NotYetValid);
    let no_exp = hs256(&json!({"sub": "1"}), SECRET);
    assert!(matches!(
        refused(&auth, &no_exp).await,
        AuthError::MissingClaim | AuthError::Malformed
    ));
    // Within the leeway both pass.
    let edge = hs256(
        &json!({"sub": "1", "exp": now() - 1, "nbf": now() + 1}),
        SECRET,
    );
    auth.authenticate(&edge).await.unwrap();
}

#[tokio::test]
async fn requires_issuer_and_audience_once_configured() {
    let auth = JwtAuthenticator::hs256(SECRET)
        .unwrap()
        .with_issuer("https://id.example")
        .with_audience("chat");
    let exp = now() + 600;
    let good = hs256(
        &json!({"sub": "1", "exp": exp, "iss": "https://id.example", "aud": "chat"}),
        SECRET,
    );
    auth.authenticate(&good).await.unwrap();
    let in_list = hs256(
        &json!({"sub": "1", "exp": exp, "iss": "https://id.example", "aud": ["x", "chat"]}),
        SECRET,
    );
    auth.authenticate(&in_list).await.unwrap();
    let cases = [
        (
            json!({"sub": "1", "exp": exp, "iss": "https://id.example"}),
            AuthError::InvalidAudience,
        ),
        (
            json!({"sub": "1", "exp": exp, "iss": "https://id.example", "aud": "other"}),
            AuthError::InvalidAudience,
        ),
        (
            json!({"sub": "1", "exp": exp, "aud": "chat"}),
            AuthError::InvalidIssuer,
        ),
        (
            json!({"sub": "1", "exp": exp, "iss": "https://evil.example", "aud": "chat"}),
            AuthError::InvalidIssuer,
        ),
    ];
    for (claims, expected) in cases {
        assert_eq!(
            refused(&auth, &hs256(&claims, SECRET)).await,
            expected,
            "{claims}"
        );
    }
}

#[tokio::test]
async fn refuses_garbage_without_panicking() {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    assert_eq!(refused(&auth, "").await, AuthError::Missing);
    for token in [
        "x",
        "a.b",
        "a.b.c",
        "...",
        "Bearer abc",
        "\u{0}\u{1}",
        &"A".repeat(10_000),
        "eyJhbGciOiJIUzI1NiJ9.%%%.sig",
    ] {
        assert!(
            matches!(
                auth.authenticate(token).await,
                Err(Error::Unauthenticated(_))
            ),
            "{token:?}"
        );
    }
}

#[test]
fn refuses_short_secrets_and_mismatched_keys() {
    let short = vec![b'k'; MIN_HMAC_SECRET_BYTES - 1];
    assert!(matches!(
        JwtAuthenticator::hs256(&short),
        Err(KeyError::SecretTooShort(31))
    ));
    assert!(matches!(
        JwtIssuer::hs256(&short),
        Err(KeyError::SecretTooShort(31))
    ));
    assert!(JwtAuthenticator::hs256(&[b'k'; MIN_HMAC_SECRET_BYTES]).is_ok());
    assert!(matches!(
        JwtAuthenticator::from_public_key_pem(JwtAlgorithm::Hs256, b"x"),
        Err(KeyError::WrongKeyKind(_))
    ));
    assert!(matches!(
        JwtAuthenticator::from_public_key_pem(JwtAlgorithm::Rs256, b"not a pem"),
        Err(KeyError::InvalidKey { .. })
    ));
    assert!(matches!(
        "HS384".parse::<JwtAlgorithm>(),
        Err(KeyError::UnsupportedAlgorithm(_))
    ));
    assert_eq!(
        "eddsa".parse::<JwtAlgorithm>().unwrap(),
        JwtAlgorithm::EdDsa
    );
}

#[tokio::test]
async fn verifies_public_key_algorithms() {
    let keys = [
        (JwtAlgorithm::Rs256, Algorithm::RS256, "rs256"),
        (JwtAlgorithm::Es256, Algorithm::ES256, "es256"),
        (JwtAlgorithm::EdDsa, Algorithm::EdDSA, "ed25519"),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let claims = json!({"sub": "9", "exp": now() + 600});
    for (ours, theirs, name) in keys {
        let private = std::fs::read(dir.join(format!("{name}-private.pem"))).unwrap();
        let public = std::fs::read(dir.join(format!("{name}-public.pem"))).unwrap();
        let signing = match theirs {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
            _ => EncodingKey::from_ed_pem(&private),
        }
        .unwrap();
        let auth = JwtAuthenticator::from_public_key_pem(ours, &public).unwrap();
        let token = encode(&Header::new(theirs), &claims, &signing).unwrap();
        assert_eq!(
            auth.authenticate(&token).await.unwrap().user_id,
            UserId::new(9),
            "{name}"
        );
        // An HS256 token whose secret is the public key (key confusion) is refused.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            refused(&auth, &confused).await,
            AuthError::AlgorithmNotAllowed,
            "{name}"
        );
    }
}

#[tokio::test]
async fn issuer_mints_tokens_the_authenticator_accepts() {
    let issuer = JwtIssuer::hs256(SECRET)
        .unwrap()
        .with_issuer("me")
        .with_audience("chat");
    let auth = JwtAuthenticator::hs256(SECRET)
        .unwrap()
        .with_issuer("me")
        .with_audience("chat");
    let token = issuer
        .mint(UserId::new(5), Duration::from_secs(3600))
        .unwrap();
    let identity = auth.authenticate(&token).await.unwrap();
    assert_eq!(identity.user_id, UserId::new(5));
    let strict = JwtAuthenticator::hs256(SECRET)
        .unwrap()
        .with_audience("elsewhere");
    assert_eq!(refused(&strict, &token).await, AuthError::InvalidAudience);
}
