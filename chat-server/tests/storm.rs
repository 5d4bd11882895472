//! WebSocket delivery of the real binary under stress.
//!
//! - A reconnect storm: receivers drop their connections again and again (half with a
//!   close frame, half by dropping the TCP socket) and resume with `after_id` while
//!   concurrent HTTP senders write to them: every acknowledged message reaches its
//!   receiver, and none arrives twice.
//! - The path without a cursor: receivers acknowledge every message, close cleanly and
//!   reconnect without `after_id`: nothing acknowledged is sent again.
//! - A consumer that never reads: the server's memory stays bounded, it closes the
//!   connection soon after it stalls, and a resume with `after_id` delivers everything.
#![allow(clippy::unwrap_used)]

mod process;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use process::{Database, NO_SEND_LIMIT, Server, http_client, runtime, send, serial, token};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest any one HTTP request may take before the test counts it as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest the receivers may take to catch up once the senders are done.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Flags that let clients send frames (acks) as fast as they like.
const FAST_INBOUND: [&str; 4] = [
    "--ws-messages-per-second",
    "100000",
    "--ws-message-burst",
    "100000",
];

/// A small deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Opens a WebSocket as `user` with `query`; `None` when refused or failed (the caller
/// retries).
async fn connect(server_url: &str, user: i64) -> Result<Socket, String> {
    let mut request = server_url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(user)).parse().unwrap(),
    );
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            Err(format!("refused with {}", response.status()))
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("handshake timed out".to_owned()),
    }
}

/// The id of a `message` frame.
fn message_id(frame: &Message) -> Option<i64> {
    let Message::Text(text) = frame else {
        return None;
    };
    let value: Value = serde_json::from_str(text.as_str()).ok()?;
    (value["type"] == "message").then(|| value["data"]["id"].as_i64())?
}

/// Messages acknowledged (201) by the senders, by receiver: filled once the senders
/// are done, so receivers know when they have everything.
type Expected = Arc<OnceLock<HashMap<i64, HashSet<i64>>>>;

/// What one receiver saw over all its connections.
#[derive(Default, Debug)]
struct ReceiverLog {
    user: i64,
    seen: HashSet<i64>,
    duplicates: Vec<i64>,
    /// Ids that arrived below the highest id already received on the same connection.
    out_of_order: usize,
    connections: usize,
    clean_closes: usize,
    aborts: usize,
    /// Connections the server closed or refused (and why).
    server_ends: Vec<String>,
    /// Each connection's `after_id` and the message ids it delivered, in order.
    history: Vec<(i64, Vec<i64>)>,
}

impl ReceiverLog {
    fn complete(&self, expected: &Expected) -> bool {
        expected.get().is_some_and(|all| {
            all.get(&self.user)
                .is_none_or(|ids| ids.is_subset(&self.seen))
        })
    }

    /// Records a received message id; the highest id so far is the resume cursor.
    fn receive(&mut self, id: i64, connection_high: &mut i64) {
        if let Some((_, ids)) = self.history.last_mut() {
            ids.push(id);
        }
        if !self.seen.insert(id) {
            self.duplicates.push(id);
        }
        if id < *connection_high {
            self.out_of_order += 1;
        }
        *connection_high = (*connection_high).max(id);
    }
}

