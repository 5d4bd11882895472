//! Several `chat-server` processes on one Postgres database and one Redis: live
//! delivery, receipts, typing and the send limit cross nodes; a Redis restart and a
//! node killed with SIGKILL lose nothing.
//!
//! Needs `CHAT_TEST_POSTGRES_URL` and (for the shared bus) `CHAT_TEST_REDIS_URL`; the
//! restart test starts a `redis-server` of its own on a free port. Without them the
//! tests skip with a printed reason, unless `CHAT_REQUIRE_SERVICES=1`.
#![allow(clippy::unwrap_used)]

mod process;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_bus_redis::RedisPresence;
use chat_bus_redis::testing::RedisServer;
use chat_core::{Presence, UserId};
use futures_util::{SinkExt, StreamExt};
use process::{
    Database, NO_SEND_LIMIT, Server, http_client, postgres_url, runtime, send, serial, token,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long anything that should arrive may take before the test fails.
const ARRIVAL: Duration = Duration::from_secs(20);

/// The servers' arguments for the bus at `url` under a prefix of this test run.
fn bus_args(url: &str, test: &str) -> Vec<String> {
    vec![
        "--redis-url".to_owned(),
        url.to_owned(),
        "--redis-prefix".to_owned(),
        format!("chat-test-{test}-{}", std::process::id()),
    ]
}

async fn connect(server: &Server, user: i64, query: &str) -> Socket {
    let mut request = server.ws_url(query).into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(user)).parse().unwrap(),
    );
    let (socket, _) = tokio::time::timeout(ARRIVAL, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake hung")
        .expect("the handshake failed");
    socket
}

/// The next JSON frame of type `kind`, skipping others; fails after [`ARRIVAL`].
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame arrived"))
            .expect("the connection closed")
            .expect("the connection failed");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

