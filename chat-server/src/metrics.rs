//! Prometheus metrics, per server instance (no global recorder, so several servers can
//! share a process), and a store decorator that times every call.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chat_core::{
    ConversationSummary, Error, HistoryPage, Inserted, Message, MessageId, MessageRepository,
    MessageStatus, NewMessageRecord, UserId,
};
use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use time::OffsetDateTime;

use crate::histogram::Histogram;
use crate::state::AppState;

const METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

const REQUEST_LATENCY: &str = "chat_http_request_duration_seconds";
const STORE_LATENCY: &str = "chat_store_duration_seconds";

/// The metrics of one (method, status) of a route, registered on its first request.
struct RequestSeries {
    method: Method,
    status: u16,
    total: metrics::Counter,
    latency: Histogram,
}

/// The metrics of one server.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sent_created: metrics::Counter,
    sent_replay: metrics::Counter,
    /// Series by route template, then by (method, status): a request looks its route
    /// up by the borrowed template and allocates nothing once its series exists.
    requests: Mutex<HashMap<String, Vec<RequestSeries>>>,
    /// Store call latency by (operation, succeeded).
    store_calls: Mutex<BTreeMap<(&'static str, bool), Histogram>>,
    rate_limited: Mutex<HashMap<&'static str, metrics::Counter>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of metrics.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let sent = |outcome: &'static str| {
            recorder.register_counter(
                &Key::from_parts(
                    "chat_messages_sent_total",
                    vec![Label::new("outcome", outcome)],
                ),
                &METADATA,
            )
        };
        let (sent_created, sent_replay) = (sent("created"), sent("replay"));
        Self {
            inner: Arc::new(Inner {
                sent_created,
                sent_replay,
                recorder,
                handle,
                requests: Mutex::default(),
                store_calls: Mutex::default(),
                rate_limited: Mutex::default(),
            }),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = self.inner.handle.render();
        let requests = lock(&self.inner.requests);
        let mut routes: Vec<_> = requests.iter().collect();
        routes.sort_by_key(|(route, _)| route.as_str());
        if !routes.is_empty() {
            let _ = writeln!(out, "# TYPE {REQUEST_LATENCY} histogram");
        }
        for (route, series) in routes {
            for one in series {
                let labels = format!(
                    "method=\"{}\",route=\"{}\",status=\"{}\"",
                    one.method,
                    escape_label(route),
                    one.status
                );
                one.latency.render(REQUEST_LATENCY, &labels, &mut out);
            }
        }
        drop(requests);
        let store_calls = lock(&self.inner.store_calls);
        if !store_calls.is_empty() {
            let _ = writeln!(out, "# TYPE {STORE_LATENCY} histogram");
        }
        for ((operation, ok), latency) in store_calls.iter() {
            let outcome = if *ok { "ok" } else { "error" };
            let labels = format!("operation=\"{operation}\",outcome=\"{outcome}\"");
            latency.render(STORE_LATENCY, &labels, &mut out);
        }
        out
    }

    pub(crate) fn request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let mut requests = lock(&self.inner.requests);
        let series = match requests.get_mut(route) {
            Some(series) => series,
            None => requests.entry(route.to_owned()).or_default(),
        };
        let index = match series
            .iter()
            .position(|s| s.status == status && s.method == method)
        {
            Some(index) => index,
            None => {
                let labels = vec![
                    Label::new("method", method.to_string()),
                    Label::new("route", route.to_owned()),
                    Label::new("status", status.to_string()),
                ];
                series.push(RequestSeries {
                    method: method.clone(),
                    status,
                    total: self.inner.recorder.register_counter(
                        &Key::from_parts("chat_http_requests_total", labels),
                        &METADATA,
                    ),
                    latency: Histogram::default(),
                });
                series.len() - 1
            }
        };
        let one = &series[index];
        one.total.increment(1);
        one.latency.record(elapsed);
    }

    pub(crate) fn send(&self, replay: bool) {
        if replay {
            self.inner.sent_replay.increment(1);
        } else {
            self.inner.sent_created.increment(1);
        }
    }

    pub(crate) fn rate_limited(&self, limit: &'static str) {
        lock(&self.inner.rate_limited)
            .entry(limit)
            .or_insert_with(|| {
                self.inner.recorder.register_counter(
                    &Key::from_parts("chat_rate_limited_total", vec![Label::new("limit", limit)]),
                    &METADATA,
                )
            })
            .increment(1);
    }

    pub(crate) fn websocket_connections(&self, connections: usize) {
        self.inner
            .recorder
            .register_gauge(
                &Key::from_parts("chat_websocket_connections", vec![]),
                &METADATA,
            )
            .set(connections as f64);
    }

    fn store_call(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        lock(&self.inner.store_calls)
            .entry((operation, ok))
            .or_default()
            .record(elapsed);
    }
}

/// A poisoned lock still holds valid counts: a panic cannot leave them half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A label value as the text format requires: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware counting requests by route template and status.
pub(crate) async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // The template is shared (`Arc<str>`); cloning it allocates nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics().request(
        &method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// A [`MessageRepository`] that records the latency of every call of `inner`.
pub struct MeasuredRepository {
    inner: Arc<dyn MessageRepository>,
    metrics: Metrics,
}

impl MeasuredRepository {
    /// Measures `inner` into `metrics`.
    pub fn new(inner: Arc<dyn MessageRepository>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .store_call(operation, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl MessageRepository for MeasuredRepository {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        self.timed("insert", self.inner.insert(record)).await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        self.timed("get", self.inner.get(id)).await
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        self.timed("history_page", self.inner.history_page(a, b, offset, limit))
            .await
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "history_before",
            self.inner.history_before(a, b, before, limit),
        )
        .await
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "history_after",
            self.inner.history_after(a, b, after, limit),
        )
        .await
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "set_status",
            self.inner.set_status(receiver, ids, status, at),
        )
        .await
    }

    async fn mark_read_up_to(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
    ) -> Result<Vec<MessageId>, Error> {
        self.timed(
            "mark_read_up_to",
            self.inner.mark_read_up_to(receiver, sender, up_to, at),
        )
        .await
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "undelivered",
            self.inner.undelivered(receiver, after, limit),
        )
        .await
    }

    async fn after_messages_for(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.timed(
            "after_messages_for",
            self.inner.after_messages_for(user, after, limit),
        )
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        self.timed(
            "conversations",
            self.inner.conversations(user, before, limit),
        )
        .await
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        self.timed("unread_total", self.inner.unread_total(user))
            .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.timed("ping", self.inner.ping()).await
    }
}