/// A receiver of the storm: connects with `after_id` = the highest id received, reads a
/// few messages or for a short while, then drops the connection (clean close or
/// abort, alternately), until it has every acknowledged message or time is up.
async fn storm_receiver(
    server: String,
    user: i64,
    expected: Expected,
    deadline: Arc<AtomicU64>,
    epoch: Instant,
) -> ReceiverLog {
    let mut log = ReceiverLog {
        user,
        ..ReceiverLog::default()
    };
    let mut rng = Rng::new(u64::try_from(user).unwrap());
    let mut cursor = 0_i64;
    // Bounded: a round lasts at least a few milliseconds, and the deadline ends it.
    for round in 0..5_000_u32 {
        let past_deadline = epoch.elapsed().as_millis() as u64 > deadline.load(Ordering::Relaxed);
        if log.complete(&expected) || past_deadline {
            break;
        }
        let mut socket = match connect(&format!("{server}?after_id={cursor}"), user).await {
            Ok(socket) => socket,
            Err(why) => {
                log.server_ends.push(why);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        log.connections += 1;
        log.history.push((cursor, Vec::new()));
        let budget = 1 + rng.below(40) as usize;
        let until = Instant::now() + Duration::from_millis(500 + rng.below(2_500));
        let mut high = cursor;
        let mut received = 0;
        let mut open = true;
        while received < budget {
            let Ok(frame) = tokio::time::timeout_at(until.into(), socket.next()).await else {
                break;
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Some(id) = message_id(&frame) {
                        log.receive(id, &mut high);
                        received += 1;
                    } else if let Message::Close(close) = frame {
                        log.server_ends
                            .push(format!("closed by the server: {close:?}"));
                        open = false;
                        break;
                    }
                }
                Some(Err(error)) => {
                    log.server_ends.push(error.to_string());
                    open = false;
                    break;
                }
                None => {
                    open = false;
                    break;
                }
            }
        }
        if open && (round + u32::try_from(user).unwrap()) % 2 == 0 {
            // A clean close: what arrives before the server's close frame still counts.
            log.clean_closes += 1;
            let _ = socket.close(None).await;
            let drain = async {
                while let Some(Ok(frame)) = socket.next().await {
                    if let Some(id) = message_id(&frame) {
                        log.receive(id, &mut high);
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        } else if open {
            // An abort: the TCP socket is dropped without a close frame.
            log.aborts += 1;
            drop(socket);
        }
        cursor = cursor.max(high);
    }
    log
}

/// Sends `count` messages from `sender` to receivers chosen at random among
/// `receivers`, so concurrent senders often write to the same receiver; returns the
/// acknowledged (receiver, id) pairs. Any answer but 201 fails the test.
async fn storm_sender(
    client: reqwest::Client,
    base: String,
    sender: i64,
    receivers: &'static [i64],
    count: usize,
    prefix: &'static str,
) -> Vec<(i64, i64)> {
    let mut rng = Rng::new(u64::try_from(sender).unwrap() * 7919);
    let mut acknowledged = Vec::with_capacity(count);
    for n in 0..count {
        let receiver = receivers[rng.below(receivers.len() as u64) as usize];
        let key = format!("{prefix}{sender}-{n}");
        let answer = send(
            &client,
            &base,
            sender,
            receiver,
            &format!("storm {key}"),
            &key,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 201, "send {key}: {}", answer.body);
        acknowledged.push((receiver, answer.id.unwrap()));
    }
    acknowledged
}

/// Runs `senders` concurrent senders of `per_sender` messages each to `receivers`;
/// returns the acknowledged ids by receiver and how long the sends took.
async fn send_all(
    server: &Server,
    senders: std::ops::RangeInclusive<i64>,
    receivers: &'static [i64],
    per_sender: usize,
    prefix: &'static str,
) -> (HashMap<i64, HashSet<i64>>, Duration) {
    let started = Instant::now();
    let client = http_client(REQUEST_TIMEOUT);
    let tasks: Vec<_> = senders
        .map(|sender| {
            tokio::spawn(storm_sender(
                client.clone(),
                server.base(),
                sender,
                receivers,
                per_sender,
                prefix,
            ))
        })
        .collect();
    let mut by_receiver: HashMap<i64, HashSet<i64>> = HashMap::new();
    for task in tasks {
        for (receiver, id) in task.await.unwrap() {
            by_receiver.entry(receiver).or_default().insert(id);
        }
    }
    (by_receiver, started.elapsed())
}

fn users(range: std::ops::RangeInclusive<i64>) -> &'static [i64] {
    Box::leak(range.collect::<Vec<_>>().into_boxed_slice())
}

/// Receivers in the storm.
const STORM_RECEIVERS: i64 = 200;
/// Concurrent HTTP senders in the storm.
const STORM_SENDERS: i64 = 20;
/// Messages each storm sender sends: 20,000 in all.
const STORM_PER_SENDER: usize = 1_000;

#[test]
fn a_reconnect_storm_loses_nothing_and_duplicates_nothing() {
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        let database = Database::sqlite();
        let flags = [&NO_SEND_LIMIT[..], &FAST_INBOUND[..]].concat();
        let server = Server::start(&database, &flags).await;
        let receivers = users(1..=STORM_RECEIVERS);
        let expected: Expected = Arc::new(OnceLock::new());
        // Milliseconds since `started` after which receivers give up.
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let receiver_tasks: Vec<_> = receivers
            .iter()
            .map(|&user| {
                tokio::spawn(storm_receiver(
                    server.ws_url(""),
                    user,
                    Arc::clone(&expected),
                    Arc::clone(&deadline),
                    started,
                ))
            })
            .collect();
        let (acknowledged, send_time) = send_all(
            &server,
            10_001..=10_000 + STORM_SENDERS,
            receivers,
            STORM_PER_SENDER,
            "storm",
        )
        .await;
        let total: usize = acknowledged.values().map(HashSet::len).sum();
        expected.set(acknowledged.clone()).unwrap();
        deadline.store(
            (started.elapsed() + CATCH_UP).as_millis() as u64,
            Ordering::Relaxed,
        );
        let catch_up = Instant::now();
        let mut logs = Vec::new();
        for task in receiver_tasks {
            logs.push(task.await.unwrap());
        }
        let catch_up = catch_up.elapsed();

        let mut lost = Vec::new();
        for log in &logs {
            if let Some(ids) = acknowledged.get(&log.user) {
                lost.extend(ids.difference(&log.seen).map(|id| (log.user, *id)));
            }
        }
        let duplicates: Vec<(i64, i64)> = logs
            .iter()
            .flat_map(|l| l.duplicates.iter().map(|id| (l.user, *id)))
            .collect();
        let connections: usize = logs.iter().map(|l| l.connections).sum();
        let clean: usize = logs.iter().map(|l| l.clean_closes).sum();
        let aborts: usize = logs.iter().map(|l| l.aborts).sum();
        let out_of_order: usize = logs.iter().map(|l| l.out_of_order).sum();
        let server_ends: Vec<&String> = logs.iter().flat_map(|l| &l.server_ends).collect();
        println!(
            "reconnect storm: {total} messages acknowledged from {STORM_SENDERS} HTTP senders \
             in {send_time:.1?} to {STORM_RECEIVERS} receivers over {connections} connections \
             ({clean} clean closes, {aborts} aborts, {} ended or refused by the server); \
             lost {}, duplicates {}, out of order {out_of_order}; caught up {catch_up:.1?} \
             after the last send; {:.1?} in all",
            server_ends.len(),
            lost.len(),
            duplicates.len(),
            started.elapsed()
        );
        for (user, id) in lost.iter().chain(&duplicates).take(10) {
            eprintln!(
                "{}",
                explain(&logs[usize::try_from(*user).unwrap() - 1], *id)
            );
        }
        assert_eq!(total, STORM_SENDERS as usize * STORM_PER_SENDER);
        // Live messages that arrive below an id already received on the same connection
        // are what a resume after the highest id skips (the connections above show it).
        assert!(
            lost.is_empty(),
            "acknowledged messages never delivered: {lost:?}; {out_of_order} messages arrived \
             below an id already received on their connection"
        );
        assert!(
            duplicates.is_empty(),
            "messages delivered twice to one receiver: {duplicates:?}"
        );
        assert!(
            clean > 0 && aborts > 0,
            "the storm needs both clean closes and aborts"
        );
        assert!(
            connections >= 2 * STORM_RECEIVERS as usize,
            "receivers did not reconnect"
        );
        drop(server);
    });
}

/// The connections of `log` around message `id`: which delivered it, and where the
/// resume cursor passed it.
fn explain(log: &ReceiverLog, id: i64) -> String {
    let mut lines = vec![format!("receiver {}, message {id}:", log.user)];
    for (n, (after, ids)) in log.history.iter().enumerate() {
        let delivered = ids.contains(&id);
        let skipped = *after >= id && n > 0 && log.history[n - 1].0 < id;
        if delivered || skipped {
            lines.push(format!(
                "  connection {n} after_id={after}: {ids:?}{}",
                if delivered {
                    ""
                } else {
                    " (cursor already past it)"
                }
            ));
            if skipped {
                let (after, ids) = &log.history[n - 1];
                lines.push(format!("  previous connection after_id={after}: {ids:?}"));
            }
        }
    }
    lines.join("\n")
}

/// Receivers of the path without a cursor.
const ACK_RECEIVERS: i64 = 20;
/// Senders and messages of the path without a cursor: 2,000 in all.
const ACK_SENDERS: i64 = 10;
const ACK_PER_SENDER: usize = 200;

/// What one acknowledging receiver saw.
#[derive(Default)]
struct AckLog {
    user: i64,
    /// Ids this receiver sent `ack` for, before closing the connection they came on.
    acknowledged: HashSet<i64>,
    /// Ids received again on a later connection after being acknowledged.
    resent: Vec<i64>,
    seen: HashSet<i64>,
    connections: usize,
}

/// Connects without `after_id`, acknowledges every message as it arrives, closes
/// cleanly after a few, and reconnects, until it has every message or time is up.
async fn acking_receiver(
    server: String,
    user: i64,
    expected: Expected,
    stop: Arc<AtomicBool>,
) -> AckLog {
    let mut log = AckLog {
        user,
        ..AckLog::default()
    };
    let mut rng = Rng::new(u64::try_from(user).unwrap() + 77);
    for _ in 0..5_000 {
        let complete = expected
            .get()
            .is_some_and(|all| all.get(&user).is_none_or(|ids| ids.is_subset(&log.seen)));
        if complete || stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut socket) = connect(&server, user).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        log.connections += 1;
        let budget = 1 + rng.below(20) as usize;
        let until = Instant::now() + Duration::from_millis(100 + rng.below(400));
        let mut acked_here = Vec::new();
        let mut open = true;
        while acked_here.len() < budget {
            let Ok(frame) = tokio::time::timeout_at(until.into(), socket.next()).await else {
                break;
            };
            let Some(Ok(frame)) = frame else {
                open = false;
                break;
            };
            let Some(id) = message_id(&frame) else {
                continue;
            };
            if log.acknowledged.contains(&id) {
                log.resent.push(id);
            }
            log.seen.insert(id);
            if socket
                .send(Message::text(
                    json!({"type": "ack", "ids": [id]}).to_string(),
                ))
                .await
                .is_err()
            {
                open = false;
                break;
            }
            acked_here.push(id);
        }
        if !open {
            // The acks may not have reached the server: they do not count.
            continue;
        }
        // The server handles frames in order, so these acks are stored before it sees
        // the close frame.
        let _ = socket
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        let drain = async {
            while let Some(Ok(frame)) = socket.next().await {
                if let Some(id) = message_id(&frame) {
                    if log.acknowledged.contains(&id) {
                        log.resent.push(id);
                    }
                    log.seen.insert(id);
                }
            }
        };
        let closed = tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_ok();
        if closed {
            log.acknowledged.extend(acked_here);
        }
    }
    log
}

