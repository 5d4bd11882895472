//! `pusher`: Pusher connections (protocol 7, as pusher-js speaks it), each subscribed to
//! its `private-chat.{user}` channel: the server's memory per idle connection; then
//! events published through the HTTP API (`POST /apps/{id}/events`) to one channel
//! many of them joined, and the latency from the POST to each arrival.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_transport_pusher::signature::{authorize_channel, sign_api_request};
use chat_transport_pusher::{ChannelName, PusherApp, SocketId};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::idle::server_connections;
use crate::clients::{Socket, Target, quantile, rss_kib};
use crate::report::Report;

/// The channel the latency subscribers share.
const FANOUT_CHANNEL: &str = "bench-fanout";

/// Options of `pusher`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connections to open (one user each), each subscribed to its private-chat channel.
    #[arg(long, default_value_t = 15_000)]
    connections: usize,
    /// The server's process id, to read its memory.
    #[arg(long)]
    pid: Option<u32>,
    /// The Pusher app id, key and secret of the server.
    #[arg(long, default_value = "chat-bench")]
    app_id: String,
    #[arg(long, default_value = "chat-bench-key")]
    app_key: String,
    #[arg(long, default_value = "chat-bench-secret")]
    app_secret: String,
    /// Connections (of the ones opened) that also join the fan-out channel.
    #[arg(long, default_value_t = 5_000)]
    subscribers: usize,
    /// Events published to the fan-out channel, one at a time.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Time between two events: they are published at this fixed rate, each `POST`
    /// on its own, whether or not the previous one was answered.
    #[arg(long, default_value_t = 50)]
    event_interval_ms: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait after the last subscription before measuring memory.
    #[arg(long, default_value_t = 3)]
    settle_seconds: u64,
    /// The first simulated user id.
    #[arg(long, default_value_t = 5_000_000)]
    first_user: i64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
}

/// One open connection: its socket id, and its socket until a reader takes it.
struct Opened {
    socket_id: SocketId,
    socket: Socket,
}

async fn next_text(socket: &mut Socket) -> Result<Value, String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).map_err(|e| e.to_string());
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("closed".to_owned()),
        }
    }
}

/// Waits for `event` on the socket, skipping anything else.
async fn expect(socket: &mut Socket, event: &str) -> Result<Value, String> {
    loop {
        let frame = next_text(socket).await?;
        if frame["event"] == event {
            return Ok(frame);
        }
        if frame["event"] == "pusher:subscription_error" || frame["event"] == "pusher:error" {
            return Err(format!("{frame}"));
        }
    }
}

/// Subscribes to `channel` (signing it if it is private) and waits for the answer.
async fn subscribe(
    socket: &mut Socket,
    app: &PusherApp,
    socket_id: &SocketId,
    channel: &str,
) -> Result<(), String> {
    let name: ChannelName = channel.parse().map_err(|e| format!("{e}"))?;
    let auth = channel
        .starts_with("private-")
        .then(|| authorize_channel(app, socket_id, &name, None));
    let frame = serde_json::json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": auth },
    });
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| e.to_string())?;
    expect(socket, "pusher_internal:subscription_succeeded")
        .await
        .map(drop)
}

async fn open(target: &Target, app: &PusherApp, user: i64, n: usize) -> Result<Opened, String> {
    let path = format!(
        "/app/{}?protocol=7&client=chat-bench&version=8.6.0",
        app.key()
    );
    let mut socket = target.websocket_path(&path, None, n).await?;
    let established = expect(&mut socket, "pusher:connection_established").await?;
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let socket_id: SocketId = data["socket_id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("{e}"))?;
    subscribe(
        &mut socket,
        app,
        &socket_id,
        &format!("private-chat.{user}"),
    )
    .await?;
    Ok(Opened { socket_id, socket })
}

/// Reads frames until the connection ends, reporting when each fan-out event arrives
/// (answering the server's pings, as pusher-js does).
fn reader(
    mut socket: Socket,
    arrivals: Option<mpsc::UnboundedSender<(u64, Instant)>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let now = Instant::now();
            let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if frame["event"] == "pusher:ping" {
                let pong = r#"{"event":"pusher:pong","data":{}}"#;
                if socket.send(Message::Text(pong.into())).await.is_err() {
                    return;
                }
                continue;
            }
            let number = frame["data"]
                .as_str()
                .and_then(|data| serde_json::from_str::<Value>(data).ok())
                .and_then(|data| data["n"].as_u64());
            if let (Some(arrivals), Some(number)) = (&arrivals, number)
                && frame["event"] == "bench"
                && arrivals.send((number, now)).is_err()
            {
                return;
            }
        }
    })
}

