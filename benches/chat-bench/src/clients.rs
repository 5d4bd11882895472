//! Connections to the server under test: tokens, WebSockets from spread source
//! addresses, and an HTTP client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use chat_core::{JwtIssuer, UserId};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// Source addresses used in turn: 127.0.0.2 up to this.
const SOURCE_ADDRESSES: u8 = 16;

/// A WebSocket to the server.
pub(crate) type Socket = WebSocketStream<TcpStream>;

/// The server under test.
pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) address: SocketAddr,
    issuer: JwtIssuer,
}

impl Target {
    pub(crate) fn new(url: &str, secret: &str) -> Result<Self, String> {
        let (base, address) = Self::loopback(url)?;
        let issuer = JwtIssuer::hs256(secret.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self {
            base,
            address,
            issuer,
        })
    }

    /// Another server of the same deployment (the same secret), at `url`.
    pub(crate) fn at(&self, url: &str) -> Result<Self, String> {
        let (base, address) = Self::loopback(url)?;
        Ok(Self {
            base,
            address,
            issuer: self.issuer.clone(),
        })
    }

    /// The base URL and the loopback address of `url`.
    fn loopback(url: &str) -> Result<(String, SocketAddr), String> {
        let base = url.trim_end_matches('/').to_owned();
        let authority = base
            .strip_prefix("http://")
            .ok_or("only http:// URLs on loopback are supported")?;
        let address = authority
            .to_socket_addrs()
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to nothing"))?;
        if !address.ip().is_loopback() {
            return Err(format!("{address} is not a loopback address"));
        }
        Ok((base, address))
    }

    /// A token for `user`, valid for two hours.
    pub(crate) fn token(&self, user: i64) -> Result<String, String> {
        self.issuer
            .mint(UserId::new(user), Duration::from_secs(7200))
            .map_err(|e| e.to_string())
    }

    /// The source address for the `n`-th connection.
    pub(crate) fn source(n: usize) -> IpAddr {
        let last = 2 + u8::try_from(n % usize::from(SOURCE_ADDRESSES - 1)).unwrap_or(0);
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// Opens the WebSocket of `user` from the `n`-th source address, with a query
    /// string (`?after_id=…`, or empty) on its URL.
    pub(crate) async fn websocket_at(
        &self,
        user: i64,
        token: &str,
        n: usize,
        query: &str,
    ) -> Result<Socket, String> {
        let path = format!("/api/chat/ws{query}");
        self.websocket_path(&path, Some(token), n)
            .await
            .map_err(|e| format!("user {user}: {e}"))
    }

    /// A TCP connection to the server from the `n`-th source address.
    pub(crate) async fn connect_from(&self, n: usize) -> Result<TcpStream, String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(Self::source(n), 0))
            .map_err(|e| format!("bind: {e}"))?;
        let stream = socket
            .connect(self.address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(stream)
    }

    /// Opens a WebSocket on `path` (with `token` as a bearer, if any) from the `n`-th
    /// source address.
    pub(crate) async fn websocket_path(
        &self,
        path: &str,
        token: Option<&str>,
        n: usize,
    ) -> Result<Socket, String> {
        let stream = self.connect_from(n).await?;
        let url = format!("ws://{}{path}", self.address);
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| "token is not a header value".to_owned())?;
            request.headers_mut().insert("authorization", value);
        }
        // Small client buffers: the client holds as many connections as the server.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (socket, _) = client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(socket)
    }

    /// An HTTP client from a source address of its own.
    pub(crate) fn http(n: usize) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .local_address(Self::source(n))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())
    }
}

/// The resident memory of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// The `q`-quantile (0–1) of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