async fn send_frame(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

async fn ready(client: &reqwest::Client, server: &Server) -> Value {
    client
        .get(format!("{}/ready", server.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Each node has subscribed its users' topics once it answers `/ready` with the bus up,
/// and a connection's subscription is in place once its handshake is answered.
async fn wait_bus_up(client: &reqwest::Client, servers: &[&Server]) {
    let deadline = Instant::now() + ARRIVAL;
    for server in servers {
        while ready(client, server).await["bus"] != "up" {
            assert!(Instant::now() < deadline, "the bus never came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A message sent by REST and by WebSocket on node A reaches the receiver's devices on
/// B and C and the sender's other device on C; receipts and typing cross nodes; a burst
/// spread over three nodes is cut at the one limit.
#[test]
fn three_nodes_deliver_to_each_other() {
    let _serial = serial();
    let (Some(postgres), Some(redis)) = (
        postgres_url(),
        chat_core::testing::service_url("CHAT_TEST_REDIS_URL"),
    ) else {
        return;
    };
    runtime().block_on(async {
        let database = Database::postgres(&postgres, "nodes").await;
        let mut args = bus_args(&redis, "nodes");
        args.extend(
            [
                "--send-burst",
                "5",
                "--send-rate-per-minute",
                "1",
                "--ws-max-connections-per-user",
                "2",
            ]
            .map(str::to_owned),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = Server::start(&database, &args).await;
        let b = Server::start(&database, &args).await;
        let c = Server::start(&database, &args).await;
        let client = http_client(ARRIVAL);
        wait_bus_up(&client, &[&a, &b, &c]).await;

        let (alice, bob) = (1, 2);
        let mut bob_on_b = connect(&b, bob, "").await;
        let mut bob_on_c = connect(&c, bob, "").await;
        let mut alice_on_c = connect(&c, alice, "").await;
        let mut alice_on_a = connect(&a, alice, "").await;

        // By REST on A.
        let rest = send(&client, &a.base(), alice, bob, "by REST", "rest-1")
            .await
            .unwrap();
        assert_eq!(rest.status, 201, "{}", rest.body);
        let rest_id = rest.id.unwrap();
        for socket in [&mut bob_on_b, &mut bob_on_c, &mut alice_on_c, &mut alice_on_a] {
            assert_eq!(next_of(socket, "message").await["data"]["id"], rest_id);
        }

        // By WebSocket on A: `sent` there, `message` everywhere else.
        send_frame(
            &mut alice_on_a,
            json!({"type": "send", "receiver_id": bob, "message": "by WebSocket", "client_message_id": "ws-1"}),
        )
        .await;
        let sent = next_of(&mut alice_on_a, "sent").await;
        let ws_id = sent["data"]["id"].as_i64().unwrap();
        assert!(ws_id > rest_id);
        for socket in [&mut bob_on_b, &mut bob_on_c, &mut alice_on_c] {
            assert_eq!(next_of(socket, "message").await["data"]["id"], ws_id);
        }

        // Receipts: Bob's device on B confirms delivery, then reads by REST on C.
        send_frame(&mut bob_on_b, json!({"type": "ack", "ids": [rest_id]})).await;
        for socket in [&mut alice_on_c, &mut alice_on_a] {
            let receipt = next_of(socket, "receipt").await;
            assert_eq!(receipt["data"]["id"], rest_id);
            assert_eq!(receipt["data"]["status"], "delivered");
        }
        let read = client
            .patch(format!("{}/api/chat/read/{rest_id}", c.base()))
            .bearer_auth(token(bob))
            .send()
            .await
            .unwrap();
        assert!(read.status().is_success(), "{}", read.status());
        let receipt = next_of(&mut alice_on_a, "receipt").await;
        assert_eq!(
            (receipt["data"]["id"].as_i64(), receipt["data"]["status"].as_str()),
            (Some(rest_id), Some("read"))
        );

        // Typing: Bob on C types to Alice, whose device on A hears it.
        send_frame(&mut bob_on_c, json!({"type": "typing", "receiver_id": alice})).await;
        assert_eq!(next_of(&mut alice_on_a, "typing").await["data"]["user_id"], bob);

        // One burst of five for a user whatever node the sends reach.
        let (carol, dave) = (3, 4);
        let mut statuses = HashMap::new();
        for n in 0..15 {
            let node = [&a, &b, &c][n % 3];
            let answer = send(&client, &node.base(), carol, dave, "burst", &format!("burst-{n}"))
                .await
                .unwrap();
            *statuses.entry(answer.status).or_insert(0) += 1;
        }
        assert_eq!(statuses, HashMap::from([(201, 5), (429, 10)]));

        // Alice holds two connections (C and A): a third, on B, is refused; once one
        // closes, B lets her in.
        assert_eq!(refusal(&b, alice).await, Some(429));
        alice_on_c.close(None).await.unwrap();
        drop(alice_on_c);
        let deadline = Instant::now() + ARRIVAL;
        while refusal(&b, alice).await.is_some() {
            assert!(Instant::now() < deadline, "the closed connection's place never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// The HTTP status a WebSocket handshake of `user` is refused with, or `None` when it
/// is accepted (and then closed again).
async fn refusal(server: &Server, user: i64) -> Option<u16> {
    let mut request = server.ws_url("").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(user)).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, _)) => {
            socket.close(None).await.unwrap();
            None
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Some(response.status().as_u16())
        }
        Err(error) => panic!("the handshake failed: {error}"),
    }
}

/// What each receiver saw, by message id.
type Seen = Arc<std::sync::Mutex<HashMap<i64, HashSet<i64>>>>;

/// Reads `socket` until `stop`, recording every `message` id for `user`; answers pings
/// by itself (tungstenite does).
fn record(
    mut socket: Socket,
    user: i64,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Socket> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(frame) = tokio::time::timeout(Duration::from_millis(100), socket.next()).await
            else {
                continue;
            };
            let Some(Ok(Message::Text(text))) = frame else {
                break;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] == "message" {
                let id = value["data"]["id"].as_i64().unwrap();
                seen.lock().unwrap().entry(user).or_default().insert(id);
            }
        }
        socket
    })
}

/// Waits until every receiver has seen every id it was sent.
async fn wait_all_seen(seen: &Seen, expected: &HashMap<i64, HashSet<i64>>) {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let missing: usize = {
            let seen = seen.lock().unwrap();
            expected
                .iter()
                .map(|(user, ids)| {
                    let got = seen.get(user);
                    ids.iter()
                        .filter(|id| got.is_none_or(|got| !got.contains(id)))
                        .count()
                })
                .sum()
        };
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis killed and started again while a node sends continuously to receivers on
/// another: every 201 message reaches its receiver, neither node restarts, `/ready`
/// shows the outage and its end, and live delivery comes back by itself.
/// `GET /api/chat/presence` of `users` as `caller` on `server`.
async fn presence(client: &reqwest::Client, server: &Server, caller: i64, users: &str) -> Value {
    client
        .get(format!(
            "{}/api/chat/presence?user_ids={users}",
            server.base()
        ))
        .bearer_auth(token(caller))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["data"]
        .clone()
}

/// A user connecting on one node is online to a watcher on another, and offline
/// after the grace once their last connection closed; the last-seen time is in the
/// store, so every node answers it.
#[test]
fn presence_crosses_nodes() {
    let _serial = serial();
    let (Some(postgres), Some(redis)) = (
        postgres_url(),
        chat_core::testing::service_url("CHAT_TEST_REDIS_URL"),
    ) else {
        return;
    };
    runtime().block_on(async {
        let database = Database::postgres(&postgres, "presence").await;
        let mut args = bus_args(&redis, "presence");
        args.extend(["--presence-grace-seconds", "1"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = Server::start(&database, &args).await;
        let b = Server::start(&database, &args).await;
        let client = http_client(ARRIVAL);
        wait_bus_up(&client, &[&a, &b]).await;
        let (alice, bob) = (11, 12);
        let sent = send(&client, &a.base(), alice, bob, "hi", "presence-1")
            .await
            .unwrap();
        assert_eq!(sent.status, 201, "{}", sent.body);

        let mut alice_on_a = connect(&a, alice, "").await;
        send_frame(&mut alice_on_a, json!({"type": "watch", "user_ids": [bob]})).await;
        let snapshot = next_of(&mut alice_on_a, "presence").await;
        assert_eq!(snapshot["data"][0]["online"], false);

        let bob_on_b = connect(&b, bob, "").await;
        let came = next_of(&mut alice_on_a, "presence").await;
        assert_eq!(came["data"][0]["user_id"], bob);
        assert_eq!(came["data"][0]["online"], true);
        assert_eq!(
            presence(&client, &a, alice, &bob.to_string()).await[0]["online"],
            true
        );

        drop(bob_on_b);
        let went = next_of(&mut alice_on_a, "presence").await;
        assert_eq!(went["data"][0]["online"], false);
        let seen = went["data"][0]["last_seen_at"].clone();
        assert!(seen.is_string(), "{went}");
        for node in [&a, &b] {
            let looked = presence(&client, node, alice, &bob.to_string()).await;
            assert_eq!(looked[0]["online"], false);
            assert_eq!(looked[0]["last_seen_at"], seen);
        }
        let rows: Value = client
            .get(format!("{}/api/chat/conversations", b.base()))
            .bearer_auth(token(alice))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows["data"][0]["user_id"], bob);
        assert_eq!(rows["data"][0]["last_seen_at"], seen);
    });
}

#[test]
fn a_redis_restart_loses_nothing_and_delivery_resumes() {
    let _serial = serial();
    let Some(postgres) = postgres_url() else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    runtime().block_on(async {
        let database = Database::postgres(&postgres, "redis_restart").await;
        let mut args = bus_args(&redis.url(), "restart");
        args.extend(NO_SEND_LIMIT.map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sender_node = Server::start(&database, &args).await;
        let receiver_node = Server::start(&database, &args).await;
        let client = http_client(ARRIVAL);
        wait_bus_up(&client, &[&sender_node, &receiver_node]).await;

        let receivers: Vec<i64> = (100..104).collect();
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for &user in &receivers {
            let socket = connect(&receiver_node, user, "").await;
            readers.push(record(socket, user, Arc::clone(&seen), Arc::clone(&stop)));
        }

        let mut expected: HashMap<i64, HashSet<i64>> = HashMap::new();
        let mut n = 0;
        let send_round = async |expected: &mut HashMap<i64, HashSet<i64>>, n: &mut usize| {
            for &to in &receivers {
                *n += 1;
                let answer = send(
                    &client,
                    &sender_node.base(),
                    1,
                    to,
                    "hello",
                    &format!("k-{n}"),
                )
                .await
                .unwrap();
                assert_eq!(answer.status, 201, "{}", answer.body);
                expected.entry(to).or_default().insert(answer.id.unwrap());
            }
        };

        // Live before the outage.
        for _ in 0..10 {
            send_round(&mut expected, &mut n).await;
        }
        wait_all_seen(&seen, &expected).await;

        let before_outage = n;
        redis.kill();
        let down = Instant::now() + ARRIVAL;
        loop {
            send_round(&mut expected, &mut n).await;
            let (a, b) = (
                ready(&client, &sender_node).await,
                ready(&client, &receiver_node).await,
            );
            if a["bus"] == "down" && b["bus"] == "down" {
                assert_eq!(
                    (a["status"].as_str(), a["store"].as_str()),
                    (Some("degraded"), Some("up"))
                );
                break;
            }
            assert!(
                Instant::now() < down,
                "/ready never showed the outage: {a} {b}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..10 {
            send_round(&mut expected, &mut n).await;
        }

        let during_outage = n - before_outage;
        redis.restart();
        let restarted = Instant::now();
        let up = Instant::now() + ARRIVAL;
        loop {
            send_round(&mut expected, &mut n).await;
            let (a, b) = (
                ready(&client, &sender_node).await,
                ready(&client, &receiver_node).await,
            );
            if a["status"] == "ready" && b["status"] == "ready" {
                break;
            }
            assert!(
                Instant::now() < up,
                "/ready never showed the end of the outage: {a} {b}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready_after = restarted.elapsed();
        // Everything sent so far arrives, the outage's messages through the store.
        wait_all_seen(&seen, &expected).await;

        // Live again: a new message arrives without any reconnect.
        let mut fresh = HashMap::new();
        let live = Instant::now();
        send_round(&mut fresh, &mut n).await;
        wait_all_seen(&seen, &fresh).await;
        eprintln!(
            "redis restart: {n} messages acknowledged and received ({during_outage} while Redis was away), \
             lost 0; both nodes ready {ready_after:?} after the restart; a new round of {} sends \
             received {:?} after it began",
            receivers.len(),
            live.elapsed()
        );

        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        assert_eq!((sender_node.starts(), receiver_node.starts()), (1, 1));
    });
}

/// A node killed with SIGKILL: its receivers reconnect to another node with `after_id`
/// and miss nothing that was acknowledged meanwhile.
#[test]
fn receivers_of_a_killed_node_resume_on_another() {
    let _serial = serial();
    let (Some(postgres), Some(redis)) = (
        postgres_url(),
        chat_core::testing::service_url("CHAT_TEST_REDIS_URL"),
    ) else {
        return;
    };
    runtime().block_on(async {
        let database = Database::postgres(&postgres, "node_kill").await;
        let mut args = bus_args(&redis, "kill");
        args.extend(NO_SEND_LIMIT.map(str::to_owned));
        args.extend(["--presence-ttl-seconds", "2"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sender_node = Server::start(&database, &args).await;
        let mut doomed = Server::start(&database, &args).await;
        let survivor = Server::start(&database, &args).await;
        let client = http_client(ARRIVAL);
        wait_bus_up(&client, &[&sender_node, &doomed, &survivor]).await;

        let receivers: Vec<i64> = (200..204).collect();
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for &user in &receivers {
            let socket = connect(&doomed, user, "").await;
            readers.push(record(socket, user, Arc::clone(&seen), Arc::clone(&stop)));
        }
        let mut expected: HashMap<i64, HashSet<i64>> = HashMap::new();
        let mut n = 0;
        let send_round = async |expected: &mut HashMap<i64, HashSet<i64>>, n: &mut usize| {
            for &to in &receivers {
                *n += 1;
                let answer = send(
                    &client,
                    &sender_node.base(),
                    1,
                    to,
                    "hello",
                    &format!("k-{n}"),
                )
                .await
                .unwrap();
                assert_eq!(answer.status, 201, "{}", answer.body);
                expected.entry(to).or_default().insert(answer.id.unwrap());
            }
        };
        for _ in 0..10 {
            send_round(&mut expected, &mut n).await;
        }
        wait_all_seen(&seen, &expected).await;

        let observer = RedisPresence::connect(
            &redis,
            &format!("chat-test-kill-{}", std::process::id()),
            Duration::from_secs(2),
        )
        .unwrap();
        let users: Vec<UserId> = receivers.iter().map(|&user| UserId::new(user)).collect();
        assert!(
            observer
                .lookup(&users)
                .await
                .unwrap()
                .iter()
                .all(|p| p.online)
        );

        doomed.kill9();
        let killed = Instant::now();
        // No ghosts: offline within the TTL (polled, with room for a busy machine).
        let deadline = Instant::now() + ARRIVAL;
        while observer
            .lookup(&users)
            .await
            .unwrap()
            .iter()
            .any(|p| p.online)
        {
            assert!(
                Instant::now() < deadline,
                "the killed node's users stayed online"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let offline_after = killed.elapsed();
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            let _ = reader.await;
        }
        // Sends go on while the receivers find another node.
        for _ in 0..10 {
            send_round(&mut expected, &mut n).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for &user in &receivers {
            let after = seen.lock().unwrap()[&user].iter().max().copied().unwrap();
            let socket = connect(&survivor, user, &format!("?after_id={after}")).await;
            readers.push(record(socket, user, Arc::clone(&seen), Arc::clone(&stop)));
        }
        for _ in 0..10 {
            send_round(&mut expected, &mut n).await;
        }
        wait_all_seen(&seen, &expected).await;
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        eprintln!(
            "node kill: its users offline {offline_after:?} after SIGKILL (TTL 2 s); {n} \
             messages acknowledged, {} of them after the kill, all received on the survivor \
             after resuming with after_id, lost 0",
            20 * receivers.len()
        );
    });
}

/// A node whose Redis cannot be reached at all keeps serving alone: its own
/// connections get live events, the connection limit holds on the node, `/ready` says
/// the bus is down, and nothing answers 5xx.
#[test]
fn a_node_without_its_redis_serves_its_own_connections() {
    let _serial = serial();
    runtime().block_on(async {
        let database = Database::sqlite();
        // Nothing listens on port 1.
        let node = Server::start(
            &database,
            &[
                "--redis-url",
                "redis://127.0.0.1:1",
                "--ws-max-connections-per-user",
                "2",
            ],
        )
        .await;
        let client = http_client(ARRIVAL);
        let (alice, bob) = (1, 2);
        let mut phone = connect(&node, bob, "").await;
        let _laptop = connect(&node, bob, "").await;
        assert_eq!(refusal(&node, bob).await, Some(429));

        let sent = send(&client, &node.base(), alice, bob, "no Redis", "k-1")
            .await
            .unwrap();
        assert_eq!(sent.status, 201, "{}", sent.body);
        assert_eq!(
            next_of(&mut phone, "message").await["data"]["id"],
            sent.id.unwrap()
        );

        let ready = client
            .get(format!("{}/ready", node.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(
            ready.json::<Value>().await.unwrap(),
            json!({"status": "degraded", "store": "up", "bus": "down"})
        );
        let metrics = client
            .get(format!("{}/metrics", node.base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !metrics.contains("chat_rate_limiter_fallbacks_total{limit=\"connections\"} 0"),
            "{metrics}"
        );
    });
}