pub(crate) async fn run(target: &Target, args: &Args) -> Result<Report, String> {
    let app =
        PusherApp::new(&args.app_id, &args.app_key, &args.app_secret).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let before = args.pid.map(rss_kib).transpose()?;
    let started = Instant::now();
    let mut opening = stream::iter(0..args.connections)
        .map(|n| open(target, &app, args.first_user + n as i64, n))
        .buffered(args.concurrency.max(1));
    let mut opened = Vec::with_capacity(args.connections);
    while let Some(connection) = opening.next().await {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} connections opened in time",
                opened.len(),
                args.connections
            ));
        }
        opened.push(connection?);
    }
    drop(opening);
    let open_seconds = started.elapsed().as_secs_f64();
    let subscribers = args.subscribers.min(opened.len());
    // Idle while the memory is measured: read by tasks that answer pings.
    let mut idle = Vec::new();
    let mut fanout = Vec::new();
    for (n, connection) in opened.into_iter().enumerate() {
        if n < subscribers {
            fanout.push(connection);
        } else {
            idle.push(reader(connection.socket, None));
        }
    }
    // The fan-out subscribers are not read meanwhile; they are idle too.
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
    let after = args.pid.map(rss_kib).transpose()?;
    let reported = server_connections(target).await;

    // Latency: the subscribers join one channel, then events are published to it.
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let joined: Vec<Result<Socket, String>> = stream::iter(fanout)
        .map(|mut connection| {
            let app = &app;
            async move {
                subscribe(
                    &mut connection.socket,
                    app,
                    &connection.socket_id,
                    FANOUT_CHANNEL,
                )
                .await?;
                Ok(connection.socket)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    for socket in joined {
        idle.push(reader(socket?, Some(arrivals_tx.clone())));
    }
    drop(arrivals_tx);
    let publishing = publish(target, &app, args).await?;
    let published: HashMap<u64, Instant> = publishing
        .iter()
        .map(|&(number, sent, _)| (number, sent))
        .collect();
    let mut publish_ms: Vec<f64> = publishing.iter().map(|&(_, _, ms)| ms).collect();
    let event_rate = match (publishing.first(), publishing.last()) {
        (Some(first), Some(last)) if publishing.len() > 1 => {
            (publishing.len() - 1) as f64 / last.1.duration_since(first.1).as_secs_f64()
        }
        _ => f64::NAN,
    };
    let expected = args.events * subscribers;
    let mut latencies = Vec::with_capacity(expected);
    let wait_until = Instant::now() + Duration::from_secs(10);
    while latencies.len() < expected {
        match tokio::time::timeout_at(wait_until.into(), arrivals.recv()).await {
            Ok(Some((number, at))) => {
                if let Some(sent) = published.get(&number) {
                    latencies.push(at.duration_since(*sent).as_secs_f64() * 1000.0);
                }
            }
            _ => break,
        }
    }
    latencies.sort_by(f64::total_cmp);
    publish_ms.sort_by(f64::total_cmp);

    let mut report = Report::new("pusher");
    report.add("connections", args.connections, "");
    report.add(
        "connections reported by the server",
        reported.unwrap_or(-1),
        "",
    );
    report.add("time to open and subscribe", open_seconds, "s");
    report.memory_per_connection(before, after, args.connections);
    report.add("fan-out subscribers", subscribers, "");
    report.add("events published", args.events, "");
    report.add("event rate", event_rate, "events/s");
    report.add("arrivals expected", expected, "");
    report.add("arrivals", latencies.len(), "");
    report.add("POST answered p50", quantile(&publish_ms, 0.5), "ms");
    report.add("publish to arrival p50", quantile(&latencies, 0.5), "ms");
    report.add("publish to arrival p99", quantile(&latencies, 0.99), "ms");
    report.add(
        "publish to arrival max",
        latencies.last().copied().unwrap_or(f64::NAN),
        "ms",
    );
    for task in idle {
        task.abort();
    }
    Ok(report)
}

/// Publishes `args.events` events to the fan-out channel, one every
/// `args.event_interval_ms`, each `POST` in a task of its own. Returns each event's
/// number, when its `POST` was sent, and how long the answer took (ms), in order.
async fn publish(
    target: &Target,
    app: &PusherApp,
    args: &Args,
) -> Result<Vec<(u64, Instant, f64)>, String> {
    let http = Target::http(0)?;
    let path = format!("/apps/{}/events", app.id());
    let mut ticks = tokio::time::interval(Duration::from_millis(args.event_interval_ms.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(args.events);
    for number in 0..args.events as u64 {
        ticks.tick().await;
        let body = serde_json::json!({
            "name": "bench",
            "channel": FANOUT_CHANNEL,
            "data": serde_json::json!({ "n": number }).to_string(),
        })
        .to_string();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signed = sign_api_request(app, "POST", &path, &[], body.as_bytes(), now);
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &signed {
            query.append_pair(name, value);
        }
        let url = format!("{}{path}?{}", target.base, query.finish());
        let http = http.clone();
        posts.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let answered = sent.elapsed().as_secs_f64() * 1000.0;
            if !response.status().is_success() {
                return Err(format!("POST answered {}", response.status()));
            }
            Ok((number, sent, answered))
        }));
    }
    let mut published = Vec::with_capacity(posts.len());
    for post in posts {
        published.push(post.await.map_err(|e| e.to_string())??);
    }
    Ok(published)
}
