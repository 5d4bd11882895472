//! `idle`: many idle WebSocket connections; the server's memory per connection.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};

use super::limits::hold_until_closed;
use crate::clients::{Socket, Target, rss_kib};
use crate::report::Report;

/// Options of `idle`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connections to open (one user each).
    #[arg(long, default_value_t = 15_000)]
    connections: usize,
    /// The server's process id, to read its memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait after the last handshake before measuring.
    #[arg(long, default_value_t = 3)]
    settle_seconds: u64,
    /// The first simulated user id.
    #[arg(long, default_value_t = 1_000_000)]
    first_user: i64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Plain TCP connections with no handshake, for a bare server such as
    /// `chat-bench hold`: what a connection costs before any protocol.
    #[arg(long)]
    raw: bool,
}

/// Opens `count` WebSockets for users `first_user..`, `concurrency` at a time, each
/// read by a task of its own (which answers the server's pings). Returns the tasks.
pub(crate) async fn open_many(
    target: &Target,
    first_user: i64,
    count: usize,
    query: &str,
    concurrency: usize,
    deadline: Instant,
    on_socket: impl Fn(Socket) -> tokio::task::JoinHandle<()>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let tokens: Vec<String> = (0..count)
        .map(|n| target.token(first_user + n as i64))
        .collect::<Result<_, _>>()?;
    let opened = stream::iter(tokens.iter().enumerate())
        .map(|(n, token)| target.websocket_at(first_user + n as i64, token, n, query))
        .buffer_unordered(concurrency.max(1));
    hold_each(opened, count, deadline, on_socket).await
}

/// Hands each connection `opened` yields to `hold` as it opens; fails on the first
/// that could not open, or when `deadline` passes first.
async fn hold_each<C>(
    opened: impl futures_util::Stream<Item = Result<C, String>>,
    count: usize,
    deadline: Instant,
    hold: impl Fn(C) -> tokio::task::JoinHandle<()>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut opened = std::pin::pin!(opened);
    let mut tasks = Vec::with_capacity(count);
    while let Some(connection) = opened.next().await {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {count} connections opened in time",
                tasks.len()
            ));
        }
        tasks.push(hold(connection?));
    }
    Ok(tasks)
}

/// Opens `count` plain TCP connections, `concurrency` at a time, each held by a task
/// that waits for the server to close it.
async fn open_raw(
    target: &Target,
    count: usize,
    concurrency: usize,
    deadline: Instant,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let opened = stream::iter(0..count)
        .map(|n| target.connect_from(n))
        .buffer_unordered(concurrency.max(1));
    hold_each(opened, count, deadline, |stream| {
        tokio::spawn(hold_until_closed(stream))
    })
    .await
}

/// Reads and discards frames until the connection ends.
pub(crate) fn idle_reader(mut socket: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} })
}

pub(crate) async fn run(target: &Target, args: &Args) -> Result<Report, String> {
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let before = args.pid.map(rss_kib).transpose()?;
    let descriptors_before = args.pid.and_then(descriptors);
    let started = Instant::now();
    let tasks = if args.raw {
        open_raw(target, args.connections, args.concurrency, deadline).await?
    } else {
        open_many(
            target,
            args.first_user,
            args.connections,
            "",
            args.concurrency,
            deadline,
            idle_reader,
        )
        .await?
    };
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
    let after = args.pid.map(rss_kib).transpose()?;
    let descriptors_after = args.pid.and_then(descriptors);

    let mut report = Report::new("idle");
    report.add("connections", args.connections, "");
    if let (Some(before), Some(after)) = (descriptors_before, descriptors_after) {
        // Every connection the server holds is a descriptor of its own.
        report.add("server descriptors added", after as i64 - before as i64, "");
    }
    if !args.raw {
        let reported = server_connections(target).await;
        report.add(
            "connections reported by the server",
            reported.unwrap_or(-1),
            "",
        );
    }
    report.add("time to open", open_seconds, "s");
    report.memory_per_connection(before, after, args.connections);
    for task in tasks {
        task.abort();
    }
    Ok(report)
}

/// How many files process `pid` holds open (`/proc/<pid>/fd`), if readable.
fn descriptors(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// The server's own count of WebSocket connections, from `/metrics`.
pub(crate) async fn server_connections(target: &Target) -> Option<i64> {
    let text = reqwest::get(format!("{}/metrics", target.base))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("chat_websocket_connections "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as i64)
}
