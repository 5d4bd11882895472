//! The WebSocket opening handshake (RFC 6455 §4.2), answered here rather than by
//! axum's extractor so the session owns the upgraded socket: after it sends a close
//! frame it can read and discard what the peer still sends (see `closing.rs`).

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::Role;

use crate::config::WsConfig;

/// An upgraded connection, as the session runs on it.
pub type UpgradedSocket = WebSocketStream<TokioIo<Upgraded>>;

/// A WebSocket handshake request, not answered yet: extract it in a handler, then
/// pass it to [`WsEndpoint::accept`](crate::WsEndpoint::accept) (or
/// [`WsUpgrade::on_upgrade`] for a socket of your own).
#[derive(Debug)]
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket handshake this server can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsUpgradeRejection {
    /// The method is not `GET`.
    MethodNotGet,
    /// `Connection` does not include `upgrade`.
    ConnectionHeader,
    /// `Upgrade` is not `websocket`.
    UpgradeHeader,
    /// `Sec-WebSocket-Version` is not 13.
    VersionHeader,
    /// `Sec-WebSocket-Key` is missing.
    KeyMissing,
    /// The connection cannot be taken over: not HTTP/1.1, or not served by hyper.
    NotUpgradable,
}

impl WsUpgradeRejection {
    /// The status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            Self::ConnectionHeader
            | Self::UpgradeHeader
            | Self::VersionHeader
            | Self::KeyMissing => StatusCode::BAD_REQUEST,
        }
    }

    /// What is wrong, for people.
    pub fn body_text(self) -> &'static str {
        match self {
            Self::MethodNotGet => "A WebSocket handshake must be a GET.",
            Self::ConnectionHeader => "The Connection header must include upgrade.",
            Self::UpgradeHeader => "The Upgrade header must be websocket.",
            Self::VersionHeader => "The Sec-WebSocket-Version header must be 13.",
            Self::KeyMissing => "The Sec-WebSocket-Key header is missing.",
            Self::NotUpgradable => "This connection cannot be upgraded: use HTTP/1.1.",
        }
    }
}

impl std::fmt::Display for WsUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.body_text())
    }
}

impl std::error::Error for WsUpgradeRejection {}

impl IntoResponse for WsUpgradeRejection {
    fn into_response(self) -> Response {
        (self.status(), self.body_text()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = WsUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET {
            return Err(WsUpgradeRejection::MethodNotGet);
        }
        if parts.version != Version::HTTP_11 {
            return Err(WsUpgradeRejection::NotUpgradable);
        }
        if !has_token(&parts.headers, &header::CONNECTION, "upgrade") {
            return Err(WsUpgradeRejection::ConnectionHeader);
        }
        if !has_token(&parts.headers, &header::UPGRADE, "websocket") {
            return Err(WsUpgradeRejection::UpgradeHeader);
        }
        let version = parts.headers.get(header::SEC_WEBSOCKET_VERSION);
        if version.is_none_or(|v| v.as_bytes() != b"13") {
            return Err(WsUpgradeRejection::VersionHeader);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(WsUpgradeRejection::KeyMissing)?
            .clone();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WsUpgradeRejection::NotUpgradable)?;
        Ok(Self { key, on_upgrade })
    }
}

impl WsUpgrade {
    /// Answers the handshake (101) and, once the connection is handed over, runs
    /// `callback` on it with the limits of `config`.
    pub fn on_upgrade<F, Fut>(self, config: &WsConfig, callback: F) -> Response
    where
        F: FnOnce(UpgradedSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let websocket_config = config.websocket_config();
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            // The client went away before the 101 reached it: nothing to run.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(websocket_config),
            )
            .await;
            callback(socket).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        // Base64 is always a valid header value.
        if let Ok(accept) = HeaderValue::try_from(derive_accept_key(self.key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// Whether the comma-separated header `name` holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_lists_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(has_token(&headers, &header::CONNECTION, "upgrade"));
        assert!(!has_token(&headers, &header::CONNECTION, "close"));
        headers.append(header::UPGRADE, HeaderValue::from_static("websocketx"));
        assert!(!has_token(&headers, &header::UPGRADE, "websocket"));
    }
}
