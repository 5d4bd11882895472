//! The demo page at `/` (plain HTML, CSS and JS compiled into the binary, on the REST
//! API and the native WebSocket protocol), and in development mode `POST /dev/token`,
//! which mints a token for a chosen user so the page can sign in as "user N".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
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

    /// The routes of this demo, for the root of the reference application on `state`.
    pub(crate) fn routes(&self, state: &AppState) -> Router<AppState> {
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
            // The guard wraps the whole route (every method, before the body is read):
            // to anyone else the route does not exist.
            routes = routes.route(
                "/dev/token",
                // Every method here, so that the guard answers before a 405 would.
                any(move |request: Request| async move {
                    if request.method() != Method::POST {
                        return Err(ApiError::MethodNotAllowed);
                    }
                    let ApiJson(body) =
                        ApiJson::<DevTokenRequest>::from_request(request, &()).await?;
                    dev_token(&issuer, &body)
                })
                .layer(DefaultBodyLimit::max(DEV_TOKEN_BODY_BYTES))
                .layer(from_fn_with_state(state.clone(), only_this_machine)),
            );
        }
        routes
    }
}

/// Lets through requests from this machine only (see [`from_this_machine`]), and none
/// where the server is told it runs behind proxies; 404 for the rest.
async fn only_this_machine(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if state.trusted_proxies().is_empty() && from_this_machine(request.headers(), peer) {
        next.run(request).await
    } else {
        ApiError::RouteNotFound.into_response()
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

/// Mints a token for the user asked.
fn dev_token(issuer: &JwtIssuer, request: &DevTokenRequest) -> Result<Response, ApiError> {
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

/// Headers proxies and tunnels add for the client they forward, which would make a
/// remote request arrive from loopback.
const FORWARDING_HEADERS: [&str; 9] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "via",
];

/// Whether the request comes from this machine and, from a browser, from a page of
/// this server:
/// - a loopback peer, with none of the headers proxies add;
/// - a `Host` that names this machine (`localhost`, `*.localhost`, `127.x.x.x`,
///   `[::1]`), so a page of another site whose name was pointed at 127.0.0.1 (DNS
///   rebinding) is refused;
/// - no `Origin`, or the `Host`'s own, and no `Sec-Fetch-Site` other than
///   `same-origin` or `none`.
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
            .any(|name| headers.contains_key(*name))
    {
        return false;
    }
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|host| names_this_machine(host))
    else {
        return false;
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .to_str()
            .ok()
            .and_then(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
            })
            .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host)),
    }
}

/// Whether a `Host` value (a name or address, and maybe a port) names this machine.
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]` or `[::1]:8080`.
        Some(rest) => match rest.split_once(']') {
            Some((address, port)) if port.is_empty() || port.starts_with(':') => address,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderName;

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
        // DNS rebinding: another site's name, pointed at this machine.
        let rebound = [
            ("host", "evil.example:8080"),
            ("origin", "http://evil.example:8080"),
        ];
        assert!(!from_this_machine(&headers(&rebound), local));
        assert!(!from_this_machine(
            &headers(&[("host", "evil.example:8080")]),
            local
        ));
        assert!(!from_this_machine(&headers(&[]), local));
        assert!(!from_this_machine(
            &headers(&[host, ("sec-fetch-site", "cross-site")]),
            local
        ));
        assert!(from_this_machine(
            &headers(&[host, ("sec-fetch-site", "same-origin")]),
            local
        ));
        for proxy in [
            "via",
            "x-forwarded-host",
            "cf-connecting-ip",
            "true-client-ip",
        ] {
            assert!(
                !from_this_machine(&headers(&[host, (proxy, "1.1 proxy")]), local),
                "{proxy}"
            );
        }
    }

    #[test]
    fn hosts_of_this_machine() {
        for name in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "chat.localhost:8080",
            "127.0.0.1",
            "127.8.9.10:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(names_this_machine(name), "{name}");
        }
        for name in [
            "",
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]:8080",
            "[::1",
            "[::1]x",
            "0.0.0.0:8080",
        ] {
            assert!(!names_this_machine(name), "{name}");
        }
    }
}
