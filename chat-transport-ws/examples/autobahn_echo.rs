//! A test-only echo server for the Autobahn protocol cases: every path upgrades with
//! the transport's own configuration (larger message limit, as the suite sends
//! megabyte messages) and echoes every text and binary message.
//!
//! Run with: `cargo run --release -p chat-transport-ws --example autobahn_echo -- 127.0.0.1:9001`

use axum::Router;
use axum::response::{IntoResponse, Response};
use chat_transport_ws::{UpgradedSocket, WsConfig, WsUpgrade, WsUpgradeRejection};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const MAX_MESSAGE: usize = 64 * 1024 * 1024;

async fn upgrade(ws: Result<WsUpgrade, WsUpgradeRejection>) -> Response {
    let mut config = WsConfig::default().with_max_message_bytes(MAX_MESSAGE);
    // An echo writes back what it reads: room for the largest message.
    config.max_write_buffer_bytes = 2 * MAX_MESSAGE;
    match ws {
        Ok(ws) => ws.on_upgrade(&config, echo),
        Err(rejection) => rejection.into_response(),
    }
}

async fn echo(mut socket: UpgradedSocket) {
    // Reading on after a close frame lets the WebSocket layer send its reply and
    // finish the closing handshake; the stream then ends.
    while let Some(Ok(message)) = socket.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                continue;
            }
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let app = Router::new().fallback(upgrade);
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("echo listening on ws://{address}");
    axum::serve(listener, app).await
}
