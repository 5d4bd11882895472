//! The WebSocket over real sockets with tokio-tungstenite clients: live delivery to
//! every device, offline backlog, resume, receipts, each limit's close code, and the
//! checks before the upgrade.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use chat_core::{JwtIssuer, UserId};
use chat_server::AppState;
use common::{SECRET, settings, token};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PATIENCE: Duration = Duration::from_secs(10);
/// Users of the heavy tests, apart from everyone else's: on Postgres every test shares
/// one database, and a send locks its two participants database-wide, so a flood to
/// user 2 would hold up the other tests' sends to user 2.
const PIPELINING: i64 = 91_000;
const DEAD: i64 = 92_000;
const QUIET: Duration = Duration::from_millis(300);
/// The users of the edit test.
const EDITOR: i64 = 93_001;
const READER: i64 = 93_002;
/// The users of the presence test.
const WATCHER: i64 = 94_001;
const WATCHED: i64 = 94_002;
const STRANGER: i64 = 94_003;

struct Server {
    address: SocketAddr,
    state: AppState,
}

async fn server(extra: &[&str]) -> Server {
    let mut args = vec![
        "--send-burst",
        "100000",
        "--send-rate-per-minute",
        "6000000",
    ];
    args.extend_from_slice(extra);
    let state = chat_server::build_state(&settings(&args)).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = chat_server::app(state.clone());
    tokio::spawn(chat_server::serve(listener, app, std::future::pending()));
    Server { address, state }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Client {
    socket: Socket,
}

impl Server {
    fn url(&self, query: &str) -> String {
        format!("ws://{}/api/chat/ws{query}", self.address)
    }

    async fn try_connect(
        &self,
        user: i64,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        let mut request = self.url(query).into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", token(user)).parse().unwrap(),
        );
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(request).await?;
        assert_eq!(response.status(), 101);
        Ok(Client { socket })
    }

    async fn connect(&self, user: i64) -> Client {
        self.try_connect(user, "", None).await.unwrap()
    }

    async fn send_rest(&self, from: i64, to: i64, text: &str) -> i64 {
        let answer = reqwest::Client::new()
            .post(format!("http://{}/api/chat/send", self.address))
            .bearer_auth(token(from))
            .json(&json!({"receiver_id": to, "message": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        answer.json::<Value>().await.unwrap()["data"]["id"]
            .as_i64()
            .unwrap()
    }
}

/// The HTTP status a refused handshake answered with.
fn refusal_status(error: tungstenite::Error) -> u16 {
    match error {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

impl Client {
    async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON frame (control frames skipped); panics on close or silence.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("no frame in time")
                .expect("connection ended")
                .unwrap();
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Frames arriving until the connection stays quiet for a moment.
    async fn drain(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(QUIET, self.socket.next()).await {
            if let Message::Text(text) = message {
                frames.push(serde_json::from_str(&text).unwrap());
            }
        }
        frames
    }

    /// Reads until the server closes; returns the close code.
    async fn close_code(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("not closed in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => {}
                Some(Err(error)) => panic!("connection failed before a close frame: {error}"),
            }
        }
    }
}

fn ids_of(frames: &[Value], kind: &str) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == kind)
        .map(|f| f["data"]["id"].as_i64().unwrap())
        .collect()
}

async fn a_message_reaches_every_device_of_both_users() {
    let server = server(&[]).await;
    let mut phone = server.connect(2).await;
    let mut laptop = server.connect(2).await;
    let mut sender = server.connect(1).await;
    let mut sender_tablet = server.connect(1).await;
    let mut stranger = server.connect(3).await;

    sender.send(json!({"type": "send", "receiver_id": 2, "message": "hello devices", "client_message_id": "t-1"})).await;
    let sent = sender.next().await;
    assert_eq!(sent["type"], "sent");
    assert_eq!(sent["replay"], false);
    let id = sent["data"]["id"].as_i64().unwrap();
    for device in [&mut phone, &mut laptop, &mut sender_tablet] {
        let frame = device.next().await;
        assert_eq!(frame["type"], "message");
        assert_eq!(frame["data"]["id"], id);
        assert_eq!(frame["data"]["message"], "hello devices");
    }
    // The sending connection got `sent`, not the same message again; others nothing.
    assert!(ids_of(&sender.drain().await, "message").is_empty());
    assert!(stranger.drain().await.is_empty());

    // A replay over WebSocket says so; a REST send reaches every connection.
    sender.send(json!({"type": "send", "receiver_id": 2, "message": "hello devices", "client_message_id": "t-1"})).await;
    let replay = sender.next().await;
    assert_eq!(
        (replay["type"].as_str(), replay["replay"].as_bool()),
        (Some("sent"), Some(true))
    );
    let rest_id = server.send_rest(1, 2, "over REST").await;
    for device in [&mut phone, &mut laptop, &mut sender, &mut sender_tablet] {
        assert_eq!(device.next_of("message").await["data"]["id"], rest_id);
    }
}

/// A device counts as connected once its handshake is answered: a message sent right
/// after that reaches it, also when it is the sender's own message from another device.
async fn a_message_sent_right_after_the_handshake_reaches_the_new_device() {
    let server = server(&[]).await;
    for round in 0..30 {
        // Users of each round's own, so no round has a backlog.
        let (from, to) = (93_000 + 2 * round, 93_001 + 2 * round);
        let mut sender = server.connect(from).await;
        let mut tablet = server.connect(from).await;
        let mut phone = server.connect(to).await;
        sender
            .send(json!({"type": "send", "receiver_id": to, "message": "right after connecting"}))
            .await;
        let id = sender.next_of("sent").await["data"]["id"].clone();
        for device in [&mut tablet, &mut phone] {
            assert_eq!(
                device.next_of("message").await["data"]["id"],
                id,
                "round {round}"
            );
        }
    }
}

async fn offline_messages_arrive_on_connect_in_order_then_live() {
    let server = server(&[]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            server
                .send_rest(1 + i % 2 * 2, 2, &format!("offline {i}"))
                .await,
        );
    }
    server
        .send_rest(2, 1, "from two, not a backlog for two")
        .await;
    let mut receiver = server.connect(2).await;
    let mut backlog = Vec::new();
    for _ in 0..5 {
        backlog.push(receiver.next().await);
    }
    assert_eq!(ids_of(&backlog, "message"), sent);
    let live = server.send_rest(1, 2, "live").await;
    assert_eq!(receiver.next().await["data"]["id"], live);

    // Acknowledged messages are not sent again on the next connection.
    receiver.send(json!({"type": "ack", "ids": sent})).await;
    assert!(
        receiver.drain().await.is_empty(),
        "ack has no answer when it succeeds"
    );
    drop(receiver);
    let mut again = server.connect(2).await;
    let frames = again.drain().await;
    assert_eq!(
        ids_of(&frames, "message"),
        vec![live],
        "only the unacknowledged one"
    );
}

async fn resume_after_a_disconnect_mid_burst_misses_nothing() {
    const BURST: usize = 1000;
    let server = server(&[]).await;
    let mut receiver = server.connect(2).await;
    let address = server.address;
    let burst = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut ids = Vec::with_capacity(BURST);
        for i in 0..BURST {
            let answer: Value = client
                .post(format!("http://{address}/api/chat/send"))
                .bearer_auth(token(1))
                .json(&json!({"receiver_id": 2, "message": format!("burst {i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(answer["data"]["id"].as_i64().unwrap());
        }
        ids
    });
    let mut seen = Vec::new();
    while seen.len() < 300 {
        seen.push(
            receiver.next_of("message").await["data"]["id"]
                .as_i64()
                .unwrap(),
        );
    }
    drop(receiver);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = *seen.last().unwrap();
    let mut resumed = server
        .try_connect(2, &format!("?after_id={last}"), None)
        .await
        .unwrap();
    let sent: BTreeSet<i64> = burst.await.unwrap().into_iter().collect();
    let mut received: BTreeSet<i64> = seen.iter().copied().collect();
    while !sent.is_subset(&received) {
        received.insert(
            resumed.next_of("message").await["data"]["id"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(
        received, sent,
        "every message exactly as sent, none missing"
    );
    // Each connection saw its messages in id order.
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

/// Edits or deletes message `id` as `user` over REST; the changed message.
async fn amend_rest(server: &Server, user: i64, id: i64, text: Option<&str>) -> Value {
    let url = format!("http://{}/api/chat/messages/{id}", server.address);
    let client = reqwest::Client::new();
    let request = match text {
        Some(text) => client.patch(url).json(&json!({"message": text})),
        None => client.delete(url),
    };
    let answer = request.bearer_auth(token(user)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.json::<Value>().await.unwrap()["data"].clone()
}

async fn edits_and_deletions_reach_every_device_live_and_on_resume() {
    let server = server(&[]).await;
    let mut editor = server.connect(EDITOR).await;
    let mut phone = server.connect(READER).await;
    let first = server.send_rest(EDITOR, READER, "frist").await;
    let second = server.send_rest(EDITOR, READER, "second").await;
    assert_eq!(phone.next_of("message").await["data"]["id"], first);
    assert_eq!(phone.next_of("message").await["data"]["id"], second);
    let edited = amend_rest(&server, EDITOR, first, Some("first")).await;
    for device in [&mut phone, &mut editor] {
        let frame = device.next_of("message_updated").await;
        assert_eq!(frame["data"], edited);
        assert!(frame["revision"].as_i64().unwrap() > second);
    }
    // The phone goes away after the edit; its cursor is the edit's revision.
    let phone_frames = phone.drain().await;
    assert!(phone_frames.is_empty(), "{phone_frames:?}");
    drop(phone);
    let editor_frames = editor.drain().await;
    assert!(editor_frames.is_empty(), "{editor_frames:?}");
    let revision = {
        let mut tablet = server
            .try_connect(READER, &format!("?after_id={second}"), None)
            .await
            .unwrap();
        let frame = tablet.next_of("message_updated").await;
        frame["revision"].as_i64().unwrap()
    };
    let tombstone = amend_rest(&server, EDITOR, second, None).await;
    assert_eq!(tombstone["message"], "");
    let third = server.send_rest(EDITOR, READER, "third").await;
    let mut phone = server
        .try_connect(READER, &format!("?after_id={revision}"), None)
        .await
        .unwrap();
    let frames = phone.drain().await;
    let kinds: Vec<(&str, i64)> = frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap(),
                f["data"]["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("message_deleted", second), ("message", third)]);
    assert_eq!(frames[0]["data"], tombstone);
    assert!(frames[0]["revision"].as_i64().unwrap() > revision);
    assert!(third > frames[0]["revision"].as_i64().unwrap());
}

/// `GET /api/chat/presence` as `user`.
async fn presence_rest(server: &Server, user: i64, ids: &str) -> Value {
    let answer = reqwest::Client::new()
        .get(format!(
            "http://{}/api/chat/presence?user_ids={ids}",
            server.address
        ))
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json::<Value>().await.unwrap()["data"].clone()
}

async fn watchers_see_users_come_and_go_and_blocks_hide_them() {
    let server = server(&["--presence-grace-seconds", "0"]).await;
    server.send_rest(WATCHER, WATCHED, "we talk").await;
    let mut watcher = server.connect(WATCHER).await;
    watcher
        .send(json!({"type": "watch", "user_ids": [WATCHED, STRANGER]}))
        .await;
    let snapshot = watcher.next_of("presence").await;
    let online: Vec<(i64, bool)> = snapshot["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_i64().unwrap(),
                p["online"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(online, [(WATCHED, false), (STRANGER, false)]);
    // The stranger connecting is nothing the watcher may see.
    let stranger = server.connect(STRANGER).await;
    let watched = server.connect(WATCHED).await;
    let came = watcher.next_of("presence").await;
    assert_eq!(
        came["data"],
        json!([{"user_id": WATCHED, "online": true,
        "last_seen_at": came["data"][0]["last_seen_at"]}])
    );
    assert_eq!(
        presence_rest(&server, WATCHER, &WATCHED.to_string()).await[0]["online"],
        true
    );
    drop(watched);
    let went = watcher.next_of("presence").await;
    assert_eq!(went["data"][0]["user_id"], WATCHED);
    assert_eq!(went["data"][0]["online"], false);
    let seen = went["data"][0]["last_seen_at"].as_str().unwrap().to_owned();
    assert!(seen.ends_with('Z'));
    let looked = presence_rest(&server, WATCHER, &format!("{WATCHED},{STRANGER}")).await;
    assert_eq!(
        looked[0],
        json!({"user_id": WATCHED, "online": false, "last_seen_at": seen})
    );
    assert_eq!(
        looked[1],
        json!({"user_id": STRANGER, "online": false, "last_seen_at": null})
    );
    drop(stranger);
    assert!(
        watcher
            .drain()
            .await
            .iter()
            .all(|f| f["type"] != "presence"),
        "nothing of the stranger"
    );
    // Past the bound: an error, and the list stays as it was.
    let many: Vec<i64> = (1..=101).collect();
    watcher
        .send(json!({"type": "watch", "user_ids": many}))
        .await;
    let refused = watcher.next_of("error").await;
    assert_eq!(refused["data"]["code"], "validation_failed");
    assert!(refused["data"]["errors"]["user_ids"].is_array());
    // A block hides the watched user from then on.
    let blocked = reqwest::Client::new()
        .post(format!(
            "http://{}/api/chat/blocks/{WATCHER}",
            server.address
        ))
        .bearer_auth(token(WATCHED))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 201);
    let _back = server.connect(WATCHED).await;
    assert!(
        watcher
            .drain()
            .await
            .iter()
            .all(|f| f["type"] != "presence"),
        "nothing of a user who blocked the watcher"
    );
    let hidden = presence_rest(&server, WATCHER, &WATCHED.to_string()).await;
    assert_eq!(
        hidden[0],
        json!({"user_id": WATCHED, "online": false, "last_seen_at": null})
    );
}

async fn receipts_reach_the_sender() {
    let server = server(&[]).await;
    let mut sender = server.connect(1).await;
    let mut receiver = server.connect(2).await;
    let a = server.send_rest(1, 2, "a").await;
    let b = server.send_rest(1, 2, "b").await;
    let c = server.send_rest(1, 2, "c").await;
    sender.drain().await;
    receiver.drain().await;
    receiver.send(json!({"type": "ack", "ids": [a, b]})).await;
    receiver.send(json!({"type": "read", "ids": [a]})).await;
    receiver
        .send(json!({"type": "read", "user_id": 1, "up_to_id": c}))
        .await;
    let mut receipts = Vec::new();
    while receipts.len() < 5 {
        let frame = sender.next_of("receipt").await;
        assert!(frame["data"]["at"].as_str().unwrap().ends_with('Z'));
        receipts.push((
            frame["data"]["id"].as_i64().unwrap(),
            frame["data"]["status"].as_str().unwrap().to_owned(),
        ));
    }
    let expected: Vec<(i64, String)> = [
        (a, "delivered"),
        (b, "delivered"),
        (a, "read"),
        (b, "read"),
        (c, "read"),
    ]
    .into_iter()
    .map(|(id, status)| (id, status.to_owned()))
    .collect();
    assert_eq!(receipts, expected);
    // Typing reaches the other side only.
    receiver
        .send(json!({"type": "typing", "receiver_id": 1}))
        .await;
    assert_eq!(sender.next_of("typing").await["data"]["user_id"], 2);
}

async fn bad_frames_get_error_frames_and_the_connection_stays() {
    let server = server(&[]).await;
    let mut client = server.connect(1).await;
    let cases = [
        (Message::text("not json"), "invalid_frame"),
        (Message::text(r#"{"type":"shout"}"#), "invalid_frame"),
        (
            Message::text(r#"{"type":"ack","ids":[1],"extra":true}"#),
            "invalid_frame",
        ),
        (
            Message::text(r#"{"type":"send","receiver_id":1,"message":"me"}"#),
            "validation_failed",
        ),
        (
            Message::text(r#"{"type":"send","receiver_id":2,"message":"  "}"#),
            "validation_failed",
        ),
        (
            Message::text(r#"{"type":"ack","ids":[]}"#),
            "validation_failed",
        ),
        (
            Message::text(r#"{"type":"read","ids":[1],"user_id":2}"#),
            "validation_failed",
        ),
        (Message::binary(vec![1, 2, 3]), "unsupported_frame"),
    ];
    for (frame, code) in cases {
        client.socket.send(frame.clone()).await.unwrap();
        let answer = client.next().await;
        assert_eq!(answer["type"], "error", "{frame:?}");
        assert_eq!(answer["data"]["code"], code, "{frame:?}: {answer}");
    }
    let invalid = {
        client
            .send(json!({"type": "send", "receiver_id": 0, "message": ""}))
            .await;
        client.next().await
    };
    assert!(
        invalid["data"]["errors"]["receiver_id"].is_array(),
        "{invalid}"
    );
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
}

async fn oversized_messages_close_with_1009_also_when_fragmented() {
    let server = server(&["--ws-max-message-bytes", "1024"]).await;
    let mut whole = server.connect(1).await;
    whole
        .socket
        .send(Message::text("x".repeat(2000)))
        .await
        .unwrap();
    assert_eq!(whole.close_code().await, 1009);

    let mut fragmented = server.connect(1).await;
    let first = Frame::message(vec![b'a'; 600], OpCode::Data(Data::Text), false);
    let last = Frame::message(vec![b'b'; 600], OpCode::Data(Data::Continue), true);
    fragmented.socket.send(Message::Frame(first)).await.unwrap();
    fragmented.socket.send(Message::Frame(last)).await.unwrap();
    assert_eq!(fragmented.close_code().await, 1009);
}

/// A client pipelining sends is answered by one `sent` per send and never gets its
/// own messages back as `message` frames, however many are in flight.
async fn pipelined_sends_are_answered_by_sent_only() {
    const SENDS: usize = 2000;
    const IN_FLIGHT: usize = 64;
    let server = server(&[
        "--ws-messages-per-second",
        "1000000",
        "--ws-message-burst",
        "1000000",
    ])
    .await;
    let mut client = server.connect(PIPELINING).await;
    let frame = |i: usize| json!({"type": "send", "receiver_id": PIPELINING + 1, "message": format!("pipelined {i}")});
    for i in 0..IN_FLIGHT {
        client.send(frame(i)).await;
    }
    let mut issued = IN_FLIGHT;
    let mut sent = BTreeSet::new();
    let mut echoes = 0;
    while sent.len() < SENDS {
        let answer = client.next().await;
        match answer["type"].as_str() {
            Some("sent") => {
                assert!(sent.insert(answer["data"]["id"].as_i64().unwrap()));
                if issued < SENDS {
                    client.send(frame(issued)).await;
                    issued += 1;
                }
            }
            Some("message") => echoes += 1,
            _ => panic!("unexpected frame {answer}"),
        }
    }
    echoes += ids_of(&client.drain().await, "message").len();
    assert_eq!(echoes, 0, "own messages echoed on the sending connection");
}

/// A text frame that is not UTF-8 closes with 1007 (invalid payload data).
async fn invalid_utf8_closes_with_1007() {
    let server = server(&[]).await;
    let mut client = server.connect(1).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    client.socket.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(client.close_code().await, 1007);
}

/// A consumer that stops reading is closed within the write timeout, and its place
/// among the user's connections is free as soon as it is closed.
async fn a_dead_consumer_is_released_within_the_write_timeout() {
    let server = server(&[
        "--ws-max-connections-per-user",
        "1",
        "--ws-write-timeout-seconds",
        "2",
    ])
    .await;
    let dead = server.connect(DEAD).await;
    let chat = server.state.chat().clone();
    // Large messages fill the socket buffers quickly; then every write waits.
    let mut senders = tokio::task::JoinSet::new();
    for sender in DEAD + 1..DEAD + 33 {
        let chat = chat.clone();
        senders.spawn(async move {
            for _ in 0..100 {
                let input = chat_core::SendMessage {
                    receiver_id: UserId::new(DEAD),
                    message: "x".repeat(3900),
                    client_message_id: None,
                };
                chat.send(UserId::new(sender), input).await.unwrap();
            }
        });
    }
    senders.join_all().await;
    let flooded = tokio::time::Instant::now();
    let write_timeout = server.state.websocket().config().write_timeout;
    let hub = server.state.websocket().hub().clone();
    while hub.connections_of(UserId::new(DEAD)) > 0 {
        assert!(
            flooded.elapsed() < write_timeout + Duration::from_secs(3),
            "still held {:?} after the flood",
            flooded.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The freed place takes a new connection, which resumes from the store.
    let mut again = server.try_connect(DEAD, "?after_id=0", None).await.unwrap();
    assert_eq!(again.next().await["type"], "message");
    drop(dead);
}

/// Reads until the server's close frame and returns its code, or `None` when the
/// connection ended without one (a reset).
async fn close_code_or_reset(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("not closed in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// A client still sending when the server closes it for a limit learns why: the
/// server reads and discards what is in flight before it drops the socket, so no
/// reset overtakes the close frame. Each case runs several times, as a reset was
/// a race the client mostly lost.
async fn a_client_still_sending_gets_the_close_code_not_a_reset() {
    const MIB: usize = 1024 * 1024;
    let server = server(&["--ws-messages-per-second", "1", "--ws-message-burst", "5"]).await;
    for round in 0..3 {
        // A 1 MiB message in 64 KiB fragments; the limit is 64 KiB.
        let mut fragmented = server.connect(1).await;
        let pieces = MIB / (64 * 1024);
        for i in 0..pieces {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(vec![b'a'; 64 * 1024], opcode, i + 1 == pieces);
            if fragmented.socket.send(Message::Frame(frame)).await.is_err() {
                break;
            }
        }
        assert_eq!(
            close_code_or_reset(&mut fragmented.socket).await,
            Some(1009),
            "fragmented, round {round}"
        );

        // One 1 MiB frame.
        let mut whole = server.connect(1).await;
        let _ = whole.socket.send(Message::text("b".repeat(MIB))).await;
        assert_eq!(
            close_code_or_reset(&mut whole.socket).await,
            Some(1009),
            "one frame, round {round}"
        );

        // Too many frames, and more keep coming.
        let mut flooding = server.connect(1).await;
        let ping = Message::text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "p".repeat(4000)));
        for _ in 0..200 {
            if flooding.socket.send(ping.clone()).await.is_err() {
                break;
            }
        }
        assert_eq!(
            close_code_or_reset(&mut flooding.socket).await,
            Some(1008),
            "flooding, round {round}"
        );
    }
}

async fn flooding_closes_with_1008() {
    let server = server(&["--ws-messages-per-second", "1", "--ws-message-burst", "5"]).await;
    let mut client = server.connect(1).await;
    for _ in 0..10 {
        if client
            .socket
            .send(Message::text(r#"{"type":"ping"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(client.close_code().await, 1008);
}

/// The notifier runs on the test's single thread: publishing without yielding fills
/// the connection's queue before it can drain, as a stalled socket would.
async fn a_slow_consumer_closes_with_4008_and_resumes() {
    let server = server(&["--ws-outbound-queue", "4"]).await;
    let mut slow = server.connect(2).await;
    let chat = server.state.chat().clone();
    let id = server.send_rest(1, 2, "before").await;
    assert_eq!(slow.next().await["data"]["id"], id);
    // Typing reads the store (blocks) before it publishes, so events come as fast as
    // those reads: bursts of them at once, until one overflows the queue of 4.
    let mut code = None;
    for _ in 0..20 {
        let typing = (0..200).map(|_| chat.typing(UserId::new(1), UserId::new(2)));
        for typed in futures_util::future::join_all(typing).await {
            typed.unwrap();
        }
        if let Ok(closed) = tokio::time::timeout(QUIET, slow.close_code()).await {
            code = Some(closed);
            break;
        }
    }
    assert_eq!(code, Some(4008));
    let mut resumed = server
        .try_connect(2, &format!("?after_id={}", id - 1), None)
        .await
        .unwrap();
    assert_eq!(resumed.next().await["data"]["id"], id);
}

async fn silence_closes_with_4002_but_a_live_client_stays() {
    let server = server(&[
        "--ws-heartbeat-seconds",
        "1",
        "--ws-idle-timeout-seconds",
        "2",
    ])
    .await;
    let mut live = server.connect(1).await;
    let mut silent = server.connect(2).await;
    // The live client keeps reading, which answers the server's pings.
    let reader = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
        let mut pings = 0;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, live.socket.next()).await
        {
            if matches!(message, Message::Ping(_)) {
                pings += 1;
            }
        }
        live.send(json!({"type": "ping"})).await;
        (pings, live.next().await)
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(silent.close_code().await, 4002);
    let (pings, answer) = reader.await.unwrap();
    assert!(pings >= 2, "{pings} pings");
    assert_eq!(answer, json!({"type": "pong"}));
}

async fn an_expiring_token_closes_with_4001() {
    let server = server(&["--jwt-leeway-seconds", "0"]).await;
    let short = JwtIssuer::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(UserId::new(1), Duration::from_secs(2))
        .unwrap();
    let mut request = server.url("").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {short}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client { socket };
    assert_eq!(client.close_code().await, 4001);
}

async fn connections_per_user_are_limited() {
    let server = server(&["--ws-max-connections-per-user", "2"]).await;
    let first = server.connect(1).await;
    let _second = server.connect(1).await;
    let third = server.try_connect(1, "", None).await.err().unwrap();
    assert_eq!(refusal_status(third), 429);
    let _other_user = server.connect(2).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server.try_connect(1, "", None).await.is_ok(),
        "a freed place is reusable"
    );
}

async fn checks_before_the_upgrade() {
    let server = server(&[
        "--allowed-origins",
        "https://app.example,https://admin.example/",
    ])
    .await;
    // No token, a bad token: 401.
    let no_token = tokio_tungstenite::connect_async(server.url(""))
        .await
        .err()
        .unwrap();
    assert_eq!(refusal_status(no_token), 401);
    let bad = tokio_tungstenite::connect_async(server.url("?token=forged"))
        .await
        .err()
        .unwrap();
    assert_eq!(refusal_status(bad), 401);
    // A token in the query works (browsers cannot set headers).
    let (mut by_query, _) =
        tokio_tungstenite::connect_async(server.url(&format!("?token={}", token(1))))
            .await
            .unwrap();
    by_query
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    // Origins: listed ones and none at all are fine, others are 403.
    assert!(
        server
            .try_connect(1, "", Some("https://app.example"))
            .await
            .is_ok()
    );
    assert!(
        server
            .try_connect(1, "", Some("https://ADMIN.example"))
            .await
            .is_ok()
    );
    assert!(server.try_connect(1, "", None).await.is_ok());
    let evil = server
        .try_connect(1, "", Some("https://evil.example"))
        .await
        .err()
        .unwrap();
    assert_eq!(refusal_status(evil), 403);
    let bad_cursor = server
        .try_connect(1, "?after_id=-3", None)
        .await
        .err()
        .unwrap();
    assert_eq!(refusal_status(bad_cursor), 422);
    let twice = server
        .try_connect(1, "?after_id=1&after_id=2", None)
        .await
        .err()
        .unwrap();
    assert_eq!(refusal_status(twice), 422, "a repeated cursor is refused");
}

async fn shutdown_closes_connections_with_1001() {
    let server = server(&[]).await;
    let mut client = server.connect(1).await;
    assert_eq!(server.state.websocket().hub().connections(), 1);
    server.state.websocket().hub().shut_down();
    assert_eq!(client.close_code().await, 1001);
}

crate::both_stores!("multi_thread";
    a_message_reaches_every_device_of_both_users,
    a_message_sent_right_after_the_handshake_reaches_the_new_device,
    offline_messages_arrive_on_connect_in_order_then_live,
    resume_after_a_disconnect_mid_burst_misses_nothing,
    edits_and_deletions_reach_every_device_live_and_on_resume,
    watchers_see_users_come_and_go_and_blocks_hide_them,
    receipts_reach_the_sender,
    bad_frames_get_error_frames_and_the_connection_stays,
    oversized_messages_close_with_1009_also_when_fragmented,
    flooding_closes_with_1008,
    silence_closes_with_4002_but_a_live_client_stays,
    an_expiring_token_closes_with_4001,
    connections_per_user_are_limited,
    checks_before_the_upgrade,
    shutdown_closes_connections_with_1001,
    pipelined_sends_are_answered_by_sent_only,
    invalid_utf8_closes_with_1007,
    a_dead_consumer_is_released_within_the_write_timeout,
    a_client_still_sending_gets_the_close_code_not_a_reset,
);

crate::both_stores!("current_thread";
    a_slow_consumer_closes_with_4008_and_resumes,
);
