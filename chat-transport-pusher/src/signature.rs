//! Signatures, as Pusher defines them: channel authorization strings (what the
//! authorization endpoint answers and a subscription carries) and signed HTTP API
//! requests. Every comparison of a signature is in constant time.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::{ChannelName, PusherApp, SocketId};

type HmacSha256 = Hmac<Sha256>;

/// The version of the HTTP API's signing scheme, the only one there is.
const AUTH_VERSION: &str = "1.0";

fn keyed(app: &PusherApp) -> HmacSha256 {
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as KeyInit>::new_from_slice(app.secret()).expect("HMAC takes any key length")
}

/// The MAC of `"socket_id:channel[:channel_data]"`.
fn channel_mac(
    app: &PusherApp,
    socket_id: &SocketId,
    channel: &ChannelName,
    channel_data: Option<&str>,
) -> HmacSha256 {
    let mut mac = keyed(app);
    mac.update(socket_id.as_str().as_bytes());
    mac.update(b":");
    mac.update(channel.as_str().as_bytes());
    if let Some(data) = channel_data {
        mac.update(b":");
        mac.update(data.as_bytes());
    }
    mac
}

/// The authorization string for `socket_id` to join `channel`: `"key:hex(HMAC-SHA256)"`
/// over `"socket_id:channel"`, with `":channel_data"` for a presence channel (exactly
/// the string the client will send).
pub fn authorize_channel(
    app: &PusherApp,
    socket_id: &SocketId,
    channel: &ChannelName,
    channel_data: Option<&str>,
) -> String {
    let tag = channel_mac(app, socket_id, channel, channel_data).finalize();
    format!("{}:{}", app.key(), hex::encode(tag.into_bytes()))
}

/// Whether `auth` authorizes `socket_id` to join `channel` with `channel_data`: the
/// app's key, then a signature compared in constant time.
pub fn channel_auth_is_valid(
    app: &PusherApp,
    socket_id: &SocketId,
    channel: &ChannelName,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    let Some((key, signature)) = auth.split_once(':') else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    key == app.key()
        && channel_mac(app, socket_id, channel, channel_data)
            .verify_slice(&signature)
            .is_ok()
}

/// A request to the HTTP API as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path, such as `/apps/1/events`, without the query.
    pub path: &'a str,
    /// The query parameters, percent-decoded, in any order.
    pub query: &'a [(String, String)],
    /// The body as received (empty for a `GET`).
    pub body: &'a [u8],
}

/// Why a request to the HTTP API was refused (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    /// A signing parameter is missing.
    #[error("the query parameter {0} is required")]
    Missing(&'static str),
    /// A query parameter appears more than once, so what was signed is ambiguous.
    #[error("the query parameter {0} is given more than once")]
    Repeated(String),
    /// `auth_key` is not this app's key.
    #[error("auth_key is not the key of this app")]
    UnknownKey,
    /// `auth_version` is not `1.0`.
    #[error("auth_version must be 1.0")]
    Version,
    /// `auth_timestamp` is not a number within the window of the server's clock.
    #[error("auth_timestamp must be within {window} seconds of the server's clock")]
    Timestamp {
        /// The window, in seconds either way.
        window: u64,
    },
    /// `body_md5` is missing for a body, or is not the body's MD5 in lowercase hex.
    #[error("body_md5 must be the MD5 of the body, in lowercase hex")]
    BodyMd5,
    /// `auth_signature` is not the request's signature.
    #[error("auth_signature does not match the request")]
    Signature,
}

/// The string the HTTP API signs: `"METHOD\npath\nk1=v1&k2=v2…"`, every parameter
/// but `auth_signature` sorted by name, values as decoded.
fn string_to_sign(method: &str, path: &str, params: &BTreeMap<&str, &str>) -> String {
    let query = params
        .iter()
        .filter(|(name, _)| **name != "auth_signature")
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{query}", method.to_ascii_uppercase())
}

fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Checks a signed request as Pusher does: this app's `auth_key`, `auth_version` 1.0,
/// `auth_timestamp` within `window` seconds of `now` (Unix seconds), `body_md5` for a
/// body, and `auth_signature` compared in constant time.
pub fn verify_api_request(
    app: &PusherApp,
    request: &ApiRequest<'_>,
    now: i64,
    window: u64,
) -> Result<(), ApiAuthError> {
    let mut params = BTreeMap::new();
    for (name, value) in request.query {
        if params.insert(name.as_str(), value.as_str()).is_some() {
            return Err(ApiAuthError::Repeated(name.clone()));
        }
    }
    let param = |name: &'static str| params.get(name).copied().ok_or(ApiAuthError::Missing(name));
    if param("auth_key")? != app.key() {
        return Err(ApiAuthError::UnknownKey);
    }
    if param("auth_version")? != AUTH_VERSION {
        return Err(ApiAuthError::Version);
    }
    let timestamp: i64 = param("auth_timestamp")?
        .parse()
        .map_err(|_| ApiAuthError::Timestamp { window })?;
    if now.abs_diff(timestamp) > window {
        return Err(ApiAuthError::Timestamp { window });
    }
    match params.get("body_md5") {
        Some(md5) if *md5 == body_md5(request.body) => {}
        None if request.body.is_empty() => {}
        _ => return Err(ApiAuthError::BodyMd5),
    }
    let signature = hex::decode(param("auth_signature")?).map_err(|_| ApiAuthError::Signature)?;
    let mut mac = keyed(app);
    mac.update(string_to_sign(request.method, request.path, &params).as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| ApiAuthError::Signature)
}