#[test]
fn without_a_cursor_nothing_acknowledged_is_sent_again() {
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        let database = Database::sqlite();
        let flags = [&NO_SEND_LIMIT[..], &FAST_INBOUND[..]].concat();
        let server = Server::start(&database, &flags).await;
        let receivers = users(1..=ACK_RECEIVERS);
        let expected: Expected = Arc::new(OnceLock::new());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = receivers
            .iter()
            .map(|&user| {
                tokio::spawn(acking_receiver(
                    server.ws_url(""),
                    user,
                    Arc::clone(&expected),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        let (acknowledged, send_time) = send_all(
            &server,
            20_001..=20_000 + ACK_SENDERS,
            receivers,
            ACK_PER_SENDER,
            "ack",
        )
        .await;
        expected.set(acknowledged.clone()).unwrap();
        let stopper = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                tokio::time::sleep(CATCH_UP).await;
                stop.store(true, Ordering::Relaxed);
            })
        };
        let mut logs = Vec::new();
        for task in tasks {
            logs.push(task.await.unwrap());
        }
        stopper.abort();
        let total: usize = acknowledged.values().map(HashSet::len).sum();
        let resent: Vec<(i64, i64)> = logs
            .iter()
            .flat_map(|l| l.resent.iter().map(|id| (l.user, *id)))
            .collect();
        let mut lost = Vec::new();
        for log in &logs {
            if let Some(ids) = acknowledged.get(&log.user) {
                lost.extend(ids.difference(&log.seen).map(|id| (log.user, *id)));
            }
        }
        let connections: usize = logs.iter().map(|l| l.connections).sum();
        let acked: usize = logs.iter().map(|l| l.acknowledged.len()).sum();
        println!(
            "no cursor: {total} messages from {ACK_SENDERS} senders in {send_time:.1?} to \
             {ACK_RECEIVERS} receivers over {connections} connections, {acked} acknowledged \
             before a clean close; resent after ack {}, lost {}; {:.1?} in all",
            resent.len(),
            lost.len(),
            started.elapsed()
        );
        assert!(
            resent.is_empty(),
            "acknowledged messages sent again: {resent:?}"
        );
        assert!(lost.is_empty(), "messages never delivered: {lost:?}");
        assert!(
            connections >= 2 * ACK_RECEIVERS as usize,
            "receivers did not reconnect"
        );
        drop(server);
    });
}

