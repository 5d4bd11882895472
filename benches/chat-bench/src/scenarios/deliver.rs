//! `deliver`: receivers connected, senders posting at a steady rate; latency from send
//! to arrival, and every message accounted for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::idle::open_many;
use crate::answers::{Answers, run_key};
use crate::clients::{Socket, Target, quantile};
use crate::report::Report;

/// Options of `deliver`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connected receivers (one user each).
    #[arg(long, default_value_t = 10_000)]
    receivers: usize,
    /// Sends per second, all senders together.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// How long to send.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent senders (one user and one HTTP client each).
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Handshakes in flight at once while connecting the receivers.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait for the last messages after sending stops.
    #[arg(long, default_value_t = 5)]
    grace_seconds: u64,
    /// The first simulated user id (receivers, then senders).
    #[arg(long, default_value_t = 2_000_000)]
    first_user: i64,
    /// Servers the receivers connect to, in equal shares (repeat the option; default:
    /// `--url`, where the senders always send). With nodes on one database and one
    /// Redis, this measures delivery across nodes.
    #[arg(long = "receivers-at", value_name = "URL")]
    receivers_at: Vec<String>,
}

/// One send: when it left, and whether the server stored it as new (201).
struct Sent {
    number: u64,
    at: Instant,
    acknowledged: bool,
}

/// A receiver's reader: reports the number of every message of this run that arrives
/// (`client_message_id` = `prefix` and the number).
fn receiver(
    mut socket: Socket,
    prefix: Arc<str>,
    arrivals: mpsc::UnboundedSender<(u64, Instant)>,
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
            let number = frame["data"]["client_message_id"]
                .as_str()
                .and_then(|key| key.strip_prefix(&*prefix))
                .and_then(|n| n.parse().ok());
            if frame["type"] == "message"
                && let Some(number) = number
                && arrivals.send((number, now)).is_err()
            {
                return;
            }
        }
    })
}

/// A cheap, deterministic spread of message numbers over receivers.
fn spread(number: u64, receivers: usize) -> u64 {
    let mixed = number.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    mixed % receivers as u64
}

/// Sends one message from `sender` to `receiver` and answers its id: the receivers
/// connect after it, so what earlier runs left undelivered to the same users is not
/// sent to them again.
async fn starting_point(
    target: &Target,
    sender: i64,
    receiver: i64,
    prefix: &str,
) -> Result<i64, String> {
    let body = serde_json::json!({
        "receiver_id": receiver,
        "message": "the starting point of a deliver run",
        "client_message_id": format!("{prefix}start"),
    });
    let mut answers = Answers::default();
    let answer = Target::http(0)?
        .post(format!("{}/api/chat/send", target.base))
        .bearer_auth(target.token(sender)?)
        .json(&body)
        .send()
        .await;
    answers.record(&answer);
    answers.all_new("starting sends")?;
    let body: Value = answer
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    body["data"]["id"]
        .as_i64()
        .ok_or_else(|| "the send's answer has no id".to_owned())
}

