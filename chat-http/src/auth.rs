//! Bearer authentication of API requests, with failed attempts limited per client
//! address.
//!
//! The credential is checked first and only failures are limited: a valid credential
//! is always served, because behind a NAT or a reverse proxy many users share one
//! address and one of them guessing must not lock the others out. The client address
//! is the connection's peer, or what a trusted proxy forwarded
//! ([`TrustedProxies`](crate::client_address::TrustedProxies)).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chat_core::{Error, Identity, RateDecision, RateLimiter, UserId};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Blocked addresses kept before expired entries are swept.
const SWEEP_AT: usize = 10_000;

/// The authenticated caller of a request.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser(pub Identity);

impl AuthUser {
    /// The caller's user id.
    pub fn id(&self) -> UserId {
        self.0.user_id
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, bearer_token(&parts.headers), parts)
            .await
            .map(Self)
    }
}

/// Checks `token` for the request `parts` belong to. A valid token is accepted whatever
/// its address did before; a bad one counts against the client address, and while that
/// address is blocked it is answered 429 instead of 401.
pub(crate) async fn authenticate(
    state: &AppState,
    token: &str,
    parts: &Parts,
) -> Result<Identity, ApiError> {
    match state.authenticator().authenticate(token).await {
        Ok(identity) => Ok(identity),
        Err(Error::Unauthenticated(reason)) => {
            // A missing token is a client bug, not a guess; only bad ones count.
            if !token.is_empty() {
                // Worked out only on failure: valid requests never pay for it.
                let client = client_address(state, parts);
                state
                    .auth_throttle()
                    .record_failure(&client, state.metrics())
                    .await?;
            }
            Err(Error::Unauthenticated(reason).into())
        }
        Err(other) => Err(other.into()),
    }
}

/// The token of `Authorization: Bearer <token>`, or `""` when there is none.
pub fn bearer_token(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or_default()
}

/// The client address of a request (the key of the failed-login limit): the
/// connection's peer, or the client a trusted proxy forwarded for. `"unknown"` when the
/// server does not record peers (a host serving without connect info), so such
/// requests share one allowance.
pub(crate) fn client_address(state: &AppState, parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |info| {
                state
                    .trusted_proxies()
                    .client_address(info.0.ip(), &parts.headers)
                    .to_string()
            },
        )
}

/// Limits failed authentications per client address: after the allowance is spent,
/// every further bad credential from the address gets 429 until the wait is over, so
/// guessing stays slow. Valid credentials are checked before this and never refused
/// by it.
pub(crate) struct AuthThrottle {
    limiter: Option<Arc<dyn RateLimiter>>,
    /// Blocked addresses: until when, and the limit that blocked them.
    blocked: Mutex<HashMap<String, (Instant, u32)>>,
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthThrottle {
    /// Throttles with `limiter` (`None`: never).
    pub(crate) fn new(limiter: Option<Arc<dyn RateLimiter>>) -> Self {
        Self {
            limiter,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn refuse_if_blocked(&self, client: &str) -> Result<(), ApiError> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match blocked.get(client) {
            Some(&(until, limit)) if until > now => Err(Error::RateLimited {
                retry_after: until - now,
                limit,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `client`: 429 once its allowance is spent,
    /// and for every failure until the wait is over.
    async fn record_failure(&self, client: &str, metrics: &Metrics) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // While blocked, failures are refused without spending more of the allowance,
        // so the wait does not grow with each attempt.
        self.refuse_if_blocked(client)?;
        let key = format!("auth-failure:{client}");
        if let RateDecision::Denied { limit, retry_after } =
            limiter.check(&key, NonZeroU32::MIN).await?
        {
            metrics.rate_limited("auth_failure");
            let now = Instant::now();
            let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
            if blocked.len() >= SWEEP_AT {
                blocked.retain(|_, (until, _)| *until > now);
            }
            blocked.insert(client.to_owned(), (now + retry_after, limit));
            return Err(Error::RateLimited { retry_after, limit }.into());
        }
        Ok(())
    }
}