/// Messages sent to the consumer that never reads.
const SLOW_MESSAGES: usize = 50_000;
/// WebSocket connections sending them, each its own user.
const SLOW_SENDERS: i64 = 4;
/// Frames each sender writes before it reads their answers.
const SEND_WINDOW: usize = 100;
/// The consumer's notifier queue (`--ws-outbound-queue`, the default).
const OUTBOUND_QUEUE: &str = "256";
/// Characters of each message: large enough that holding every message for the
/// consumer (about 50 MiB of frames) would stand out far above the bound below.
const SLOW_TEXT_CHARS: usize = 1_000;
/// The consumer's receive buffer: small, so the server's writes block soon.
const SLOW_RECV_BUFFER: u32 = 4_096;
/// How much the server's resident memory may grow over its warmed-up level while the
/// consumer stalls. One stalled connection holds at most its notifier queue (256
/// events of ~1.3 KiB: ~0.3 MiB) and its WebSocket write buffer (1 MiB); the socket
/// buffers are kernel memory, outside the RSS. The rest is slack for the allocator and
/// SQLite's page caches growing with 50,000 stored rows. Buffering every message for the
/// consumer would take more than 50 MiB.
const RSS_GROWTH_BOUND_KIB: u64 = 24 * 1024;
/// Longest the server may keep a stalled consumer: the write timeout (5 s) plus
/// scheduling slack in a debug build on a loaded machine.
const STALL_CLOSE_BOUND: Duration = Duration::from_secs(10);

