//! WebSocket delivery for the chat library.
//!
//! A connection first receives its backlog — every undelivered message, or with a
//! resume cursor every message after it — and then live events (new messages,
//! receipts, typing) while the client sends `send`, `ack`, `read`, `typing` and
//! `ping` frames. The protocol is described for client authors in
//! `docs/websocket-protocol.md`.
//!
//! Each connection subscribes to the [`chat_core::Notifier`] for its user, so every
//! device of a user gets its own bounded queue; the send path never waits on a socket,
//! and a connection that falls behind is closed (4008) and resumes from the store.
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
//! use chat_core::{ChatService, Identity, UserId};
//! use chat_transport_ws::{WsConfig, WsEndpoint, WsUpgrade};
//!
//! async fn connect(State(ws): State<WsEndpoint>, upgrade: WsUpgrade) -> Response {
//!     // Authenticate the handshake the host's way; user 1 stands in for it here.
//!     let identity = Identity { user_id: UserId::new(1), expires_at: None };
//!     match ws.accept(upgrade, identity, None) {
//!         Ok(response) => response,
//!         Err(too_many) => (StatusCode::TOO_MANY_REQUESTS, too_many.to_string()).into_response(),
//!     }
//! }
//!
//! let endpoint = WsEndpoint::new(ChatService::in_memory(), WsConfig::default());
//! let app: Router = Router::new().route("/ws", get(connect)).with_state(endpoint);
//! # let _ = app;
//! ```

mod closing;
mod config;
mod hub;
pub mod protocol;
mod session;
mod upgrade;

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;
use chat_core::{ChatService, Identity, MessageId};

pub use closing::WsSocket;
pub use config::{WsConfig, close_code};
pub use hub::{ConnectionHub, Registration};
pub use session::{Session, run};
pub use upgrade::{UpgradedSocket, WsUpgrade, WsUpgradeRejection};

/// The WebSocket side of a chat service: its limits, its connections, the origins it
/// accepts. Cloning is cheap and shares the connections.
#[derive(Clone, Debug)]
pub struct WsEndpoint {
    chat: ChatService,
    config: Arc<WsConfig>,
    hub: ConnectionHub,
    allowed_origins: Option<Arc<[String]>>,
}

/// The user already holds the most connections allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections {
    /// The limit.
    pub limit: usize,
}

impl std::fmt::Display for TooManyConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at most {} connections per user", self.limit)
    }
}

impl std::error::Error for TooManyConnections {}

impl WsEndpoint {
    /// An endpoint for `chat` with `config`, accepting every origin.
    pub fn new(chat: ChatService, config: WsConfig) -> Self {
        Self {
            hub: ConnectionHub::new(config.max_connections_per_user),
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
    /// backlog (everything after `resume_after` when given, else every undelivered
    /// message) and then live events.
    pub fn accept(
        &self,
        upgrade: WsUpgrade,
        identity: Identity,
        resume_after: Option<MessageId>,
    ) -> Result<Response, TooManyConnections> {
        let registration = self
            .hub
            .register(identity.user_id)
            .ok_or(TooManyConnections {
                limit: self.config.max_connections_per_user,
            })?;
        let session = Session {
            chat: self.chat.clone(),
            identity,
            resume_after,
            config: Arc::clone(&self.config),
            shutdown: self.hub.shutdown_signal(),
            _registration: registration,
        };
        Ok(upgrade.on_upgrade(&self.config, move |socket| run(socket, session)))
    }
}