/// The query parameters that sign a request to the HTTP API: `params` with
/// `auth_key`, `auth_timestamp`, `auth_version`, `body_md5` (for a body) and
/// `auth_signature` added, as Pusher's server libraries send them.
pub fn sign_api_request(
    app: &PusherApp,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    timestamp: i64,
) -> Vec<(String, String)> {
    let timestamp = timestamp.to_string();
    let md5 = body_md5(body);
    let mut all: BTreeMap<&str, &str> = params.iter().copied().collect();
    all.insert("auth_key", app.key());
    all.insert("auth_timestamp", &timestamp);
    all.insert("auth_version", AUTH_VERSION);
    if !body.is_empty() {
        all.insert("body_md5", &md5);
    }
    let mut mac = keyed(app);
    mac.update(string_to_sign(method, path, &all).as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let mut signed: Vec<(String, String)> = all
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    signed.push(("auth_signature".to_owned(), signature));
    signed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of the worked examples in Pusher's documentation of its
    /// signatures.
    fn documented_app() -> PusherApp {
        PusherApp::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8").unwrap()
    }

    fn socket() -> SocketId {
        "1234.1234".parse().unwrap()
    }

    #[test]
    fn private_channel_signature_matches_the_documented_example() {
        let channel: ChannelName = "private-foobar".parse().unwrap();
        let auth = authorize_channel(&documented_app(), &socket(), &channel, None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(channel_auth_is_valid(
            &documented_app(),
            &socket(),
            &channel,
            None,
            &auth
        ));
    }

    #[test]
    fn channel_auth_covers_socket_channel_data_and_key() {
        let app = documented_app();
        let channel: ChannelName = "presence-chat.1.2".parse().unwrap();
        let data = r#"{"user_id":"1","user_info":{"id":1}}"#;
        let auth = authorize_channel(&app, &socket(), &channel, Some(data));
        assert!(channel_auth_is_valid(
            &app,
            &socket(),
            &channel,
            Some(data),
            &auth
        ));

        let other_socket: SocketId = "1234.1235".parse().unwrap();
        let other_channel: ChannelName = "presence-chat.1.3".parse().unwrap();
        let other_data = r#"{"user_id":"2","user_info":{"id":2}}"#;
        assert!(!channel_auth_is_valid(
            &app,
            &other_socket,
            &channel,
            Some(data),
            &auth
        ));
        assert!(!channel_auth_is_valid(
            &app,
            &socket(),
            &other_channel,
            Some(data),
            &auth
        ));
        assert!(!channel_auth_is_valid(
            &app,
            &socket(),
            &channel,
            Some(other_data),
            &auth
        ));
        assert!(!channel_auth_is_valid(
            &app,
            &socket(),
            &channel,
            None,
            &auth
        ));

        let other_secret = PusherApp::new("3", "278d425bdf160c739803", "another").unwrap();
        assert!(!channel_auth_is_valid(
            &other_secret,
            &socket(),
            &channel,
            Some(data),
            &auth
        ));
        let (_, signature) = auth.split_once(':').unwrap();
        for forged in [
            format!("another-key:{signature}"),
            signature.to_owned(),
            format!("278d425bdf160c739803:{}", &signature[..62]),
            format!("278d425bdf160c739803:{signature}00"),
            "278d425bdf160c739803:not-hex".to_owned(),
            String::new(),
        ] {
            assert!(
                !channel_auth_is_valid(&app, &socket(), &channel, Some(data), &forged),
                "{forged}"
            );
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// The worked example of Pusher's HTTP API reference.
    const BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    #[test]
    fn api_signature_matches_the_documented_example() {
        let params = query(&[
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ]);
        let request = ApiRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &params,
            body: BODY,
        };
        assert_eq!(
            verify_api_request(&documented_app(), &request, 1_353_088_179, 600),
            Ok(())
        );
        let signed = sign_api_request(
            &documented_app(),
            "POST",
            "/apps/3/events",
            &[],
            BODY,
            1_353_088_179,
        );
        let mut expected = params.clone();
        expected.sort();
        let mut signed_sorted = signed.clone();
        signed_sorted.sort();
        assert_eq!(signed_sorted, expected);
    }

    fn verify(
        signed: &[(String, String)],
        method: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), ApiAuthError> {
        let request = ApiRequest {
            method,
            path,
            query: signed,
            body,
        };
        verify_api_request(&documented_app(), &request, now, 600)
    }

    #[test]
    fn every_part_of_an_api_request_is_covered() {
        let app = documented_app();
        let now = 1_700_000_000;
        let signed = sign_api_request(
            &app,
            "GET",
            "/apps/3/channels",
            &[("filter_by_prefix", "presence-")],
            b"",
            now,
        );
        assert_eq!(verify(&signed, "GET", "/apps/3/channels", b"", now), Ok(()));
        assert_eq!(
            verify(&signed, "GET", "/apps/3/channels", b"", now + 600),
            Ok(())
        );
        assert_eq!(
            verify(&signed, "GET", "/apps/3/channels", b"", now - 600),
            Ok(())
        );

        assert_eq!(
            verify(&signed, "POST", "/apps/3/channels", b"", now),
            Err(ApiAuthError::Signature)
        );
        assert_eq!(
            verify(&signed, "GET", "/apps/3/channels/x", b"", now),
            Err(ApiAuthError::Signature)
        );
        assert_eq!(
            verify(&signed, "GET", "/apps/3/channels", b"", now + 601),
            Err(ApiAuthError::Timestamp { window: 600 })
        );
        assert_eq!(
            verify(&signed, "GET", "/apps/3/channels", b"", now - 601),
            Err(ApiAuthError::Timestamp { window: 600 })
        );
        assert_eq!(
            verify(&signed, "GET", "/apps/3/channels", b"{}", now),
            Err(ApiAuthError::BodyMd5)
        );

        let with = |name: &str, value: &str| {
            let mut changed: Vec<_> = signed.iter().filter(|(n, _)| n != name).cloned().collect();
            changed.push((name.to_owned(), value.to_owned()));
            changed
        };
        let without = |name: &str| {
            signed
                .iter()
                .filter(|(n, _)| n != name)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            verify(
                &with("filter_by_prefix", "private-"),
                "GET",
                "/apps/3/channels",
                b"",
                now
            ),
            Err(ApiAuthError::Signature)
        );
        assert_eq!(
            verify(
                &with("auth_key", "other"),
                "GET",
                "/apps/3/channels",
                b"",
                now
            ),
            Err(ApiAuthError::UnknownKey)
        );
        assert_eq!(
            verify(
                &with("auth_version", "2.0"),
                "GET",
                "/apps/3/channels",
                b"",
                now
            ),
            Err(ApiAuthError::Version)
        );
        assert_eq!(
            verify(
                &with("auth_timestamp", "soon"),
                "GET",
                "/apps/3/channels",
                b"",
                now
            ),
            Err(ApiAuthError::Timestamp { window: 600 })
        );
        assert_eq!(
            verify(
                &with("auth_signature", "zz"),
                "GET",
                "/apps/3/channels",
                b"",
                now
            ),
            Err(ApiAuthError::Signature)
        );
        for name in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
        ] {
            assert!(
                matches!(
                    verify(&without(name), "GET", "/apps/3/channels", b"", now),
                    Err(ApiAuthError::Missing(_))
                ),
                "{name}"
            );
        }
        let mut repeated = signed.clone();
        repeated.push(("filter_by_prefix".to_owned(), "presence-".to_owned()));
        assert_eq!(
            verify(&repeated, "GET", "/apps/3/channels", b"", now),
            Err(ApiAuthError::Repeated("filter_by_prefix".to_owned()))
        );
    }

    #[test]
    fn a_body_must_be_the_signed_one() {
        let app = documented_app();
        let now = 1_700_000_000;
        let signed = sign_api_request(&app, "POST", "/apps/3/events", &[], BODY, now);
        assert_eq!(verify(&signed, "POST", "/apps/3/events", BODY, now), Ok(()));
        assert_eq!(
            verify(&signed, "POST", "/apps/3/events", b"{}", now),
            Err(ApiAuthError::BodyMd5)
        );
        let without_md5: Vec<_> = signed
            .iter()
            .filter(|(n, _)| n != "body_md5")
            .cloned()
            .collect();
        assert_eq!(
            verify(&without_md5, "POST", "/apps/3/events", BODY, now),
            Err(ApiAuthError::BodyMd5)
        );
    }
}