type PlainSocket = WebSocketStream<TcpStream>;

/// Sends `count` messages from `sender` to `receiver` over a WebSocket, [`SEND_WINDOW`]
/// frames at a time; returns every acknowledged id with the time it was acknowledged,
/// and the connection, still open.
async fn ws_sender(
    mut socket: Socket,
    sender: i64,
    receiver: i64,
    count: usize,
    prefix: &'static str,
) -> (Vec<(i64, Instant)>, Socket) {
    let text = "x".repeat(SLOW_TEXT_CHARS);
    let mut acknowledged = Vec::with_capacity(count);
    let mut n = 0;
    while n < count {
        let window = SEND_WINDOW.min(count - n);
        for k in n..n + window {
            let frame = json!({
                "type": "send",
                "receiver_id": receiver,
                "message": text,
                "client_message_id": format!("{prefix}{sender}-{k}"),
            });
            socket.feed(Message::text(frame.to_string())).await.unwrap();
        }
        socket.flush().await.unwrap();
        let mut answered = 0;
        while answered < window {
            let frame = tokio::time::timeout(REQUEST_TIMEOUT, socket.next())
                .await
                .expect("no answer to a send within the request timeout")
                .expect("the sender's connection closed")
                .unwrap();
            let Message::Text(text) = frame else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            match value["type"].as_str() {
                Some("sent") => {
                    acknowledged.push((value["data"]["id"].as_i64().unwrap(), Instant::now()));
                    answered += 1;
                }
                Some("error") => panic!("send refused: {value}"),
                _ => {}
            }
        }
        n += window;
    }
    (acknowledged, socket)
}

