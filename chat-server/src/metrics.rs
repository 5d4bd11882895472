//! Prometheus metrics, per server instance (no global recorder, so several servers can
//! share a process), and a store decorator that times every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chat_core::{
    ConversationSummary, Error, HistoryPage, Inserted, Message, MessageId, MessageRepository,
    MessageStatus, NewMessageRecord, UserId,
};
use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use time::OffsetDateTime;

use crate::state::AppState;

const METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// Buckets of the latency histograms, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// The request metrics of one (method, route, status), registered once.
type RequestHandles = (metrics::Counter, metrics::Histogram);
/// Registered request metrics by (method, route, status).
type RequestCache = HashMap<(String, String, u16), RequestHandles>;

/// The metrics of one server.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Handles by (method, route, status): registering builds label strings and a key
    /// every time, which the request path should not pay.
    requests: Arc<Mutex<RequestCache>>,
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
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .map_or_else(
                |_| PrometheusBuilder::new().build_recorder(),
                |b| b.build_recorder(),
            );
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
            requests: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }

    fn key(name: &'static str, labels: Vec<Label>) -> Key {
        Key::from_parts(name, labels)
    }

    pub(crate) fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (counter, histogram) = {
            let mut cache = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            // Looked up by borrowed parts would need a custom key type; the owned key is
            // built only here, and only a cache miss registers.
            let key = (method.to_owned(), route.to_owned(), status);
            match cache.get(&key) {
                Some(handles) => handles.clone(),
                None => {
                    let labels = || {
                        vec![
                            Label::new("method", method.to_owned()),
                            Label::new("route", route.to_owned()),
                            Label::new("status", status.to_string()),
                        ]
                    };
                    let handles = (
                        self.recorder.register_counter(
                            &Self::key("chat_http_requests_total", labels()),
                            &METADATA,
                        ),
                        self.recorder.register_histogram(
                            &Self::key("chat_http_request_duration_seconds", labels()),
                            &METADATA,
                        ),
                    );
                    cache.insert(key, handles.clone());
                    handles
                }
            }
        };
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
    }

    pub(crate) fn send(&self, replay: bool) {
        let outcome = if replay { "replay" } else { "created" };
        self.recorder
            .register_counter(
                &Self::key(
                    "chat_messages_sent_total",
                    vec![Label::new("outcome", outcome)],
                ),
                &METADATA,
            )
            .increment(1);
    }

    pub(crate) fn rate_limited(&self, limit: &'static str) {
        self.recorder
            .register_counter(
                &Self::key("chat_rate_limited_total", vec![Label::new("limit", limit)]),
                &METADATA,
            )
            .increment(1);
    }

    pub(crate) fn websocket_connections(&self, connections: usize) {
        self.recorder
            .register_gauge(&Self::key("chat_websocket_connections", vec![]), &METADATA)
            .set(connections as f64);
    }

    fn store_call(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        let labels = vec![
            Label::new("operation", operation),
            Label::new("outcome", if ok { "ok" } else { "error" }),
        ];
        self.recorder
            .register_histogram(&Self::key("chat_store_duration_seconds", labels), &METADATA)
            .record(elapsed.as_secs_f64());
    }
}

/// Middleware counting requests by route template and status.
pub(crate) async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics().request(
        method.as_str(),
        &route,
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
