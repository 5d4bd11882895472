//! The demo page at `/` (plain HTML, CSS and JS compiled into the binary, on the REST
//! API and the native WebSocket protocol), and in development mode `POST /dev/token`,
//! which mints a token for a chosen user so the page can sign in as "user N".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chat_core::{JwtIssuer, UserId, ValidationCode};
use chat_http::{ApiError, ApiJson, AppState};
use serde::Deserialize;

/// How long a development token is valid.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The largest `POST /dev/token` body.
const DEV_TOKEN_BODY_BYTES: usize = 1024;

const PAGE: &str = include_str!("../demo/index.html");
const SCRIPT: &str = include_str!("../demo/demo.js");
const STYLE: &str = include_str!("../demo/demo.css");

/// Everything the page loads comes from this server; it talks only to this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the reference application serves for people trying the server: the demo page,
/// and the development token route the page signs in with.
#[derive(Debug, Clone, Default)]
pub struct Demo {
    page: bool,
    tokens: Option<Arc<JwtIssuer>>,
}

impl Demo {
    /// Neither the page nor development tokens: `/` and `/dev/token` answer 404.
    pub fn off() -> Self {
        Self::default()
    }

    /// The page at `/`, signing in with a pasted token unless development tokens are
    /// added.
    pub fn page() -> Self {
        Self {
            page: true,
            tokens: None,
        }
    }

    /// Adds `POST /dev/token` `{"user_id": N}`, minting tokens with `issuer` for
    /// requests from loopback peers only. For development mode only: anyone on this
    /// machine can then act as any user.
    pub fn with_dev_tokens(mut self, issuer: JwtIssuer) -> Self {
        self.tokens = Some(Arc::new(issuer));
        self
    }

    /// Whether the page is served.
    pub fn serves_page(&self) -> bool {
        self.page
    }

    /// Whether `POST /dev/token` mints tokens.
    pub fn mints_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// The routes of this demo, for the root of the reference application.
    pub(crate) fn routes(&self) -> Router<AppState> {
        let mut routes = Router::new();
        if self.page {
            // The page tells its script whether "sign in as user N" can work here.
            let flag = if self.tokens.is_some() { "on" } else { "off" };
            let page = Bytes::from(PAGE.replacen("__DEV_TOKENS__", flag, 1));
            routes = routes
                .route(
                    "/",
                    get(move || {
                        let page = page.clone();
                        async move { asset(page, "text/html; charset=utf-8") }
                    }),
                )
                .route(
                    "/demo/demo.js",
                    get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
                )
                .route(
                    "/demo/demo.css",
                    get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
                );
        }
        if let Some(issuer) = &self.tokens {
            let issuer = Arc::clone(issuer);
            routes = routes.route(
                "/dev/token",
                post(
                    move |headers: HeaderMap,
                          Peer(peer): Peer,
                          ApiJson(request): ApiJson<DevTokenRequest>| async move {
                        dev_token(&issuer, &headers, peer, &request)
                    },
                )
                .layer(DefaultBodyLimit::max(DEV_TOKEN_BODY_BYTES)),
            );
        }
        routes
    }
}

/// The connection's peer address, when the server records it.
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip()),
        ))
    }
}

fn asset(body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body.into(),
    )
        .into_response()
}

/// `POST /dev/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    user_id: i64,
}

/// Mints a token for a loopback peer's request, or answers 404 as if the route did not
/// exist.
fn dev_token(
    issuer: &JwtIssuer,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    request: &DevTokenRequest,
) -> Result<Response, ApiError> {
    if !from_this_machine(headers, peer) {
        return Err(ApiError::RouteNotFound);
    }
    if request.user_id < 1 {
        return Err(chat_core::Error::invalid(
            "user_id",
            ValidationCode::OutOfRange,
            "The user id field must be at least 1.",
        )
        .into());
    }
    let token = issuer
        .mint(UserId::new(request.user_id), DEV_TOKEN_TTL)
        .map_err(|error| chat_core::Error::internal(format!("cannot sign a token: {error}")))?;
    let body = serde_json::json!({
        "token": token,
        "user_id": request.user_id,
        "expires_in": DEV_TOKEN_TTL.as_secs(),
    });
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response())
}

/// Headers a proxy adds for the client it forwards, which would make a remote request
/// arrive from loopback.
const FORWARDING_HEADERS: [HeaderName; 3] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
];

/// Whether the request comes from this machine and, from a browser, from a page of
/// this server: a loopback peer, not forwarded by a proxy, and with no `Origin` or the
/// server's own.
fn from_this_machine(headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    let loopback = peer.is_some_and(|ip| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    });
    if !loopback
        || FORWARDING_HEADERS
            .iter()
            .any(|name| headers.contains_key(name))
    {
        return false;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin.to_str().ok().and_then(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
            });
            matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn only_this_machine_and_its_own_pages() {
        let local = Some("127.0.0.1".parse().unwrap());
        let host = ("host", "127.0.0.1:8080");
        assert!(from_this_machine(&headers(&[host]), local));
        assert!(from_this_machine(
            &headers(&[host]),
            Some("::1".parse().unwrap())
        ));
        assert!(from_this_machine(
            &headers(&[host]),
            Some("::ffff:127.0.0.1".parse().unwrap())
        ));
        assert!(from_this_machine(
            &headers(&[host, ("origin", "http://127.0.0.1:8080")]),
            local
        ));
        assert!(!from_this_machine(&headers(&[host]), None));
        assert!(!from_this_machine(
            &headers(&[host]),
            Some("192.0.2.7".parse().unwrap())
        ));
        assert!(!from_this_machine(
            &headers(&[host, ("x-forwarded-for", "192.0.2.7")]),
            local
        ));
        assert!(!from_this_machine(
            &headers(&[host, ("forwarded", "for=192.0.2.7")]),
            local
        ));
        assert!(!from_this_machine(
            &headers(&[host, ("origin", "http://evil.example")]),
            local
        ));
        assert!(!from_this_machine(
            &headers(&[host, ("origin", "null")]),
            local
        ));
        assert!(!from_this_machine(
            &headers(&[("origin", "http://127.0.0.1:8080")]),
            local
        ));
    }
}
