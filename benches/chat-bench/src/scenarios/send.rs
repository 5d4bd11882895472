//! `send` and `baseline`: requests per second and latency of concurrent closed-loop
//! senders, against the server and against a trivial handler in this process.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use super::webhook_receiver::Arrivals;
use crate::answers::Answers;
use crate::clients::{Target, quantile};
use crate::report::Report;

/// Options of `send`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Concurrent senders, one user each.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Seconds to send.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The first simulated user id (senders; each sends to the next id).
    #[arg(long, default_value_t = 3_000_000)]
    first_user: i64,
    /// Conversations the senders share (default: one each). With fewer conversations
    /// than senders, sender `n` writes conversation `n % conversations`, in one
    /// direction or the other: `--conversations 1` is everyone in one busy conversation.
    #[arg(long)]
    conversations: Option<usize>,
    /// Skip the baseline measurement.
    #[arg(long)]
    no_baseline: bool,
    /// Another server to compare with (the same secret; say, one without webhooks):
    /// rounds against each alternate, and the report gives both medians and their
    /// ratio.
    #[arg(long)]
    compare_url: Option<String>,
    /// Rounds against each server when comparing.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Receive the webhooks of the server at `--url` here (start it with
    /// `CHAT_WEBHOOK_URL=http://<this address>/`): after each of its rounds the run
    /// waits until every `message.created` arrived, and reports from commit to
    /// arrival.
    #[arg(long)]
    webhook_listen: Option<std::net::SocketAddr>,
}

/// Options of `baseline`.
#[derive(Debug, clap::Args)]
pub(crate) struct BaselineArgs {
    /// Concurrent senders.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Seconds to send.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// What a closed-loop run measured, every send stored as new.
struct Run {
    per_second: f64,
    latencies_ms: Vec<f64>,
}

/// `senders` workers post `body(worker)` to `url` back to back for `seconds`.
async fn closed_loop(
    url: String,
    tokens: Vec<String>,
    bodies: Vec<String>,
    seconds: u64,
) -> Result<Run, String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for (n, (token, body)) in tokens.into_iter().zip(bodies).enumerate() {
        let http = Target::http(n)?;
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut answers = Answers::default();
            while Instant::now() < deadline {
                let at = Instant::now();
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if answers.record(&answer)
                    && let Ok(answer) = answer
                {
                    // Read the body, as a real client would.
                    let _ = answer.bytes().await;
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
            }
            (latencies, answers)
        }));
    }
    let mut latencies_ms = Vec::new();
    let mut answers = Answers::default();
    for worker in workers {
        let (mut l, a) = worker.await.map_err(|e| e.to_string())?;
        latencies_ms.append(&mut l);
        answers.merge(&a);
    }
    let per_second = latencies_ms.len() as f64 / started.elapsed().as_secs_f64();
    answers.all_new("sends")?;
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Run {
        per_second,
        latencies_ms,
    })
}

