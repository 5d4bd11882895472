//! A webhook receiver for `send --webhook-listen`: answers 204 to every delivery and
//! keeps, for each `message.created`, the time from the message's commit (its
//! `created_at`) to the delivery's arrival.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clients::quantile;
use crate::report::Report;

/// What arrived so far.
#[derive(Clone, Default)]
pub(crate) struct Arrivals {
    /// Milliseconds from commit to arrival of each `message.created`.
    created_ms: Arc<Mutex<Vec<f64>>>,
}

impl Arrivals {
    /// `message.created` deliveries so far.
    pub(crate) fn count(&self) -> usize {
        self.created_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The latencies so far, sorted.
    pub(crate) fn sorted_ms(&self) -> Vec<f64> {
        let mut all = self
            .created_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        all.sort_by(f64::total_cmp);
        all
    }

    /// Adds how many arrived and their p50 and p99 from commit to arrival.
    pub(crate) fn report(&self, report: &mut Report) {
        let latencies = self.sorted_ms();
        report.add("webhooks received", latencies.len(), "");
        report.add("commit to webhook p50", quantile(&latencies, 0.50), "ms");
        report.add("commit to webhook p99", quantile(&latencies, 0.99), "ms");
    }

    /// Waits until `count` deliveries arrived, up to `limit`; how long it took.
    pub(crate) async fn drained(&self, count: usize, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        while self.count() < count {
            if started.elapsed() > limit {
                return Err(format!(
                    "{} of {count} webhooks arrived within {limit:?}",
                    self.count()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(started.elapsed())
    }
}

async fn hook(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let now = OffsetDateTime::now_utc();
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if body["type"] == "message.created"
        && let Some(created) = body["data"]["message"]["created_at"].as_str()
        && let Ok(created) = OffsetDateTime::parse(created, &Rfc3339)
    {
        let ms = (now - created).as_seconds_f64() * 1000.0;
        arrivals
            .created_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ms);
    }
    StatusCode::NO_CONTENT
}

/// Listens on `address` (loopback) for webhooks.
pub(crate) async fn listen(address: SocketAddr) -> Result<Arrivals, String> {
    if !address.ip().is_loopback() {
        return Err(format!("{address} is not a loopback address"));
    }
    let arrivals = Arrivals::default();
    let app = Router::new()
        .fallback(post(hook))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(arrivals)
}
