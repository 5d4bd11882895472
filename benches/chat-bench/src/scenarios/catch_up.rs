//! `catch-up`: one receiver with a large backlog connects and reads it as fast as it
//! can; how many messages per second reach it, with every one accounted for.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::history::send_many;
use crate::answers::Answers;
use crate::clients::Target;
use crate::report::Report;

/// Options of `catch-up`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Messages in the receiver's backlog.
    #[arg(long, default_value_t = 40_000)]
    messages: usize,
    /// Distinct senders, so the backlog spans this many conversations.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Concurrent HTTP clients while seeding.
    #[arg(long, default_value_t = 32)]
    seeders: usize,
    /// The receiver's user id (its senders follow it); by default a fresh one per run.
    #[arg(long)]
    user: Option<i64>,
    /// Longest wait for the whole backlog, per reading.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// Read a backlog an earlier run with the same `--user` and `--messages` seeded,
    /// instead of sending it again.
    #[arg(long)]
    skip_seeding: bool,
    /// New messages per second sent to the receiver while it reads its backlog, from
    /// a sender of their own (0: none).
    #[arg(long, default_value_t = 0)]
    live_rate: u32,
}

/// The text of every seeded message; anything else the reader gets is live traffic.
const SEED: &str = "catch-up seed";

/// The part of a server frame the reader looks at.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    id: i64,
    message: String,
}

/// One reading of the backlog.
struct Reading {
    first: Duration,
    all: Duration,
    duplicates: usize,
    live: usize,
}

/// Connects as `user` with `query` and reads until `expected` distinct messages came.
async fn read_backlog(
    target: &Target,
    user: i64,
    query: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Reading, String> {
    let token = target.token(user)?;
    let started = Instant::now();
    let mut socket = target.websocket_at(user, &token, 0, query).await?;
    let mut seen = HashSet::with_capacity(expected);
    let mut duplicates = 0;
    let mut live = 0;
    let mut first = None;
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < expected {
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => return Err(format!("connection failed: {error}")),
            Ok(None) => return Err("the server closed the connection".to_owned()),
            Err(_) => {
                return Err(format!(
                    "{} of {expected} messages within {timeout:?}",
                    seen.len()
                ));
            }
        };
        let Message::Text(text) = message else {
            if let Message::Close(frame) = message {
                return Err(format!("closed by the server: {frame:?}"));
            }
            continue;
        };
        let frame: Frame = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if frame.kind != "message" {
            continue;
        }
        let data = frame.data.ok_or("a message frame without data")?;
        if data.message != SEED {
            live += 1;
            continue;
        }
        first.get_or_insert_with(|| started.elapsed());
        if !seen.insert(data.id) {
            duplicates += 1;
        }
    }
    let all = started.elapsed();
    let _ = socket.close(None).await;
    Ok(Reading {
        first: first.unwrap_or(all),
        all,
        duplicates,
        live,
    })
}

/// Sends to `receiver` at `rate` per second from a sender of its own until `stop`,
/// for at most `limit`; returns the server's answers.
fn live_sender(
    target: &Target,
    sender: i64,
    receiver: i64,
    rate: u32,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> Result<tokio::task::JoinHandle<Answers>, String> {
    let http = Target::http(1)?;
    let token = target.token(sender)?;
    let url = format!("{}/api/chat/send", target.base);
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    Ok(tokio::spawn(async move {
        let start = Instant::now();
        let mut answers = Answers::default();
        let mut slot = 0u32;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            tokio::time::sleep_until((start + period * slot).into()).await;
            slot += 1;
            let body = serde_json::json!({"receiver_id": receiver, "message": "live"});
            answers.record(&http.post(&url).bearer_auth(&token).json(&body).send().await);
        }
        answers
    }))
}

/// `Ok` when `user` has no conversation yet: a backlog of an earlier run would be
/// counted as this run's.
async fn fresh(target: &Target, user: i64) -> Result<(), String> {
    let url = format!("{}/api/chat/conversations?limit=1", target.base);
    let answer = Target::http(0)?
        .get(&url)
        .bearer_auth(target.token(user)?)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url}: {}", answer.status()));
    }
    let list: serde_json::Value = answer.json().await.map_err(|e| e.to_string())?;
    if list["data"].as_array().is_some_and(|rows| !rows.is_empty()) {
        return Err(format!(
            "user {user} already has messages (from an earlier run?): pass --user with a fresh id, \
             or --skip-seeding to read the backlog that run left"
        ));
    }
    Ok(())
}

pub(crate) async fn run(target: &Target, args: &Args) -> Result<Report, String> {
    let receiver = args.user.unwrap_or_else(|| {
        // A fresh receiver for each run against the same server: its backlog is only
        // what this run sends.
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        5_000_000 + i64::try_from(seconds % 100_000).unwrap_or(0) * 1_000
    });
    let senders = args.senders.clamp(1, 999);
    let pairs: Vec<(i64, i64)> = (1..=senders as i64)
        .map(|n| (receiver + n, receiver))
        .collect();
    let seeding = Instant::now();
    if !args.skip_seeding {
        fresh(target, receiver).await?;
        send_many(target, args.seeders, args.messages, &pairs, SEED).await?;
    }
    let seeded = seeding.elapsed();
    let timeout = Duration::from_secs(args.timeout_seconds);

    let stop = Arc::new(AtomicBool::new(false));
    let live = (args.live_rate > 0)
        .then(|| {
            let sender = receiver + senders as i64 + 1;
            live_sender(
                target,
                sender,
                receiver,
                args.live_rate,
                2 * timeout,
                Arc::clone(&stop),
            )
        })
        .transpose()?;
    let resumed = read_backlog(target, receiver, "?after_id=0", args.messages, timeout).await;
    let backlog = match resumed {
        Ok(_) => read_backlog(target, receiver, "", args.messages, timeout).await,
        Err(_) => Err("not measured".to_owned()),
    };
    stop.store(true, Ordering::Relaxed);
    let live_sent = match live {
        Some(task) => {
            let answers = task.await.map_err(|e| e.to_string())?;
            answers.all_new("live sends")?;
            answers.created()
        }
        None => 0,
    };
    let (resumed, backlog) = (resumed?, backlog?);

    let mut report = Report::new("catch-up");
    report.add("backlog messages", args.messages as u64, "");
    report.add("conversations", senders as u64, "");
    report.add("seeding time", seeded.as_secs_f64(), "s");
    report.add("live messages sent meanwhile", live_sent, "");
    let readings = [
        (
            &resumed,
            [
                "resume: messages per second",
                "resume: first message",
                "resume: whole backlog",
                "resume: duplicates",
                "resume: live messages received",
            ],
        ),
        (
            &backlog,
            [
                "backlog: messages per second",
                "backlog: first message",
                "backlog: whole backlog",
                "backlog: duplicates",
                "backlog: live messages received",
            ],
        ),
    ];
    for (reading, [rate, first, all, duplicates, live]) in readings {
        report.add(
            rate,
            args.messages as f64 / reading.all.as_secs_f64(),
            "msg/s",
        );
        report.add(first, reading.first.as_secs_f64() * 1000.0, "ms");
        report.add(all, reading.all.as_secs_f64(), "s");
        report.add(duplicates, reading.duplicates as u64, "");
        report.add(live, reading.live as u64, "");
    }
    Ok(report)
}
