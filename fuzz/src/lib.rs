//! The harness shared by the fuzz targets: the reference server on an in-memory store
//! with a short seeded conversation, driven in process through its router (REST) or
//! over a loopback socket (WebSocket), and the properties every answer must have.
//!
//! A property that does not hold panics, which libFuzzer reports as a crash with the
//! input that caused it.

pub mod rest;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use chat_core::{ChatService, JwtAuthenticator, JwtIssuer, SendMessage, UserId};
use chat_server::AppState;
use chat_transport_ws::WsConfig;
use tokio::runtime::Runtime;

/// The HS256 secret of the harness's tokens.
const SECRET: &[u8] = b"a fuzzing secret of thirty-two bytes or more";

/// The caller of every request.
pub const ALICE: i64 = 1;
/// Alice's counterpart in the seeded conversation.
pub const BOB: i64 = 2;

/// Messages in the seeded conversation, alternating between Bob and Alice, each with
/// the key `seed:<n>` so replays and conflicts are within the fuzzer's reach.
const SEEDED_MESSAGES: i64 = 12;

/// A token for `user`, valid for a year.
pub fn token(user: i64) -> String {
    JwtIssuer::hs256(SECRET)
        .expect("the harness secret is long enough")
        .mint(UserId::new(user), Duration::from_secs(365 * 24 * 3600))
        .expect("a token")
}

/// The server's state over an in-memory store holding a short conversation between
/// Alice and Bob, so history pages, cursors, replays and read marks have something to
/// work on. WebSocket connections use `ws`.
pub fn seeded_state(runtime: &Runtime, ws: WsConfig) -> AppState {
    let chat = ChatService::in_memory();
    runtime.block_on(async {
        for n in 1..=SEEDED_MESSAGES {
            let (from, to) = if n % 2 == 0 {
                (ALICE, BOB)
            } else {
                (BOB, ALICE)
            };
            let input = SendMessage {
                receiver_id: UserId::new(to),
                message: format!("seed message {n}"),
                client_message_id: Some(format!("seed:{n}")),
            };
            chat.send(UserId::new(from), input)
                .await
                .expect("the seeded conversation is stored");
        }
    });
    let auth = JwtAuthenticator::hs256(SECRET).expect("the harness secret is long enough");
    AppState::builder(chat, Arc::new(auth))
        .websocket(ws)
        .build()
}

/// `bytes` as text for a failure message: lossy UTF-8, with the raw bytes when they
/// are not UTF-8.
pub fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("{:?} (bytes {bytes:?})", String::from_utf8_lossy(bytes)),
    }
}
