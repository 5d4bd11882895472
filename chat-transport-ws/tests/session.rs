//! The session driven over channels, without a network, on a paused clock: the
//! heartbeat, the idle timeout, token expiry, and the frames of a conversation.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::testing::Faults;
use chat_core::{
    ChatService, FeedStart, Identity, InMemoryRepository, InProcessNotifier, Layered, SendMessage,
    StoreOperation, UserId,
};
use chat_transport_ws::{AcceptError, PairSocket, WsConfig, WsEndpoint, close_code};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tungstenite::{Error as WsError, Message};

/// The client's side of a session running over channels.
struct Client {
    to_server: mpsc::Sender<Result<Message, WsError>>,
    from_server: mpsc::Receiver<Message>,
    session: JoinHandle<()>,
}

impl Client {
    async fn send(&mut self, frame: Value) {
        self.to_server
            .send(Ok(Message::text(frame.to_string())))
            .await
            .unwrap();
    }

    /// The next frame the server wrote.
    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(3600), self.from_server.next())
            .await
            .expect("the server wrote nothing")
            .expect("the session ended without a close frame")
    }

    /// The next text frame, parsed, skipping pings.
    async fn next_json(&mut self) -> Value {
        loop {
            match self.next().await {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads until the close frame; its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            if let Message::Close(frame) = self.next().await {
                return frame.map(|f| u16::from(f.code)).unwrap();
            }
        }
    }
}

fn config() -> WsConfig {
    let mut config = WsConfig::default();
    config.heartbeat_interval = Duration::from_secs(30);
    config.idle_timeout = Duration::from_secs(75);
    config
}

async fn connect(endpoint: &WsEndpoint, identity: Identity) -> Client {
    let session = endpoint
        .session(identity, FeedStart::Undelivered)
        .await
        .unwrap();
    let (to_client, from_server) = mpsc::channel(64);
    let (to_server, from_client) = mpsc::channel(64);
    let session = tokio::spawn(session.run(PairSocket::new(to_client, from_client)));
    Client {
        to_server,
        from_server,
        session,
    }
}

fn user(id: i64) -> Identity {
    Identity {
        user_id: UserId::new(id),
        expires_at: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_client_is_pinged_and_closed_once_the_idle_timeout_passes() {
    let endpoint = WsEndpoint::new(ChatService::in_memory(), config());
    let mut client = connect(&endpoint, user(1)).await;
    let start = tokio::time::Instant::now();
    assert!(matches!(client.next().await, Message::Ping(_)));
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert!(matches!(client.next().await, Message::Ping(_)));
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    // Nothing heard for 75 s: the tick at 90 s closes.
    assert_eq!(client.close_code().await, close_code::IDLE_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(90));
    drop(client.to_server);
    client.session.await.unwrap();
    assert_eq!(endpoint.hub().connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_speaks_stays_past_the_idle_timeout() {
    let endpoint = WsEndpoint::new(ChatService::in_memory(), config());
    let mut client = connect(&endpoint, user(1)).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(40)).await;
        client.send(json!({"type": "ping"})).await;
        assert_eq!(client.next_json().await, json!({"type": "pong"}));
    }
    assert_eq!(endpoint.hub().connections(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expiring_token_closes_the_session_when_it_expires() {
    let endpoint = WsEndpoint::new(ChatService::in_memory(), config());
    let identity = Identity {
        user_id: UserId::new(1),
        expires_at: Some(time::OffsetDateTime::now_utc() + Duration::from_secs(50)),
    };
    let mut client = connect(&endpoint, identity).await;
    let start = tokio::time::Instant::now();
    // Kept alive meanwhile: only the expiry can close it.
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next_json().await, json!({"type": "pong"}));
    assert_eq!(client.close_code().await, close_code::TOKEN_EXPIRED);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(49) && waited <= Duration::from_secs(50),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_conversation_over_channels() {
    let chat = ChatService::in_memory();
    let endpoint = WsEndpoint::new(chat.clone(), config());
    let waiting = SendMessage {
        receiver_id: UserId::new(2),
        message: "waiting for you".into(),
        client_message_id: None,
    };
    let waiting = chat.send(UserId::new(1), waiting).await.unwrap().message;
    let mut alice = connect(&endpoint, user(1)).await;
    let mut bob = connect(&endpoint, user(2)).await;
    // Bob's backlog, then a live send answered by `sent` only, then Bob's receipt.
    let backlog = bob.next_json().await;
    assert_eq!(
        (&backlog["type"], &backlog["data"]["id"]),
        (&json!("message"), &json!(waiting.id.get()))
    );
    alice
        .send(json!({"type": "send", "receiver_id": 2, "message": "hi Bob"}))
        .await;
    let sent = alice.next_json().await;
    assert_eq!(sent["type"], "sent");
    let live = bob.next_json().await;
    assert_eq!(
        (&live["type"], &live["data"]["id"]),
        (&json!("message"), &sent["data"]["id"])
    );
    bob.send(json!({"type": "ack", "ids": [sent["data"]["id"]]}))
        .await;
    let receipt = alice.next_json().await;
    assert_eq!(
        (&receipt["type"], &receipt["data"]["status"]),
        (&json!("receipt"), &json!("delivered"))
    );
    // A client that goes away ends its session and frees its place.
    drop(bob.to_server);
    bob.session.await.unwrap();
    assert_eq!(endpoint.hub().connections(), 1);
}

#[tokio::test]
async fn a_bad_frame_is_answered_and_the_session_stays() {
    let endpoint = WsEndpoint::new(ChatService::in_memory(), config());
    let mut client = connect(&endpoint, user(1)).await;
    client
        .to_server
        .send(Ok(Message::text("{not json")))
        .await
        .unwrap();
    let error = client.next_json().await;
    assert_eq!(
        (&error["type"], &error["data"]["code"]),
        (&json!("error"), &json!("invalid_frame"))
    );
    client
        .to_server
        .send(Err(WsError::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: 2,
                max_size: 1,
            },
        )))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, close_code::MESSAGE_TOO_BIG);
}

#[tokio::test]
async fn a_store_that_cannot_be_read_refuses_the_session_and_frees_its_place() {
    let store = Arc::new(Layered::new(
        Arc::new(InMemoryRepository::new()),
        Faults::default(),
    ));
    let chat = ChatService::new(store.clone(), Arc::new(InProcessNotifier::new()));
    let endpoint = WsEndpoint::new(chat, config());
    store.layer().fail(StoreOperation::Conversations);
    let refused = endpoint.session(user(1), FeedStart::Undelivered).await;
    assert!(matches!(
        refused,
        Err(AcceptError::Chat(chat_core::Error::Unavailable { .. }))
    ));
    assert_eq!(endpoint.hub().connections(), 0);
    store.layer().heal();
    assert!(
        endpoint
            .session(user(1), FeedStart::Undelivered)
            .await
            .is_ok()
    );
}
