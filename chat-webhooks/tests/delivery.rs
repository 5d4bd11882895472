//! Webhooks delivered by the worker pool to a real HTTP receiver in this process, which
//! verifies every delivery with an independent implementation (the `standardwebhooks`
//! crate): success, retries with the same `webhook-id`, `Retry-After`, 410, timeouts,
//! redirects, and `message.undelivered`.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chat_core::{
    ChatService, InMemoryRepository, InProcessNotifier, JobState, JobStore, MessageId, SendMessage,
    UserId,
};
use chat_webhooks::{
    PoolConfig, PoolWaker, RetrySchedule, WebhookConfig, WebhookEvent, WebhookPlan, WebhookSecret,
    WebhookSender, WorkerPool,
};
use serde_json::Value;
use standardwebhooks::Webhook;

/// What the receiver answers, in turn; once they run out, 204.
#[derive(Clone, Debug)]
enum Answer {
    Status(u16),
    RetryAfter(u16, u64),
    Redirect,
    Slow(Duration),
}

/// One verified delivery.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    body: Value,
    at: Instant,
}

#[derive(Clone)]
struct Receiver {
    verifier: Arc<Webhook>,
    answers: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
    redirected: Arc<Mutex<u32>>,
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    // Every delivery must verify: a forged or broken one fails the test.
    receiver.verifier.verify(&body, &headers).unwrap();
    let answer = receiver.answers.lock().unwrap().pop_front();
    receiver.received.lock().unwrap().push(Received {
        id: headers["webhook-id"].to_str().unwrap().to_owned(),
        body: serde_json::from_slice(&body).unwrap(),
        at: Instant::now(),
    });
    match answer {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(Answer::Status(status)) => StatusCode::from_u16(status).unwrap().into_response(),
        Some(Answer::RetryAfter(status, seconds)) => (
            StatusCode::from_u16(status).unwrap(),
            [("retry-after", seconds.to_string())],
        )
            .into_response(),
        Some(Answer::Redirect) => (StatusCode::FOUND, [("location", "/elsewhere")]).into_response(),
        Some(Answer::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn elsewhere(State(receiver): State<Receiver>) -> StatusCode {
    *receiver.redirected.lock().unwrap() += 1;
    StatusCode::NO_CONTENT
}

/// A chat service with webhooks to a receiver answering `answers`, and its pool.
struct Setup {
    chat: ChatService,
    store: Arc<InMemoryRepository>,
    receiver: Receiver,
    sender: WebhookSender,
    pool: WorkerPool,
    url: String,
}

async fn setup(answers: Vec<Answer>, events: Vec<WebhookEvent>, waits: Vec<Duration>) -> Setup {
    let secret = WebhookSecret::generate().unwrap();
    let receiver = Receiver {
        verifier: Arc::new(Webhook::new(&secret.to_text()).unwrap()),
        answers: Arc::new(Mutex::new(answers.into())),
        received: Arc::default(),
        redirected: Arc::default(),
    };
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/elsewhere", post(elsewhere).get(elsewhere))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = WebhookConfig {
        endpoints: vec![WebhookConfig::endpoint(&url).unwrap()],
        secret,
        events,
        undelivered_after: Duration::from_millis(400),
        timeout: Duration::from_millis(300),
        schedule: RetrySchedule::new(waits),
    };
    let store = Arc::new(InMemoryRepository::new());
    let waker = PoolWaker::new();
    let chat = ChatService::new(store.clone(), Arc::new(InProcessNotifier::new()))
        .with_jobs(Arc::new(WebhookPlan::new(&config, waker.clone())));
    let sender = WebhookSender::new(chat.clone(), &config).unwrap();
    let pool = WorkerPool::start(
        store.clone(),
        vec![Arc::new(sender.clone())],
        PoolConfig {
            workers: 4,
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(50),
        },
        waker,
        None,
    );
    Setup {
        chat,
        store,
        receiver,
        sender,
        pool,
        url,
    }
}

impl Setup {
    async fn send(&self, text: &str) -> MessageId {
        self.chat
            .send(
                UserId::new(1),
                SendMessage {
                    receiver_id: UserId::new(2),
                    message: text.to_owned(),
                    client_message_id: None,
                },
            )
            .await
            .unwrap()
            .message
            .id
    }

    /// Waits (up to 10 s) until `done` holds of what was received.
    async fn until(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.receiver.received.lock().unwrap().clone();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; received {received:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until the pool's counts satisfy `done`.
    async fn counted(&self, done: impl Fn(&chat_webhooks::PoolStats) -> bool) {
        let stats = self.pool.stats();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&stats) {
            assert!(Instant::now() < deadline, "timed out; counts: {stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until the store holds `count` jobs in `state`.
    async fn jobs_in(&self, state: JobState, count: usize) -> Vec<chat_core::Job> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let jobs = self.store.list(state, 100).await.unwrap();
            if jobs.len() == count {
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; {state:?} jobs: {jobs:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const CREATED: [WebhookEvent; 1] = [WebhookEvent::MessageCreated];
const SHORT: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(50),
    Duration::from_millis(50),
];

#[tokio::test]
async fn a_message_is_delivered_signed_in_the_standard_shape() {
    let setup = setup(vec![], CREATED.to_vec(), SHORT.to_vec()).await;
    let id = setup.send("hello hooks").await;
    let received = setup.until(|r| !r.is_empty()).await;
    let body = &received[0].body;
    assert_eq!(body["type"], "message.created");
    assert_eq!(body["data"]["message"]["id"], id.get());
    assert_eq!(body["data"]["message"]["message"], "hello hooks");
    assert_eq!(body["data"]["message"]["status"], "sent");
    assert_eq!(body["timestamp"], body["data"]["message"]["created_at"]);
    assert!(received[0].id.starts_with("msg_"));
    // Done: the job is gone, and nothing more arrives.
    setup.jobs_in(JobState::Pending, 0).await;
    setup.jobs_in(JobState::Dead, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(setup.receiver.received.lock().unwrap().len(), 1);
    setup.counted(|s| s.succeeded() == 1).await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_webhook_id() {
    let setup = setup(
        vec![Answer::Status(500), Answer::Status(503)],
        CREATED.to_vec(),
        SHORT.to_vec(),
    )
    .await;
    setup.send("try again").await;
    let received = setup.until(|r| r.len() == 3).await;
    assert!(received.iter().all(|r| r.id == received[0].id));
    assert!(received.iter().all(|r| r.body == received[0].body));
    setup.jobs_in(JobState::Pending, 0).await;
    setup.counted(|s| s.retried() == 2).await;
    setup.counted(|s| s.succeeded() == 1).await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let setup = setup(
        vec![Answer::RetryAfter(429, 1)],
        CREATED.to_vec(),
        SHORT.to_vec(),
    )
    .await;
    setup.send("slow down").await;
    let received = setup.until(|r| r.len() == 2).await;
    // The schedule alone would retry after 50 ms; the receiver asked for a second.
    assert!(received[1].at - received[0].at >= Duration::from_millis(950));
    assert_eq!(received[0].id, received[1].id);
}

#[tokio::test]
async fn gone_disables_the_endpoint() {
    let setup = setup(vec![Answer::Status(410)], CREATED.to_vec(), SHORT.to_vec()).await;
    setup.send("first").await;
    let dead = setup.jobs_in(JobState::Dead, 1).await;
    assert!(dead[0].last_error.as_deref().unwrap().contains("410"));
    assert!(setup.sender.is_disabled(&setup.url));
    // Nothing more is sent to it: the next job is dead without a request.
    setup.send("second").await;
    let dead = setup.jobs_in(JobState::Dead, 2).await;
    assert!(dead[1].last_error.as_deref().unwrap().contains("disabled"));
    assert_eq!(setup.receiver.received.lock().unwrap().len(), 1);
    // An operator retries it once the endpoint is back: still disabled in this process.
    assert!(
        setup
            .store
            .retry(dead[0].id, chat_core::timestamp::now())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_timeout_fails_the_attempt_and_the_next_one_delivers() {
    let setup = setup(
        vec![Answer::Slow(Duration::from_millis(1500))],
        CREATED.to_vec(),
        SHORT.to_vec(),
    )
    .await;
    setup.send("are you there").await;
    let received = setup.until(|r| r.len() == 2).await;
    assert_eq!(received[0].id, received[1].id);
    setup.jobs_in(JobState::Pending, 0).await;
    setup.counted(|s| s.retried() == 1).await;
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    // No retries: the first failure is the last.
    let setup = setup(vec![Answer::Redirect], CREATED.to_vec(), vec![]).await;
    setup.send("go away").await;
    let dead = setup.jobs_in(JobState::Dead, 1).await;
    let error = dead[0].last_error.clone().unwrap();
    assert!(
        error.contains("302") && error.contains("redirect"),
        "{error}"
    );
    assert_eq!(*setup.receiver.redirected.lock().unwrap(), 0);
    setup.counted(|s| s.dead() == 1).await;
}

#[tokio::test]
async fn undelivered_fires_once_only_for_a_message_still_undelivered() {
    let setup = setup(
        vec![],
        vec![WebhookEvent::MessageUndelivered],
        SHORT.to_vec(),
    )
    .await;
    let delivered = setup.send("you got this").await;
    let missed = setup.send("you missed this").await;
    // The receiver's device acknowledges the first within the 400 ms.
    setup
        .chat
        .mark_messages_delivered(UserId::new(2), &[delivered])
        .await
        .unwrap();
    let received = setup.until(|r| !r.is_empty()).await;
    assert_eq!(received[0].body["type"], "message.undelivered");
    assert_eq!(received[0].body["data"]["message"]["id"], missed.get());
    setup.jobs_in(JobState::Pending, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(setup.receiver.received.lock().unwrap().len(), 1);
    setup.counted(|s| s.skipped() == 1).await;
}

#[tokio::test]
async fn reads_are_told_for_each_message_and_whole_conversations() {
    let setup = setup(vec![], vec![WebhookEvent::MessageRead], SHORT.to_vec()).await;
    let one = setup.send("one").await;
    let two = setup.send("two").await;
    setup
        .chat
        .mark_message_read(UserId::new(2), one)
        .await
        .unwrap();
    setup
        .chat
        .mark_conversation_read(UserId::new(2), UserId::new(1), None)
        .await
        .unwrap();
    let received = setup.until(|r| r.len() == 2).await;
    let mut ids: Vec<_> = received
        .iter()
        .map(|r| {
            assert_eq!(r.body["type"], "message.read");
            assert_eq!(r.body["data"]["message"]["status"], "read");
            r.body["data"]["message"]["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![one.get(), two.get()]);
    assert_ne!(received[0].id, received[1].id);
    assert_eq!(setup.chat.jobs_enqueued(), 2);
}

#[tokio::test]
async fn shutdown_gives_back_a_job_in_flight() {
    let setup = setup(
        vec![Answer::Slow(Duration::from_millis(250))],
        CREATED.to_vec(),
        SHORT.to_vec(),
    )
    .await;
    setup.send("interrupted").await;
    setup.until(|r| !r.is_empty()).await;
    let stats = setup.pool.stats();
    // The grace ends before the receiver answers: the job is given back, pending.
    setup.pool.shut_down(Duration::from_millis(10)).await;
    assert_eq!(stats.released(), 1);
    let pending = setup.store.list(JobState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("shutdown")
    );
}
