//! The Pusher side of a chat service: its app, limits, channels and connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::Response;
use chat_core::{Broadcast, ChatService, InProcessBroadcast, UserId};
use chat_transport_ws::{ConnectionHub, WsSocket, WsUpgrade};

use crate::cluster::{Cluster, Envelope};
use crate::config::PusherConfig;
use crate::hub::ChannelHub;
use crate::protocol::{PROTOCOL_VERSION, code};
use crate::session::{refuse, run};
use crate::{
    AuthRefusal, ChannelAuth, ChannelAuthorizer, ChannelName, PusherApp, SocketId,
    authorize_subscription,
};

/// Oldest protocol version accepted: pusher-js 4 and later speak 7; 5 and 6 differ
/// from it in nothing this server uses.
const OLDEST_PROTOCOL: u32 = 5;

/// Everything the Pusher transport needs. Cloning is cheap and shares the channels
/// and connections.
#[derive(Clone)]
pub struct PusherEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    app: PusherApp,
    chat: ChatService,
    config: PusherConfig,
    channels: ChannelHub,
    connections: ConnectionHub,
    authorizer: Option<Arc<dyn ChannelAuthorizer>>,
    broadcast: Arc<dyn Broadcast>,
    cluster: tokio::sync::OnceCell<Cluster>,
    open: AtomicUsize,
}

/// Payloads a node's own broadcast holds for it before it counts as behind, when the
/// endpoint serves one node alone.
const LOCAL_BROADCAST_CAPACITY: usize = 65_536;

impl std::fmt::Debug for PusherEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherEndpoint")
            .field("app", &self.inner.app)
            .field("config", &self.inner.config)
            .field("connections", &self.connections_open())
            .finish_non_exhaustive()
    }
}

/// Counts a connection while it lives.
pub(crate) struct OpenConnection(Arc<Inner>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PusherEndpoint {
    /// The Pusher side of `chat` for `app`. `connections` is shared with the native
    /// WebSocket endpoint, so a user's connections count against one limit whichever
    /// protocol they speak, and one shutdown closes them all.
    pub fn new(
        app: PusherApp,
        chat: ChatService,
        config: PusherConfig,
        connections: ConnectionHub,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                app,
                chat,
                config,
                channels: ChannelHub::new(),
                connections,
                authorizer: None,
                broadcast: Arc::new(InProcessBroadcast::new(LOCAL_BROADCAST_CAPACITY)),
                cluster: tokio::sync::OnceCell::new(),
                open: AtomicUsize::new(0),
            }),
        }
    }

    /// Authorizes the host's own private and presence channels with `authorizer` (the
    /// chat's channels keep the chat's rules).
    pub fn with_authorizer(mut self, authorizer: Arc<dyn ChannelAuthorizer>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.authorizer = Some(authorizer);
        } else {
            tracing::error!("the channel authorizer must be set before the endpoint is shared");
        }
        self
    }

    /// Shares channel events, presence members and terminations with the other nodes
    /// on `broadcast` (a [`RedisBroadcast`](https://docs.rs/chat-bus-redis), say);
    /// without it the endpoint serves one node. Set before the endpoint is shared.
    pub fn with_broadcast(mut self, broadcast: Arc<dyn Broadcast>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.broadcast = broadcast;
        } else {
            tracing::error!("the broadcast must be set before the endpoint is shared");
        }
        self
    }

    /// This node's side of the cluster, joined on first use.
    pub(crate) async fn cluster(&self) -> &Cluster {
        self.inner
            .cluster
            .get_or_init(|| {
                Cluster::start(
                    Arc::clone(&self.inner.broadcast),
                    self.inner.channels.clone(),
                )
            })
            .await
    }

    /// Publishes `event` with `data` (a string, forwarded verbatim) on `channel`, to
    /// every subscriber on every node but the connection `except` names: what
    /// `POST /apps/{id}/events` does.
    pub async fn publish(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&SocketId>,
    ) {
        let frame = crate::protocol::frame(event, Some(channel.as_str()), data);
        let cluster = self.cluster().await;
        cluster.publish(Envelope::Event {
            node: cluster.node(),
            channel: channel.clone(),
            frame,
            except: except.cloned(),
        });
    }

    /// Closes every connection of `user` on every node with `code`.
    pub async fn terminate(&self, user: &str, code: u16) {
        let cluster = self.cluster().await;
        cluster.publish(Envelope::Terminate {
            node: cluster.node(),
            user_id: user.to_owned(),
            code,
        });
    }

    /// The app's credentials.
    pub fn app(&self) -> &PusherApp {
        &self.inner.app
    }

    /// The limits.
    pub fn config(&self) -> &PusherConfig {
        &self.inner.config
    }

    /// The channels of this node.
    pub fn channels(&self) -> &ChannelHub {
        &self.inner.channels
    }

    pub(crate) fn chat(&self) -> &ChatService {
        &self.inner.chat
    }

    pub(crate) fn connections(&self) -> &ConnectionHub {
        &self.inner.connections
    }

    /// Pusher connections open on this node.
    pub fn connections_open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    pub(crate) fn count_connection(&self) -> OpenConnection {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(&self.inner))
    }

    /// The answer of `POST /broadcasting/auth` for an authenticated `user`.
    pub fn authorize(
        &self,
        user: UserId,
        socket_id: &SocketId,
        channel: &ChannelName,
    ) -> Result<ChannelAuth, AuthRefusal> {
        authorize_subscription(
            &self.inner.app,
            user,
            socket_id,
            channel,
            self.inner.authorizer.as_deref(),
        )
    }

    /// Upgrades `GET /app/{key}?protocol=7`: a connection with the wrong key or
    /// protocol is told why (`pusher:error`, then the close with the same code, so
    /// pusher-js does not retry) and closed.
    pub fn accept(&self, upgrade: WsUpgrade, key: &str, protocol: Option<&str>) -> Response {
        let endpoint = self.clone();
        let refusal = refusal(&self.inner.app, key, protocol);
        let write_timeout = self.inner.config.websocket.write_timeout;
        upgrade.on_upgrade(&self.inner.config.websocket, move |socket| async move {
            match refusal {
                Some((code, message)) => refuse(socket, code, message, write_timeout).await,
                None => run(endpoint, socket).await,
            }
        })
    }

    /// Speaks protocol 7 over `socket` (a handshake already answered, or a
    /// [`PairSocket`](chat_transport_ws::PairSocket) in tests) until it closes.
    pub async fn serve<S: WsSocket>(&self, socket: S) {
        run(self.clone(), socket).await;
    }
}

fn refusal(app: &PusherApp, key: &str, protocol: Option<&str>) -> Option<(u16, &'static str)> {
    if key != app.key() {
        return Some((code::APP_DOES_NOT_EXIST, "unknown app key"));
    }
    match protocol.map(str::parse::<u32>) {
        None => Some((code::NO_PROTOCOL_VERSION, "no protocol version given")),
        Some(Ok(version)) if (OLDEST_PROTOCOL..=PROTOCOL_VERSION).contains(&version) => None,
        Some(_) => Some((code::UNSUPPORTED_PROTOCOL, "unsupported protocol version")),
    }
}