/// Opens a WebSocket as `user` over a socket with a small receive buffer, and never
/// reads it.
async fn stalled_consumer(server: &Server, user: i64) -> PlainSocket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SLOW_RECV_BUFFER).unwrap();
    let stream = socket.connect(server.address()).await.unwrap();
    let mut request = server.ws_url("").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(user)).parse().unwrap(),
    );
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    socket
}

#[test]
fn a_consumer_that_never_reads_is_closed_and_memory_stays_bounded() {
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        let database = Database::sqlite();
        let flags = [
            &NO_SEND_LIMIT[..],
            &FAST_INBOUND[..],
            &["--ws-outbound-queue", OUTBOUND_QUEUE],
        ]
        .concat();
        let server = Server::start(&database, &flags).await;
        let client = http_client(REQUEST_TIMEOUT);
        let consumer = 1;

        // Warm up: the same traffic to another user, so the allocator and the store's
        // caches reach their working size before the baseline is taken.
        let mut warm = Vec::new();
        for s in 0..SLOW_SENDERS {
            let socket = connect(&server.ws_url(""), 2 + s).await.unwrap();
            warm.push(tokio::spawn(ws_sender(socket, 2 + s, 99, 1_000, "warm")));
        }
        for task in warm {
            let (_, mut socket) = task.await.unwrap();
            let _ = socket.close(None).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let baseline = server.rss_kib();
        // The senders connect first, so the consumer is the one connection above this
        // count until the server lets it go.
        let mut sender_sockets = Vec::new();
        for s in 0..SLOW_SENDERS {
            sender_sockets.push(connect(&server.ws_url(""), 2 + s).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let connections_before = server
            .metric(&client, "chat_websocket_connections")
            .await
            .expect("chat_websocket_connections on /metrics");

        let mut stalled = stalled_consumer(&server, consumer).await;
        let send_start = Instant::now();
        let pid = server.pid();
        let sending = Arc::new(AtomicBool::new(true));
        // Peak RSS and the moment the server let go of the consumer.
        let watcher = {
            let sending = Arc::clone(&sending);
            let client = client.clone();
            let base = server.base();
            tokio::spawn(async move {
                let mut peak = 0_u64;
                let mut closed_at = None;
                let mut opened = false;
                // While the senders send, and until the consumer is closed (bounded).
                for _ in 0..20_000 {
                    if !sending.load(Ordering::Relaxed) && closed_at.is_some() {
                        break;
                    }
                    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                    let rss: u64 = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap();
                    peak = peak.max(rss);
                    if closed_at.is_none() {
                        let text = client.get(format!("{base}/metrics")).send().await;
                        let gauge = match text {
                            Ok(answer) => answer.text().await.ok().and_then(|t| {
                                t.lines().find_map(|l| {
                                    l.strip_prefix("chat_websocket_connections ")
                                        .and_then(|v| v.trim().parse::<f64>().ok())
                                })
                            }),
                            Err(_) => None,
                        };
                        if let Some(gauge) = gauge {
                            if gauge > connections_before {
                                opened = true;
                            }
                            if opened && gauge <= connections_before {
                                closed_at = Some(Instant::now());
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (peak, closed_at)
            })
        };
        let senders: Vec<_> = (0..SLOW_SENDERS)
            .zip(sender_sockets)
            .map(|(s, socket)| {
                tokio::spawn(ws_sender(
                    socket,
                    2 + s,
                    consumer,
                    SLOW_MESSAGES / SLOW_SENDERS as usize,
                    "slow",
                ))
            })
            .collect();
        let mut acknowledged: Vec<(i64, Instant)> = Vec::new();
        let mut open_senders = Vec::new();
        for task in senders {
            let (ids, socket) = task.await.unwrap();
            acknowledged.extend(ids);
            open_senders.push(socket);
        }
        let send_time = send_start.elapsed();
        sending.store(false, Ordering::Relaxed);
        let (peak, closed_at) = tokio::time::timeout(Duration::from_secs(30), watcher)
            .await
            .expect("the server kept the stalled consumer 30 s after the last send")
            .unwrap();
        for mut socket in open_senders {
            let _ = socket.close(None).await;
        }
        acknowledged.sort_unstable_by_key(|(id, _)| *id);

        // What the stalled connection got before the server let it go.
        let mut first_ids = Vec::new();
        let mut close_code = None;
        let drain = async {
            while let Some(frame) = stalled.next().await {
                match frame {
                    Ok(Message::Close(frame)) => {
                        close_code = frame.map(|f| u16::from(f.code));
                        break;
                    }
                    Ok(frame) => first_ids.extend(message_id(&frame)),
                    Err(_) => break,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), drain)
            .await
            .expect("the stalled connection was never closed by the server");
        drop(stalled);

        // The stall began when the first message the connection did not deliver was
        // published (just before its acknowledgement).
        let delivered: HashSet<i64> = first_ids.iter().copied().collect();
        let stall = acknowledged
            .iter()
            .find(|(id, _)| !delivered.contains(id))
            .map(|(_, at)| *at)
            .expect("the consumer received everything without reading");
        let closed_at = closed_at.expect("the server kept the stalled consumer until the end");
        let close_delay = closed_at.saturating_duration_since(stall);

        // Resume after the highest id received: everything else arrives.
        let cursor = first_ids.iter().copied().max().unwrap_or(0);
        let expected: HashSet<i64> = acknowledged.iter().map(|(id, _)| *id).collect();
        let mut seen = delivered.clone();
        let mut duplicates = 0;
        let resume_start = Instant::now();
        let mut resumed = connect(&server.ws_url(&format!("?after_id={cursor}")), consumer)
            .await
            .unwrap();
        while !expected.is_subset(&seen) {
            let Ok(Some(Ok(frame))) =
                tokio::time::timeout(Duration::from_secs(10), resumed.next()).await
            else {
                break;
            };
            if let Some(id) = message_id(&frame)
                && !seen.insert(id)
            {
                duplicates += 1;
            }
        }
        let resume_time = resume_start.elapsed();
        let lost = expected.difference(&seen).count();
        let growth = peak.saturating_sub(baseline);
        println!(
            "slow consumer: {} messages of {SLOW_TEXT_CHARS} characters from {SLOW_SENDERS} \
             WebSocket senders in {send_time:.1?}; the stalled connection delivered {} and was \
             closed ({close_code:?}, or dropped) {close_delay:.1?} after it stalled; RSS \
             baseline {} MiB, peak {} MiB, growth {} KiB (bound {} KiB); resume after_id={cursor} \
             delivered the remaining {} in {resume_time:.1?}: lost {lost}, duplicates \
             {duplicates}; {:.1?} in all",
            acknowledged.len(),
            first_ids.len(),
            baseline / 1024,
            peak / 1024,
            growth,
            RSS_GROWTH_BOUND_KIB,
            expected.len() - first_ids.len(),
            started.elapsed()
        );
        assert_eq!(acknowledged.len(), SLOW_MESSAGES);
        assert!(
            growth <= RSS_GROWTH_BOUND_KIB,
            "the server grew by {growth} KiB while a consumer stalled (bound \
             {RSS_GROWTH_BOUND_KIB} KiB)"
        );
        assert!(
            close_code.is_none_or(|code| code == 4008),
            "closed with {close_code:?}, not 4008"
        );
        assert!(
            close_delay <= STALL_CLOSE_BOUND,
            "the stalled consumer was closed {close_delay:?} after it stalled"
        );
        assert_eq!(lost, 0, "messages missing after the resume");
        assert_eq!(duplicates, 0, "messages delivered twice");
        drop(server);
    });
}
