//! The WebSocket endpoint over a loopback socket: the reference server's
//! `chat_server::app` runs under `axum::serve` on a thread of its own, as
//! `chat_server::serve` runs it, and one client connection of Alice's
//! sends each input as a text frame, so the bytes take the session's whole inbound
//! path — the WebSocket layer's UTF-8 check, the frame decoder, the checks before the
//! service is called, and the answer.

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use axum::serve::ListenerExt;
use chat_transport_ws::WsConfig;
use serde_json::Value;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Message, WebSocket};

use crate::{ALICE, seeded_state, shown, token};

/// Longer than any answer of an in-memory store may take; past it the server hangs.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The error codes a frame from a client may earn. `internal` and `unavailable` are
/// the server's faults; `rate_limited` cannot happen without a send limit.
const CLIENT_ERROR_CODES: &[&str] = &[
    "invalid_frame",
    "unsupported_frame",
    "validation_failed",
    "not_found",
    "forbidden",
    "conflict",
];

/// Alice's connection to the server, reopened after the server closes it.
pub struct WsClient {
    port: u16,
    token: String,
    socket: Option<WebSocket<TcpStream>>,
    sync: u64,
}

/// The process's client (and server, started with it).
pub fn client() -> &'static Mutex<WsClient> {
    static CLIENT: std::sync::OnceLock<Mutex<WsClient>> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        Mutex::new(WsClient {
            port: start_server(),
            token: token(ALICE),
            socket: None,
            sync: 0,
        })
    })
}

/// Starts the server on a free loopback port and returns the port.
fn start_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    std::thread::Builder::new()
        .name("chat-server".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            // Limits that the fuzzer's pace would trip are lifted: they are not what
            // this target is about, and tripping them closes the connection.
            let config = WsConfig::default()
                .with_inbound_rate(u32::MAX, u32::MAX)
                .with_heartbeat(Duration::from_secs(3600), Duration::from_secs(7200))
                .with_max_connections_per_user(1024);
            let state = seeded_state(&runtime, config);
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                // `chat_server::serve`, with Nagle's algorithm off: the answer to a
                // frame and the pong behind it are two small writes, and the second
                // would wait for the delayed acknowledgement of the first (40 ms).
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let app = chat_server::app(state)
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, app).await.expect("the server runs");
            });
        })
        .expect("a server thread");
    port
}

impl WsClient {
    /// Opens a connection. libFuzzer's timer signal may interrupt the handshake, which
    /// then starts over on a new connection; any other failure is the server's.
    fn connect(&self) -> WebSocket<TcpStream> {
        let url = format!(
            "ws://127.0.0.1:{}/api/chat/ws?token={}",
            self.port, self.token
        );
        let mut attempts = 0;
        loop {
            attempts += 1;
            let stream = match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(stream) => stream,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted && attempts < 10 => {
                    continue;
                }
                Err(error) => panic!("the server does not accept: {error}"),
            };
            stream.set_nodelay(true).expect("TCP_NODELAY");
            stream
                .set_read_timeout(Some(ANSWER_TIMEOUT))
                .expect("a read timeout");
            match tungstenite::client(url.as_str(), stream) {
                Ok((socket, _)) => return socket,
                Err(tungstenite::HandshakeError::Failure(error))
                    if interrupted(&error) && attempts < 10 => {}
                Err(error) => panic!("the WebSocket handshake failed: {error}"),
            }
        }
    }

    /// Sends `payload` as one text frame and reads every answer up to the pong of a
    /// ping sent right behind it. Panics unless: a payload that is not UTF-8 closes
    /// the connection with 1007; any other keeps it open, and every frame answered is
    /// JSON with a `type`, an `error` only with a client error code.
    pub fn exchange(&mut self, payload: &[u8]) {
        let utf8 = std::str::from_utf8(payload).is_ok();
        self.sync += 1;
        let sync = self.sync.to_be_bytes();
        if self.socket.is_none() {
            self.socket = Some(self.connect());
        }
        let Some(socket) = self.socket.as_mut() else {
            unreachable!("connected above")
        };
        let frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
        socket
            .write(Message::Frame(frame))
            .expect("the frame is written");
        if utf8 {
            // Pings are answered by the WebSocket layer when the session reads the
            // next frame, so its pong comes after every answer to the payload.
            socket
                .write(Message::Ping(sync.to_vec().into()))
                .expect("the ping is written");
        }
        loop {
            match socket.flush() {
                Ok(()) => break,
                Err(error) if interrupted(&error) => {}
                Err(error) => panic!("cannot send {}: {error}", shown(payload)),
            }
        }
        loop {
            match socket.read() {
                Ok(Message::Text(reply)) => check_reply(reply.as_str(), payload),
                Ok(Message::Pong(echo)) if utf8 && echo.as_ref() == sync => return,
                Ok(Message::Pong(_) | Message::Ping(_)) => {}
                Ok(Message::Close(close)) => {
                    let code = close.as_ref().map(|c| c.code);
                    assert!(
                        !utf8 && code == Some(CloseCode::Invalid),
                        "the server closed the connection ({}) after {}",
                        describe(close.as_ref()),
                        shown(payload)
                    );
                    // Sends the close reply queued by the read; the connection is
                    // done either way.
                    let _ = socket.flush();
                    self.socket = None;
                    return;
                }
                Ok(other) => panic!("unexpected {other:?} after {}", shown(payload)),
                // libFuzzer's timer signal interrupts blocking reads.
                Err(error) if interrupted(&error) => {}
                Err(error) => panic!("no answer to {}: {error}", shown(payload)),
            }
        }
    }
}

fn interrupted(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::Interrupted)
}

fn describe(close: Option<&CloseFrame>) -> String {
    close.map_or_else(
        || "no close frame".to_owned(),
        |c| format!("{} {:?}", u16::from(c.code), c.reason.as_str()),
    )
}

/// Every frame the server sends is a JSON object with a `type`; an `error` carries a
/// client error code and a message.
fn check_reply(reply: &str, payload: &[u8]) {
    let json: Value = serde_json::from_str(reply).unwrap_or_else(|error| {
        panic!(
            "answer {reply:?} is not JSON ({error}) to {}",
            shown(payload)
        )
    });
    let kind = json["type"].as_str().unwrap_or_default();
    assert!(
        !kind.is_empty(),
        "answer {reply} without a type to {}",
        shown(payload)
    );
    if kind == "error" {
        let code = json["data"]["code"].as_str().unwrap_or_default();
        let message = json["data"]["message"].as_str().unwrap_or_default();
        assert!(
            CLIENT_ERROR_CODES.contains(&code) && !message.is_empty(),
            "error answer {reply} to {}",
            shown(payload)
        );
    }
}
