//! WebSocket delivery for the chat library.
//!
//! A connection first receives its backlog — every undelivered message, or with a
//! resume cursor every message after it — and then live events (new messages,
//! receipts, typing) while the client sends `send`, `ack`, `read`, `typing` and
//! `ping` frames. The protocol is described for client authors in
//! `docs/websocket-protocol.md`.
//!
//! Each connection follows its user's [`chat_core::Feed`], so every device of a user
//! gets its own bounded queue of events; the send path never waits on a socket, and a
//! connection that falls behind is closed (4008) and resumes from the store.
//!
//! [`WsEndpoint`] holds what the transport needs; the server (or a host) authenticates
//! the upgrade request, checks [`WsEndpoint::origin_allowed`], and calls
//! [`WsEndpoint::accept`]:
//!
//! ```
//! use axum::extract::State;
//! use axum::http::StatusCode;
//! use axum::response::{IntoResponse, Response};
//! use axum::{Router, routing::get};
//! use chat_core::{ChatService, FeedStart, Identity, UserId};
//! use chat_transport_ws::{AcceptError, WsConfig, WsEndpoint, WsUpgrade};
//!
//! async fn connect(State(ws): State<WsEndpoint>, upgrade: WsUpgrade) -> Response {
//!     // Authenticate the handshake the host's way; user 1 stands in for it here.
//!     let identity = Identity { user_id: UserId::new(1), expires_at: None };
//!     match ws.accept(upgrade, identity, FeedStart::Undelivered).await {
//!         Ok(response) => response,
//!         Err(error @ AcceptError::TooManyConnections { .. }) => {
//!             (StatusCode::TOO_MANY_REQUESTS, error.to_string()).into_response()
//!         }
//!         Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
//!     }
//! }
//!
//! let endpoint = WsEndpoint::new(ChatService::in_memory(), WsConfig::default());
//! let app: Router = Router::new().route("/ws", get(connect)).with_state(endpoint);
//! # let _ = app;
//! ```

mod closing;
mod config;
mod delivery;
mod hub;
mod inbound_limit;
mod pair_socket;
pub mod protocol;
mod requests;
mod seat;
mod session;
mod upgrade;
mod watch;

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;
use chat_core::{Admission, ChatService, FeedStart, Identity};

pub use closing::{Closing, WsSocket, close};
pub use config::{WsConfig, close_code};
pub use hub::{ConnectionHub, Registration};
pub use inbound_limit::InboundLimit;
pub use pair_socket::PairSocket;
pub use seat::HeldSeat;
pub use session::Session;
pub use upgrade::{UpgradedSocket, WsUpgrade, WsUpgradeRejection};

/// The WebSocket side of a chat service: its limits, its connections, the origins it
/// accepts. Cloning is cheap and shares the connections.
#[derive(Clone, Debug)]
pub struct WsEndpoint {
    chat: ChatService,
    config: Arc<WsConfig>,
    hub: ConnectionHub,
    relay: watch::PresenceRelay,
    allowed_origins: Option<Arc<[String]>>,
}

/// Why a connection was not accepted.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptError {
    /// The user already holds the most connections allowed.
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// The connection's feed could not be opened: an invalid resume cursor
    /// (`Error::Validation`), or the store or notifier is unavailable.
    Chat(chat_core::Error),
}

impl std::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManyConnections { limit } => {
                write!(f, "at most {limit} connections per user")
            }
            Self::Chat(error) => write!(f, "cannot open the connection's feed: {error}"),
        }
    }
}

impl std::error::Error for AcceptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TooManyConnections { .. } => None,
            Self::Chat(error) => Some(error),
        }
    }
}

impl WsEndpoint {
    /// An endpoint for `chat` with `config`, accepting every origin.
    pub fn new(chat: ChatService, config: WsConfig) -> Self {
        Self {
            hub: ConnectionHub::new(config.max_connections_per_user),
            relay: watch::PresenceRelay::new(chat.clone()),
            chat,
            config: Arc::new(config),
            allowed_origins: None,
        }
    }

    /// Accepts browser connections only from these origins (`https://app.example`);
    /// requests without an `Origin` header (non-browser clients) stay allowed. An
    /// empty list keeps every origin allowed.
    pub fn with_allowed_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        let origins: Vec<String> = origins
            .into_iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        self.allowed_origins = (!origins.is_empty()).then(|| origins.into());
        self
    }

    /// The limits.
    pub fn config(&self) -> &WsConfig {
        &self.config
    }

    /// The live connections.
    pub fn hub(&self) -> &ConnectionHub {
        &self.hub
    }

    /// Whether a request with this `Origin` header may connect.
    pub fn origin_allowed(&self, origin: Option<&HeaderValue>) -> bool {
        let (Some(allowed), Some(origin)) = (&self.allowed_origins, origin) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        allowed.iter().any(|a| a == "*" || *a == origin)
    }

    /// Upgrades an authenticated request for `identity`: the connection receives its
    /// backlog (every undelivered message, or everything after a resume cursor) and
    /// then live events.
    ///
    /// The connection's feed is opened before the handshake is answered, so a message
    /// committed once the client sees the answer reaches it.
    pub async fn accept(
        &self,
        upgrade: WsUpgrade,
        identity: Identity,
        start: FeedStart,
    ) -> Result<Response, AcceptError> {
        let session = self.session(identity, start).await?;
        Ok(upgrade.on_upgrade(&self.config, move |socket| session.run(socket)))
    }

    /// A connection of `identity` without a handshake: its place among the user's
    /// connections is taken and its feed opened; [`Session::run`] then speaks the
    /// protocol over any [`WsSocket`], a [`PairSocket`] of channels for instance.
    pub async fn session(
        &self,
        identity: Identity,
        start: FeedStart,
    ) -> Result<Session, AcceptError> {
        let registration =
            self.hub
                .register(identity.user_id)
                .ok_or(AcceptError::TooManyConnections {
                    limit: self.config.max_connections_per_user,
                })?;
        let limit = self.config.max_connections_per_user;
        // The same limit across every node sharing the service's presence.
        let seat = match self.chat.admit(identity.user_id, limit).await {
            Admission::Seated(seat) => Some(HeldSeat {
                chat: self.chat.clone(),
                seat,
            }),
            Admission::Full => return Err(AcceptError::TooManyConnections { limit }),
            _ => None,
        };
        let feed = self
            .chat
            .open_feed(identity.user_id, start, self.config.backlog_batch)
            .await
            .map_err(AcceptError::Chat)?;
        Ok(Session {
            identity,
            feed,
            config: Arc::clone(&self.config),
            shutdown: self.hub.shutdown_signal(),
            relay: self.relay.clone(),
            _registration: registration,
            _seat: seat,
        })
    }
}
