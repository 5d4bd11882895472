//! `history`: latest-page and cursor-page latency on a large conversation.

use std::time::Instant;

use serde_json::Value;

use crate::clients::{Target, quantile};
use crate::report::Report;

/// Options of `history`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Messages in the conversation; sent first unless it already holds that many.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Requests per page kind.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Rows the whole store should hold: other conversations are sent first until the
    /// server's table holds about this many (0: only the measured conversation).
    #[arg(long, default_value_t = 0)]
    table_rows: usize,
    /// Concurrent senders while seeding.
    #[arg(long, default_value_t = 32)]
    seeders: usize,
    /// The two users of the conversation: this id and the next.
    #[arg(long, default_value_t = 4_000_000)]
    user: i64,
}

async fn total(http: &reqwest::Client, url: &str, token: &str) -> Result<u64, String> {
    let page: Value = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    page["meta"]["total"]
        .as_u64()
        .ok_or_else(|| format!("no meta.total in {page}"))
}

/// Sends `count` messages with `seeders` concurrent clients, message `n` from
/// `pairs[n % pairs.len()].0` to `.1`.
pub(crate) async fn send_many(
    target: &Target,
    seeders: usize,
    count: usize,
    pairs: &[(i64, i64)],
    text: &'static str,
) -> Result<(), String> {
    let seeders = seeders.max(1);
    let tokens = pairs
        .iter()
        .map(|&(from, _)| target.token(from))
        .collect::<Result<Vec<_>, _>>()?;
    let pairs = std::sync::Arc::new((pairs.to_vec(), tokens));
    let mut workers = Vec::new();
    for worker in 0..seeders {
        let http = Target::http(worker)?;
        let url = format!("{}/api/chat/send", target.base);
        let pairs = std::sync::Arc::clone(&pairs);
        let share = count / seeders + usize::from(worker < count % seeders);
        workers.push(tokio::spawn(async move {
            let (pairs, tokens) = &*pairs;
            for i in 0..share {
                let n = (i * seeders + worker) % pairs.len();
                let body = serde_json::json!({"receiver_id": pairs[n].1, "message": text});
                let answer = http
                    .post(&url)
                    .bearer_auth(&tokens[n])
                    .json(&body)
                    .send()
                    .await;
                let mut answers = crate::answers::Answers::default();
                answers.record(&answer);
                answers.all_new("seeding sends")?;
            }
            Ok::<(), String>(())
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn timed(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    requests: usize,
) -> Result<Vec<f64>, String> {
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let at = Instant::now();
        let answer = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("{url}: {}", answer.status()));
        }
        let _ = answer.bytes().await;
        latencies.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

pub(crate) async fn run(target: &Target, args: &Args) -> Result<Report, String> {
    let http = Target::http(0)?;
    let token = target.token(args.user)?;
    let base = format!("{}/api/chat/messages/{}", target.base, args.user + 1);
    let existing = total(&http, &format!("{base}?per_page=1"), &token).await?;
    let started = Instant::now();
    if (existing as usize) < args.messages {
        // Other conversations first (1,000 pairs), so the measured one sits in a large
        // table as in production; then the measured one, in both directions.
        let others: Vec<(i64, i64)> = (0..1_000)
            .map(|pair| (args.user + 10 + 2 * pair, args.user + 11 + 2 * pair))
            .collect();
        let noise = args.table_rows.saturating_sub(args.messages);
        send_many(target, args.seeders, noise, &others, "other conversation").await?;
        let both_ways = [(args.user, args.user + 1), (args.user + 1, args.user)];
        let missing = args.messages - existing as usize;
        send_many(target, args.seeders, missing, &both_ways, "history seed").await?;
    }
    let seeded = started.elapsed();
    let held = total(&http, &format!("{base}?per_page=1"), &token).await?;
    // Warm the connection and the server's caches.
    timed(&http, &format!("{base}?limit={}", args.limit), &token, 50).await?;
    let latest = timed(
        &http,
        &format!("{base}?limit={}", args.limit),
        &token,
        args.requests,
    )
    .await?;
    let page = timed(
        &http,
        &format!("{base}?page=1&per_page={}", args.limit),
        &token,
        args.requests,
    )
    .await?;
    // A cursor in the middle of the conversation.
    let middle: Value = http
        .get(format!("{base}?page={}&per_page=1", held / 2 + 1))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let cursor = middle["data"][0]["id"]
        .as_i64()
        .ok_or("no middle message")?;
    let cursor_page = timed(
        &http,
        &format!("{base}?before_id={cursor}&limit={}", args.limit),
        &token,
        args.requests,
    )
    .await?;

    let mut report = Report::new("history");
    report.add("messages in the conversation", held, "");
    report.add("seeding time", seeded.as_secs_f64(), "s");
    let kinds: [(&'static str, &'static str, &Vec<f64>); 3] = [
        ("latest page p50", "latest page p99", &latest),
        ("page 1 with total p50", "page 1 with total p99", &page),
        (
            "middle cursor page p50",
            "middle cursor page p99",
            &cursor_page,
        ),
    ];
    for (p50, p99, latencies) in kinds {
        report.add(p50, quantile(latencies, 0.50), "ms");
        report.add(p99, quantile(latencies, 0.99), "ms");
    }
    Ok(report)
}
