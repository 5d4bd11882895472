//! Every signature this crate makes verifies with an independent implementation: the
//! `standardwebhooks` crate, as a receiver would check it.
#![allow(clippy::unwrap_used)]

use chat_webhooks::WebhookSecret;
use chat_webhooks::signature::headers;
use http::{HeaderMap, HeaderName, HeaderValue};
use standardwebhooks::Webhook;

fn header_map(pairs: [(&'static str, String); 3]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    map
}

#[test]
fn deliveries_verify_with_the_reference_library() {
    let secret = WebhookSecret::generate().unwrap();
    let receiver = Webhook::new(&secret.to_text()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = br#"{"type":"message.created","timestamp":"2026-12-04T00:00:00Z","data":{}}"#;
    let signed = header_map(headers(&secret, "job_42", now, body));
    receiver.verify(body, &signed).unwrap();
    // A changed body, id or secret does not verify.
    assert!(receiver.verify(b"{}", &signed).is_err());
    let other_id = header_map(headers(&secret, "job_43", now, body));
    let mut forged = signed.clone();
    forged.insert("webhook-id", other_id["webhook-id"].clone());
    assert!(receiver.verify(body, &forged).is_err());
    let stranger = Webhook::new(&WebhookSecret::generate().unwrap().to_text()).unwrap();
    assert!(stranger.verify(body, &signed).is_err());
}

#[test]
fn what_the_reference_library_signs_verifies_here() {
    let secret = WebhookSecret::generate().unwrap();
    let sender = Webhook::new(&secret.to_text()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = br#"{"type":"message.read","timestamp":"2026-12-04T00:00:00Z","data":{}}"#;
    let signature = sender.sign("msg_abc", now, body).unwrap();
    let verified = chat_webhooks::signature::verify(
        &secret,
        "msg_abc",
        &now.to_string(),
        &signature,
        body,
        now,
    );
    assert_eq!(verified, Ok(()));
    let forged = chat_webhooks::signature::verify(
        &secret,
        "msg_abd",
        &now.to_string(),
        &signature,
        body,
        now,
    );
    assert!(forged.is_err());
}
