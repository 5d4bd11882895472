//! The registry of one server's series and their text exposition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::http::Method;

use super::histogram::Histogram;

const REQUESTS: &str = "chat_http_requests_total";
const REQUEST_LATENCY: &str = "chat_http_request_duration_seconds";
const SENT: &str = "chat_messages_sent_total";
const RATE_LIMITED: &str = "chat_rate_limited_total";
const STORE_LATENCY: &str = "chat_store_duration_seconds";
const WEBSOCKETS: &str = "chat_websocket_connections";
const JOB_LATENCY: &str = "chat_job_delivery_seconds";

/// The requests of one (method, status) of a route.
#[derive(Debug)]
struct RequestSeries {
    method: Method,
    status: u16,
    latency: Histogram,
}

/// The metrics of one server. Cloning shares them.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sent_created: AtomicU64,
    sent_replay: AtomicU64,
    websocket_connections: AtomicU64,
    /// From a job's due time to its success (for `message.created`, from the commit).
    job_latency: Histogram,
    /// Series by route template, then by (method, status): a request looks its route
    /// up by the borrowed template and allocates nothing once its series exists.
    requests: RwLock<HashMap<String, Vec<RequestSeries>>>,
    /// Store call latency by (operation, succeeded).
    store_calls: RwLock<BTreeMap<(&'static str, bool), Histogram>>,
    /// Refusals by limit.
    rate_limited: RwLock<BTreeMap<&'static str, AtomicU64>>,
    /// Counters kept elsewhere, read at each exposition: (series, reader).
    observed: RwLock<Vec<(String, CounterReader)>>,
}

/// Reads a counter kept by another component.
type CounterReader = Arc<dyn Fn() -> u64 + Send + Sync>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every critical section leaves the data consistent, so poisoning is harmless.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// An empty set of metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let inner = &*self.inner;
        let mut out = String::new();
        let requests = read(&inner.requests);
        let mut routes: Vec<_> = requests.iter().collect();
        routes.sort_by_key(|(route, _)| route.as_str());
        let labels_of = |route: &str, one: &RequestSeries| {
            format!(
                "method=\"{}\",route=\"{}\",status=\"{}\"",
                one.method,
                escape_label(route),
                one.status
            )
        };
        if !routes.is_empty() {
            let _ = writeln!(out, "# TYPE {REQUESTS} counter");
            for (route, series) in &routes {
                for one in *series {
                    let count = one.latency.count();
                    let _ = writeln!(out, "{REQUESTS}{{{}}} {count}", labels_of(route, one));
                }
            }
            let _ = writeln!(out, "# TYPE {REQUEST_LATENCY} histogram");
            for (route, series) in &routes {
                for one in *series {
                    one.latency
                        .render(REQUEST_LATENCY, &labels_of(route, one), &mut out);
                }
            }
        }
        drop(requests);

        let _ = writeln!(out, "# TYPE {SENT} counter");
        for (outcome, count) in [
            ("created", &inner.sent_created),
            ("replay", &inner.sent_replay),
        ] {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{SENT}{{outcome=\"{outcome}\"}} {count}");
        }

        let rate_limited = read(&inner.rate_limited);
        if !rate_limited.is_empty() {
            let _ = writeln!(out, "# TYPE {RATE_LIMITED} counter");
        }
        for (limit, count) in rate_limited.iter() {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{RATE_LIMITED}{{limit=\"{limit}\"}} {count}");
        }
        drop(rate_limited);

        let store_calls = read(&inner.store_calls);
        if !store_calls.is_empty() {
            let _ = writeln!(out, "# TYPE {STORE_LATENCY} histogram");
        }
        for ((operation, ok), latency) in store_calls.iter() {
            let outcome = if *ok { "ok" } else { "error" };
            let labels = format!("operation=\"{operation}\",outcome=\"{outcome}\"");
            latency.render(STORE_LATENCY, &labels, &mut out);
        }
        drop(store_calls);

        for (series, read) in read(&inner.observed).iter() {
            let name = series.split('{').next().unwrap_or(series);
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{series} {}", read());
        }

        if inner.job_latency.count() > 0 {
            let _ = writeln!(out, "# TYPE {JOB_LATENCY} histogram");
            inner.job_latency.render(JOB_LATENCY, "", &mut out);
        }

        let connections = inner.websocket_connections.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {WEBSOCKETS} gauge");
        let _ = writeln!(out, "{WEBSOCKETS} {connections}");
        out
    }

    /// Counts one request of `route` (its template) answered with `status`.
    pub(crate) fn request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let recorded = read(&self.inner.requests)
            .get(route)
            .and_then(|series| {
                series
                    .iter()
                    .find(|one| one.status == status && one.method == method)
            })
            .map(|one| one.latency.record(elapsed))
            .is_some();
        if recorded {
            return;
        }
        // The first request of its series: registered under the write lock (another
        // request may have registered it meanwhile).
        let mut requests = write(&self.inner.requests);
        let series = requests.entry(route.to_owned()).or_default();
        match series
            .iter()
            .find(|one| one.status == status && one.method == method)
        {
            Some(one) => one.latency.record(elapsed),
            None => {
                let one = RequestSeries {
                    method: method.clone(),
                    status,
                    latency: Histogram::default(),
                };
                one.latency.record(elapsed);
                series.push(one);
            }
        }
    }

    /// Exposes a counter that another component keeps: `series` is its name with its
    /// labels (`chat_rate_limiter_fallbacks_total{limit="send"}`), `read` its value.
    pub fn observe_counter(
        &self,
        series: impl Into<String>,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        write(&self.inner.observed).push((series.into(), Arc::new(read)));
    }

    /// Counts one background job done, `latency` after it was due (for a webhook of a
    /// new message: from the message's commit to the receiver's answer).
    pub fn job_succeeded(&self, latency: Duration) {
        self.inner.job_latency.record(latency);
    }

    /// Counts one message sent (`replay`: an idempotent replay, nothing new stored).
    pub(crate) fn send(&self, replay: bool) {
        let counter = if replay {
            &self.inner.sent_replay
        } else {
            &self.inner.sent_created
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request refused by `limit`.
    pub(crate) fn rate_limited(&self, limit: &'static str) {
        if let Some(count) = read(&self.inner.rate_limited).get(limit) {
            count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        write(&self.inner.rate_limited)
            .entry(limit)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of open WebSocket connections.
    pub(crate) fn websocket_connections(&self, connections: usize) {
        self.inner
            .websocket_connections
            .store(connections as u64, Ordering::Relaxed);
    }

    /// Times one store call of `operation`.
    pub(super) fn store_call(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        if let Some(latency) = read(&self.inner.store_calls).get(&(operation, ok)) {
            latency.record(elapsed);
            return;
        }
        write(&self.inner.store_calls)
            .entry((operation, ok))
            .or_default()
            .record(elapsed);
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