pub(crate) async fn run(target: &Target, args: &Args) -> Result<Report, String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let prefix: Arc<str> = format!("b{}-", run_key()).into();
    let start_id = starting_point(
        target,
        args.first_user + args.receivers as i64,
        args.first_user,
        &prefix,
    )
    .await?;
    let after = format!("?after_id={start_id}");
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    let nodes = if args.receivers_at.is_empty() {
        vec![target.at(&target.base)?]
    } else {
        args.receivers_at
            .iter()
            .map(|url| target.at(url))
            .collect::<Result<Vec<_>, _>>()?
    };
    // Consecutive blocks of users, one block a node.
    let share = args.receivers.div_ceil(nodes.len());
    let mut receivers = Vec::with_capacity(args.receivers);
    for (n, node) in nodes.iter().enumerate() {
        let first = n * share;
        let count = share.min(args.receivers.saturating_sub(first));
        receivers.extend(
            open_many(
                node,
                args.first_user + first as i64,
                count,
                &after,
                args.concurrency,
                deadline,
                |socket| receiver(socket, Arc::clone(&prefix), arrivals.clone()),
            )
            .await?,
        );
    }
    drop(arrivals);

    let total = u64::from(args.rate) * args.seconds;
    let senders = args.senders.max(1) as u64;
    let period = Duration::from_secs_f64(senders as f64 / f64::from(args.rate.max(1)));
    let start = Instant::now() + Duration::from_millis(200);
    let mut workers = Vec::new();
    for worker in 0..senders {
        let http = Target::http(worker as usize)?;
        let sender = args.first_user + args.receivers as i64 + worker as i64;
        let token = target.token(sender)?;
        let url = format!("{}/api/chat/send", target.base);
        let first_receiver = args.first_user;
        let receivers = args.receivers;
        let prefix = Arc::clone(&prefix);
        // Each worker's slots are offset by its share of a period, so the sends are
        // spread evenly over time instead of leaving together once a period.
        let first_slot = start + period.mul_f64(worker as f64 / senders as f64);
        workers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut answers = Answers::default();
            let mut number = worker;
            let mut slot = 0u32;
            while number < total {
                // A fixed schedule: late sends go at once and the rate holds on average.
                tokio::time::sleep_until((first_slot + period * slot).into()).await;
                slot += 1;
                let body = serde_json::json!({
                    "receiver_id": first_receiver + spread(number, receivers) as i64,
                    "message": "benchmark message",
                    "client_message_id": format!("{prefix}{number}"),
                });
                let at = Instant::now();
                let answer = http.post(&url).bearer_auth(&token).json(&body).send().await;
                let acknowledged = answers.record(&answer);
                sent.push(Sent {
                    number,
                    at,
                    acknowledged,
                });
                number += senders;
            }
            (sent, answers)
        }));
    }
    let mut sent = Vec::with_capacity(total as usize);
    let mut answers = Answers::default();
    for worker in workers {
        let (some, their) = worker.await.map_err(|e| e.to_string())?;
        sent.extend(some);
        answers.merge(&their);
    }
    let sending_seconds = start.elapsed().as_secs_f64();
    if let Err(why) = answers.all_new("sends") {
        for task in receivers {
            task.abort();
        }
        return Err(why);
    }
    let acknowledged = sent.iter().filter(|s| s.acknowledged).count();

    // Collect arrivals until every acknowledged message is in, or the grace is over.
    let mut first_arrival: HashMap<u64, Instant> = HashMap::with_capacity(sent.len());
    let mut duplicates = 0u64;
    let grace_end = tokio::time::Instant::now() + Duration::from_secs(args.grace_seconds);
    loop {
        while let Ok((number, at)) = arrived.try_recv() {
            if first_arrival.insert(number, at).is_some() {
                duplicates += 1;
            }
        }
        let missing = sent
            .iter()
            .filter(|s| s.acknowledged && !first_arrival.contains_key(&s.number))
            .count();
        if missing == 0 || tokio::time::Instant::now() >= grace_end {
            break;
        }
        match tokio::time::timeout_at(grace_end, arrived.recv()).await {
            Ok(Some((number, at))) => {
                if first_arrival.insert(number, at).is_some() {
                    duplicates += 1;
                }
            }
            _ => break,
        }
    }
    for task in receivers {
        task.abort();
    }

    // Each received message's latency (ms) and when it was sent (s into the run).
    let mut timed: Vec<(f64, f64)> = sent
        .iter()
        .filter(|s| s.acknowledged)
        .filter_map(|s| {
            first_arrival.get(&s.number).map(|at| {
                (
                    at.duration_since(s.at).as_secs_f64() * 1000.0,
                    s.at.saturating_duration_since(start).as_secs_f64(),
                )
            })
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let slowest_sent_at = timed.last().map_or(f64::NAN, |&(_, at)| at);
    let latencies: Vec<f64> = timed.into_iter().map(|(latency, _)| latency).collect();
    let lost = acknowledged - latencies.len();

    let mut report = Report::new("deliver");
    report.add("receivers", args.receivers, "");
    report.add("receiver nodes", nodes.len(), "");
    report.add("target rate", args.rate, "sends/s");
    report.add(
        "achieved rate",
        sent.len() as f64 / sending_seconds,
        "sends/s",
    );
    report.add("sent", sent.len(), "");
    report.add("acknowledged (201)", acknowledged, "");
    report.add("received", latencies.len(), "");
    report.add("lost", lost, "");
    report.add("duplicates", duplicates, "");
    report.add("latency p50", quantile(&latencies, 0.50), "ms");
    report.add("latency p99", quantile(&latencies, 0.99), "ms");
    report.add(
        "latency max",
        latencies.last().copied().unwrap_or(f64::NAN),
        "ms",
    );
    report.add("slowest sent after", slowest_sent_at, "s");
    Ok(report)
}
