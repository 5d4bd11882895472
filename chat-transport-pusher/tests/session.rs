//! The Pusher session through its public interface, over a pair of channels: the
//! heartbeat, the chat's events and their delivery, client event rules.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chat_core::{ChatService, MessageStatus, SendMessage, UserId};
use chat_transport_pusher::signature::authorize_channel;
use chat_transport_pusher::{ChannelName, PusherApp, PusherConfig, PusherEndpoint, SocketId};
use chat_transport_ws::{ConnectionHub, PairSocket};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error, Message};

struct Client {
    to_server: mpsc::Sender<Result<Message, Error>>,
    from_server: mpsc::Receiver<Message>,
    socket_id: SocketId,
}

fn app() -> PusherApp {
    PusherApp::new("1", "key", "secret").unwrap()
}

fn endpoint(chat: &ChatService, config: PusherConfig) -> PusherEndpoint {
    PusherEndpoint::new(app(), chat.clone(), config, ConnectionHub::new(4))
}

async fn connect(endpoint: &PusherEndpoint) -> Client {
    let (to_client, mut from_server) = mpsc::channel::<Message>(256);
    let (to_server, from_client) = mpsc::channel::<Result<Message, Error>>(256);
    let endpoint = endpoint.clone();
    tokio::spawn(async move {
        endpoint
            .serve(PairSocket::new(to_client, from_client))
            .await
    });
    let established = frame(&mut from_server).await;
    assert_eq!(established["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    assert!(data["activity_timeout"].as_u64().unwrap() > 0);
    Client {
        to_server,
        from_server,
        socket_id: data["socket_id"].as_str().unwrap().parse().unwrap(),
    }
}

async fn next(from_server: &mut mpsc::Receiver<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(120), from_server.next())
        .await
        .expect("nothing from the server")
        .expect("the connection ended")
}

async fn frame(from_server: &mut mpsc::Receiver<Message>) -> Value {
    match next(from_server).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

impl Client {
    async fn send(&mut self, value: Value) {
        self.to_server
            .send(Ok(Message::Text(value.to_string().into())))
            .await
            .unwrap();
    }

    async fn subscribe_private(&mut self, channel: &str) -> Value {
        let name: ChannelName = channel.parse().unwrap();
        let auth = authorize_channel(&app(), &self.socket_id, &name, None);
        self.send(
            json!({ "event": "pusher:subscribe", "data": { "channel": channel, "auth": auth } }),
        )
        .await;
        frame(&mut self.from_server).await
    }

    async fn frame(&mut self) -> Value {
        frame(&mut self.from_server).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_then_closed_with_4201() {
    let chat = ChatService::in_memory();
    let config = PusherConfig::default()
        .with_activity_timeout(Duration::from_secs(30), Duration::from_secs(30));
    let mut client = connect(&endpoint(&chat, config)).await;
    let ping = client.frame().await;
    assert_eq!(ping["event"], "pusher:ping");
    match next(&mut client.from_server).await {
        Message::Close(Some(CloseFrame { code, .. })) => assert_eq!(u16::from(code), 4201),
        other => panic!("expected the close, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_stays() {
    let chat = ChatService::in_memory();
    let config = PusherConfig::default()
        .with_activity_timeout(Duration::from_secs(30), Duration::from_secs(30));
    let mut client = connect(&endpoint(&chat, config)).await;
    for _ in 0..3 {
        assert_eq!(client.frame().await["event"], "pusher:ping");
        client
            .send(json!({ "event": "pusher:pong", "data": {} }))
            .await;
    }
    client
        .send(json!({ "event": "pusher:ping", "data": {} }))
        .await;
    assert_eq!(client.frame().await["event"], "pusher:pong");
}

#[tokio::test]
async fn the_backlog_arrives_once_and_counts_as_delivered() {
    let chat = ChatService::in_memory();
    let (alice, bob) = (UserId::new(1), UserId::new(2));
    let sent = chat
        .send(
            alice,
            SendMessage {
                receiver_id: bob,
                message: "while you were away".into(),
                client_message_id: None,
            },
        )
        .await
        .unwrap();
    let endpoint = endpoint(&chat, PusherConfig::default());
    let mut client = connect(&endpoint).await;
    let succeeded = client.subscribe_private("private-chat.2").await;
    assert_eq!(succeeded["event"], "pusher_internal:subscription_succeeded");
    let event = client.frame().await;
    assert_eq!(event["event"], "App\\Events\\MessageSent");
    assert_eq!(event["channel"], "private-chat.2");
    let data: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["message"]["id"], sent.message.id.get());
    // Written to the receiver: delivered, and no second device gets it again.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = chat.message(bob, sent.message.id).await.unwrap();
            if message.status == MessageStatus::Delivered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the message was not marked delivered");
    let mut second = connect(&endpoint).await;
    second.subscribe_private("private-chat.2").await;
    second
        .send(json!({ "event": "pusher:ping", "data": {} }))
        .await;
    assert_eq!(second.frame().await["event"], "pusher:pong");
}

#[tokio::test]
async fn client_events_need_a_joined_private_channel_and_are_rate_limited() {
    let chat = ChatService::in_memory();
    let config = PusherConfig::default().with_client_events_per_second(2);
    let endpoint = endpoint(&chat, config);
    let mut sender = connect(&endpoint).await;
    let mut other = connect(&endpoint).await;
    // Not joined: refused, the connection stays.
    sender
        .send(json!({ "event": "client-typing", "channel": "private-room", "data": {} }))
        .await;
    assert_eq!(sender.frame().await["event"], "pusher:error");
    sender.subscribe_private("private-room").await;
    other.subscribe_private("private-room").await;
    for n in 0..3 {
        sender
            .send(
                json!({ "event": "client-typing", "channel": "private-room", "data": { "n": n } }),
            )
            .await;
    }
    // Two pass and reach the other subscriber (never the sender); the third is refused.
    for n in 0..2 {
        let relayed = other.frame().await;
        assert_eq!(relayed["event"], "client-typing");
        assert_eq!(relayed["data"]["n"], n);
    }
    let refused = sender.frame().await;
    assert_eq!(refused["event"], "pusher:error");
    let data: Value = match &refused["data"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    };
    assert_eq!(data["code"], 4301);
}

/// A broadcast whose broker is gone for good.
struct Unreachable;

#[chat_core::async_trait]
impl chat_core::Broadcast for Unreachable {
    async fn publish(&self, _payload: Vec<u8>) -> Result<(), chat_core::Error> {
        Err(chat_core::Error::unavailable("no broker"))
    }

    async fn subscribe(&self) -> Result<chat_core::BroadcastStream, chat_core::Error> {
        Err(chat_core::Error::unavailable("no broker"))
    }
}

#[tokio::test]
async fn without_the_other_nodes_this_nodes_connections_still_hear_events() {
    let chat = ChatService::in_memory();
    let endpoint =
        endpoint(&chat, PusherConfig::default()).with_broadcast(std::sync::Arc::new(Unreachable));
    let mut listener = connect(&endpoint).await;
    let mut whisperer = connect(&endpoint).await;
    listener
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "news" } }))
        .await;
    assert_eq!(
        listener.frame().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let news: ChannelName = "news".parse().unwrap();
    endpoint.publish(&news, "Story", "{\"n\":1}", None).await;
    let story = listener.frame().await;
    assert_eq!(
        (story["event"].as_str(), story["data"].as_str()),
        (Some("Story"), Some("{\"n\":1}"))
    );
    listener.subscribe_private("private-room").await;
    whisperer.subscribe_private("private-room").await;
    whisperer
        .send(json!({ "event": "client-typing", "channel": "private-room", "data": {} }))
        .await;
    assert_eq!(listener.frame().await["event"], "client-typing");
}

#[tokio::test]
async fn a_connection_joins_a_bounded_number_of_channels() {
    let chat = ChatService::in_memory();
    let mut config = PusherConfig::default();
    config.max_channels_per_connection = 2;
    let mut client = connect(&endpoint(&chat, config)).await;
    for (n, expected) in [
        "pusher_internal:subscription_succeeded",
        "pusher_internal:subscription_succeeded",
        "pusher:subscription_error",
    ]
    .into_iter()
    .enumerate()
    {
        client
            .send(json!({ "event": "pusher:subscribe", "data": { "channel": format!("c{n}") } }))
            .await;
        assert_eq!(client.frame().await["event"], expected);
    }
    // Leaving one makes room.
    client
        .send(json!({ "event": "pusher:unsubscribe", "data": { "channel": "c0" } }))
        .await;
    client
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "c2" } }))
        .await;
    assert_eq!(
        client.frame().await["event"],
        "pusher_internal:subscription_succeeded"
    );
}
