//! The state every handler shares.

use std::sync::Arc;

use chat_core::{Authenticator, Broadcast, ChatService, RateLimiter};
use chat_transport_pusher::{ChannelAuthorizer, PusherApp, PusherConfig, PusherEndpoint};
use chat_transport_ws::{WsConfig, WsEndpoint};

use crate::auth::AuthThrottle;
use crate::client_address::TrustedProxies;
use crate::metrics::Metrics;

/// Default largest request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers need: the chat service, the authenticator, limits and metrics.
/// Cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    chat: ChatService,
    authenticator: Arc<dyn Authenticator>,
    auth_throttle: AuthThrottle,
    trusted_proxies: TrustedProxies,
    metrics: Metrics,
    max_body_bytes: usize,
    websocket: WsEndpoint,
    pusher: Option<PusherEndpoint>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("chat", &self.inner.chat)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AppState`].
pub struct AppStateBuilder {
    chat: ChatService,
    authenticator: Arc<dyn Authenticator>,
    auth_failure_limiter: Option<Arc<dyn RateLimiter>>,
    trusted_proxies: TrustedProxies,
    metrics: Option<Metrics>,
    max_body_bytes: usize,
    websocket: WsConfig,
    allowed_origins: Vec<String>,
    pusher: Option<(PusherApp, PusherConfig)>,
    channel_authorizer: Option<Arc<dyn ChannelAuthorizer>>,
    pusher_broadcast: Option<Arc<dyn Broadcast>>,
}

impl AppStateBuilder {
    /// Serves WebSockets with these limits (default: `WsConfig::default()`).
    pub fn websocket(mut self, config: WsConfig) -> Self {
        self.websocket = config;
        self
    }

    /// Accepts browser WebSockets only from these origins (default: every origin).
    /// See [`WsEndpoint::with_allowed_origins`].
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        self.allowed_origins = origins.into_iter().collect();
        self
    }

    /// Limits failed authentications per client address with `limiter`.
    pub fn auth_failure_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.auth_failure_limiter = Some(limiter);
        self
    }

    /// Takes the client address from the forwarding headers of these proxies (default:
    /// none, so the client address is the connection's peer). See
    /// [`TrustedProxies::client_address`].
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Records into `metrics` (share it with a `MeasuredRepository`).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the largest accepted request body.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Speaks the Pusher protocol too, for `app` with `config` (see
    /// [`pusher_router`](crate::pusher_router)). Its WebSocket limits are `config`'s; its
    /// connections share the native endpoint's per-user limit, origins and shutdown.
    pub fn pusher(mut self, app: PusherApp, config: PusherConfig) -> Self {
        self.pusher = Some((app, config));
        self
    }

    /// Authorizes the host's own private and presence Pusher channels.
    pub fn channel_authorizer(mut self, authorizer: Arc<dyn ChannelAuthorizer>) -> Self {
        self.channel_authorizer = Some(authorizer);
        self
    }

    /// Shares the Pusher channels with the other nodes on `broadcast` (see
    /// [`PusherEndpoint::with_broadcast`]).
    pub fn pusher_broadcast(mut self, broadcast: Arc<dyn Broadcast>) -> Self {
        self.pusher_broadcast = Some(broadcast);
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        // The endpoint serves the same service as the handlers: one owner per setting.
        let websocket = WsEndpoint::new(self.chat.clone(), self.websocket)
            .with_allowed_origins(self.allowed_origins);
        let (authorizer, broadcast) = (self.channel_authorizer, self.pusher_broadcast);
        let pusher = self.pusher.map(|(app, config)| {
            let mut endpoint =
                PusherEndpoint::new(app, self.chat.clone(), config, websocket.hub().clone());
            if let Some(authorizer) = authorizer {
                endpoint = endpoint.with_authorizer(authorizer);
            }
            if let Some(broadcast) = broadcast {
                endpoint = endpoint.with_broadcast(broadcast);
            }
            endpoint
        });
        AppState {
            inner: Arc::new(Inner {
                websocket,
                pusher,
                chat: self.chat,
                authenticator: self.authenticator,
                auth_throttle: AuthThrottle::new(self.auth_failure_limiter),
                trusted_proxies: self.trusted_proxies,
                metrics: self.metrics.unwrap_or_default(),
                max_body_bytes: self.max_body_bytes,
            }),
        }
    }
}

impl AppState {
    /// Starts a state over `chat`, authenticating with `authenticator`.
    pub fn builder(chat: ChatService, authenticator: Arc<dyn Authenticator>) -> AppStateBuilder {
        AppStateBuilder {
            chat,
            authenticator,
            auth_failure_limiter: None,
            trusted_proxies: TrustedProxies::default(),
            metrics: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            websocket: WsConfig::default(),
            allowed_origins: Vec::new(),
            pusher: None,
            channel_authorizer: None,
            pusher_broadcast: None,
        }
    }

    /// The Pusher endpoint, when the state speaks Pusher.
    pub fn pusher(&self) -> Option<&PusherEndpoint> {
        self.inner.pusher.as_ref()
    }

    /// The chat service.
    pub fn chat(&self) -> &ChatService {
        &self.inner.chat
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &dyn Authenticator {
        self.inner.authenticator.as_ref()
    }

    pub(crate) fn auth_throttle(&self) -> &AuthThrottle {
        &self.inner.auth_throttle
    }

    /// The proxies whose forwarding headers name the client address.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The WebSocket endpoint.
    pub fn websocket(&self) -> &WsEndpoint {
        &self.inner.websocket
    }

    /// The largest accepted request body, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
}