/// Serves a trivial 201 handler on a loopback port of this process.
async fn start_baseline() -> Result<String, String> {
    let app = Router::new().route(
        "/api/chat/send",
        post(|| async { (StatusCode::CREATED, r#"{"data":{"id":1}}"#) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}/api/chat/send"))
}

fn message_body(receiver: i64) -> String {
    serde_json::json!({"receiver_id": receiver, "message": "a message of ordinary length, about sixty characters"})
        .to_string()
}

async fn run_baseline(senders: usize, seconds: u64) -> Result<Run, String> {
    let url = start_baseline().await?;
    let tokens = vec!["not-checked".to_owned(); senders];
    let bodies = (0..senders).map(|_| message_body(2)).collect();
    closed_loop(url, tokens, bodies, seconds).await
}

fn add_run(report: &mut Report, prefix: &'static [&'static str; 3], run: &Run) {
    report.add(prefix[0], run.per_second, "requests/s");
    report.add(prefix[1], quantile(&run.latencies_ms, 0.50), "ms");
    report.add(prefix[2], quantile(&run.latencies_ms, 0.99), "ms");
}

/// The sender and the receiver of sender `n`: conversation `n % conversations`, each
/// direction in turn.
fn pair(args: &Args, n: usize) -> (i64, i64) {
    let conversations = args.conversations.unwrap_or(args.senders).max(1);
    let low = args.first_user + 2 * (n % conversations) as i64;
    if (n / conversations).is_multiple_of(2) {
        (low, low + 1)
    } else {
        (low + 1, low)
    }
}

/// One closed-loop run of `args` against `target`.
async fn run_against(target: &Target, args: &Args) -> Result<Run, String> {
    let tokens = (0..args.senders)
        .map(|n| target.token(pair(args, n).0))
        .collect::<Result<Vec<_>, _>>()?;
    let bodies = (0..args.senders)
        .map(|n| message_body(pair(args, n).1))
        .collect();
    let url = format!("{}/api/chat/send", target.base);
    closed_loop(url, tokens, bodies, args.seconds).await
}

/// The longest wait for the webhooks of one round to arrive.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(300);

/// The webhook receiver of `--webhook-listen`, when asked for.
async fn listen_for_webhooks(args: &Args) -> Result<Option<Arrivals>, String> {
    match args.webhook_listen {
        Some(address) => Ok(Some(super::webhook_receiver::listen(address).await?)),
        None => Ok(None),
    }
}

/// Alternating rounds against `target` (with its webhooks received here when asked)
/// and the server at `--compare-url`.
async fn compare(target: &Target, args: &Args, other: &str) -> Result<Report, String> {
    let other = target.at(other)?;
    let arrivals = listen_for_webhooks(args).await?;
    let (mut ours, mut theirs, mut drains) = (Vec::new(), Vec::new(), Vec::new());
    let mut created = 0;
    for _ in 0..args.rounds.max(1) {
        let run = run_against(target, args).await?;
        created += run.latencies_ms.len();
        ours.push(run.per_second);
        if let Some(arrivals) = &arrivals {
            // The next round starts with no deliveries left to compete with it.
            drains.push(
                arrivals
                    .drained(created, WEBHOOK_DRAIN)
                    .await?
                    .as_secs_f64(),
            );
        }
        theirs.push(run_against(&other, args).await?.per_second);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        quantile(values, 0.5)
    };
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    let mut report = Report::new("send");
    report.add("senders", args.senders, "");
    report.add(
        "conversations",
        args.conversations.unwrap_or(args.senders).max(1),
        "",
    );
    report.add("rounds", args.rounds.max(1), "");
    report.add("sends (--url)", ours, "requests/s");
    report.add("sends (--compare-url)", theirs, "requests/s");
    report.add("ratio", 100.0 * ours / theirs, "%");
    if let Some(arrivals) = &arrivals {
        arrivals.report(&mut report);
        report.add("drain after a round (median)", median(&mut drains), "s");
    }
    Ok(report)
}

pub(crate) async fn run(target: &Target, args: &Args) -> Result<Report, String> {
    if let Some(other) = &args.compare_url {
        return compare(target, args, other).await;
    }
    let arrivals = listen_for_webhooks(args).await?;
    let server = run_against(target, args).await?;
    let mut report = Report::new("send");
    if let Some(arrivals) = &arrivals {
        let drain = arrivals
            .drained(server.latencies_ms.len(), WEBHOOK_DRAIN)
            .await?;
        arrivals.report(&mut report);
        report.add("drain after the run", drain.as_secs_f64(), "s");
    }
    report.add("senders", args.senders, "");
    add_run(
        &mut report,
        &["sends", "latency p50", "latency p99"],
        &server,
    );
    if !args.no_baseline {
        let baseline = run_baseline(args.senders, args.seconds).await?;
        add_run(
            &mut report,
            &["baseline", "baseline p50", "baseline p99"],
            &baseline,
        );
        report.add(
            "ratio to baseline",
            100.0 * server.per_second / baseline.per_second,
            "%",
        );
    }
    Ok(report)
}

pub(crate) async fn baseline(args: &BaselineArgs) -> Result<Report, String> {
    let run = run_baseline(args.senders, args.seconds).await?;
    let mut report = Report::new("baseline");
    report.add("senders", args.senders, "");
    add_run(
        &mut report,
        &["requests", "latency p50", "latency p99"],
        &run,
    );
    Ok(report)
}
