//! Webhooks from the real binary to a receiver in this process that verifies every
//! delivery with the `standardwebhooks` crate:
//!
//! - SIGKILL after the send's 201, while the delivery is in flight: after a restart on
//!   the same SQLite file the webhook arrives, with the same `webhook-id`;
//! - a dead delivery seen, retried and discarded with `chat-server jobs`; metrics;
//! - two nodes on one Postgres schema: every job delivered by one node only, and a node
//!   killed holding a lease has its job delivered by the other once the lease ends.
//!
//! The Postgres tests read `CHAT_TEST_POSTGRES_URL` and skip (passing, with a printed
//! reason) without it, unless `CHAT_REQUIRE_SERVICES=1`.
#![allow(clippy::unwrap_used)]

mod process;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chat_webhooks::WebhookSecret;
use process::{Database, Server, http_client, runtime, send, serial};
use serde_json::Value;
use standardwebhooks::Webhook;

/// One verified delivery.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    body: Value,
}

/// A webhook receiver on a loopback port.
#[derive(Clone)]
struct Receiver {
    verifier: Arc<Webhook>,
    /// While set, requests are held unanswered (a slow receiver, so a delivery is in
    /// flight when the server is killed).
    hold: Arc<AtomicBool>,
    /// The status answered (204 until changed).
    status: Arc<AtomicU16>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.verifier.verify(&body, &headers).unwrap();
    receiver.deliveries.lock().unwrap().push(Delivery {
        id: headers["webhook-id"].to_str().unwrap().to_owned(),
        body: serde_json::from_slice(&body).unwrap(),
    });
    // Bounded: a held request ends after a minute whatever happens.
    for _ in 0..600 {
        if !receiver.hold.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).unwrap()
}

impl Receiver {
    /// Starts a receiver; its URL and the server flags that point webhooks at it.
    async fn start() -> (Self, Vec<String>) {
        let secret = WebhookSecret::generate().unwrap();
        let receiver = Self {
            verifier: Arc::new(Webhook::new(&secret.to_text()).unwrap()),
            hold: Arc::default(),
            status: Arc::new(AtomicU16::new(204)),
            deliveries: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let flags = [
            "--webhook-url",
            &url,
            "--webhook-secret",
            &secret.to_text(),
            "--webhook-events",
            "message.created",
            "--webhook-timeout-seconds",
            "5",
            "--webhook-retry-schedule",
            "1s,1s",
            "--job-lease-seconds",
            "6",
        ]
        .map(str::to_owned)
        .to_vec();
        (receiver, flags)
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until `done` holds of the deliveries so far.
    async fn until(&self, limit: Duration, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + limit;
        loop {
            let deliveries = self.deliveries();
            if done(&deliveries) {
                return deliveries;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; deliveries: {deliveries:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn flags(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

/// The message id of a delivery.
fn message_id(delivery: &Delivery) -> i64 {
    delivery.body["data"]["message"]["id"].as_i64().unwrap()
}

#[test]
fn a_delivery_cut_by_sigkill_arrives_after_the_restart_with_the_same_id() {
    let _serial = serial();
    runtime().block_on(async {
        let (receiver, webhook) = Receiver::start().await;
        let database = Database::sqlite();
        let mut server = Server::start(&database, &flags(&webhook)).await;
        let client = http_client(Duration::from_secs(10));
        receiver.hold.store(true, Ordering::SeqCst);
        let sent = send(&client, &server.base(), 1, 2, "survive a crash", "k1")
            .await
            .unwrap();
        assert_eq!(sent.status, 201);
        // The delivery is in flight, unanswered, when the server dies.
        let first = receiver
            .until(Duration::from_secs(10), |d| d.len() == 1)
            .await;
        server.kill9();
        receiver.hold.store(false, Ordering::SeqCst);
        server.restart().await;
        // After the dead node's lease, the job runs again: the same webhook, once more.
        let all = receiver
            .until(Duration::from_secs(20), |d| d.len() == 2)
            .await;
        assert_eq!(all[1].id, first[0].id);
        assert_eq!(all[1].body, first[0].body);
        assert_eq!(message_id(&all[1]), sent.id.unwrap());
        // Done now: nothing more comes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(receiver.deliveries().len(), 2);
        let succeeded = server
            .metric(&client, "chat_jobs_finished_total{outcome=\"succeeded\"}")
            .await;
        assert_eq!(succeeded, Some(1.0));
        assert_eq!(
            server.metric(&client, "chat_jobs_enqueued_total").await,
            Some(0.0)
        );
        assert_eq!(
            server
                .metric(&client, "chat_job_delivery_seconds_count")
                .await,
            Some(1.0)
        );
    });
}

/// `chat-server jobs …` on the SQLite file of `database`.
fn jobs_cli(database: &Database, args: &[&str]) -> (bool, String) {
    let Database::Sqlite { dir } = database else {
        panic!("a SQLite database")
    };
    let output = std::process::Command::new(process::BIN)
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("chat.db").display()))
        .arg("jobs")
        .args(args)
        .env_remove("CHAT_DATABASE_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn operators_see_retry_and_discard_dead_deliveries() {
    let _serial = serial();
    runtime().block_on(async {
        let (receiver, webhook) = Receiver::start().await;
        // The receiver is gone for good: the endpoint is disabled, the job dead.
        receiver.status.store(410, Ordering::SeqCst);
        let database = Database::sqlite();
        let mut server = Server::start(&database, &flags(&webhook)).await;
        let client = http_client(Duration::from_secs(10));
        let sent = send(&client, &server.base(), 1, 2, "to nowhere", "k1")
            .await
            .unwrap();
        receiver
            .until(Duration::from_secs(10), |d| d.len() == 1)
            .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while server
            .metric(&client, "chat_jobs_finished_total{outcome=\"dead\"}")
            .await
            != Some(1.0)
        {
            assert!(Instant::now() < deadline, "the job did not die");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.kill9();

        let (ok, listed) = jobs_cli(&database, &["list", "--state", "dead", "--json"]);
        assert!(ok, "{listed}");
        let dead: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
        assert_eq!(dead["state"], "dead");
        assert_eq!(dead["message_id"], sent.id.unwrap());
        assert_eq!(dead["payload"]["event"], "message.created");
        assert!(dead["last_error"].as_str().unwrap().contains("410"));
        let id = dead["id"].as_i64().unwrap().to_string();
        let (ok, table) = jobs_cli(&database, &["list"]);
        assert!(
            ok && table.contains("410") && table.contains("message.created"),
            "{table}"
        );

        let (ok, text) = jobs_cli(&database, &["retry", &id]);
        assert!(ok, "{text}");
        let (_, pending) = jobs_cli(&database, &["list", "--state", "pending", "--json"]);
        assert_eq!(pending.lines().count(), 1, "{pending}");
        // Only a dead job can be retried.
        let (ok, text) = jobs_cli(&database, &["retry", &id]);
        assert!(!ok && text.contains("no dead job"), "{text}");
        let (ok, text) = jobs_cli(&database, &["discard", &id]);
        assert!(ok, "{text}");
        let (_, none) = jobs_cli(&database, &["list", "--state", "pending"]);
        assert!(none.contains("no jobs"), "{none}");
        let (ok, text) = jobs_cli(&database, &["discard", &id]);
        assert!(!ok, "{text}");
        let (ok, text) = jobs_cli(&database, &["list", "--state", "nonsense"]);
        assert!(!ok, "{text}");
    });
}

#[test]
fn undelivered_fires_only_for_a_message_no_device_acknowledged() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let _serial = serial();
    runtime().block_on(async {
        let (receiver, mut webhook) = Receiver::start().await;
        let events = webhook
            .iter()
            .position(|f| f == "--webhook-events")
            .unwrap();
        webhook[events + 1] = "message.undelivered".to_owned();
        webhook.extend(["--webhook-undelivered-after-seconds", "2"].map(str::to_owned));
        let database = Database::sqlite();
        let server = Server::start(&database, &flags(&webhook)).await;
        let client = http_client(Duration::from_secs(10));
        // User 2's device is connected and acknowledges what it receives; user 3 has no
        // device.
        let mut request = server.ws_url("").into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", process::token(2)).parse().unwrap(),
        );
        let (mut device, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let acknowledged = send(&client, &server.base(), 1, 2, "seen in time", "k1")
            .await
            .unwrap()
            .id
            .unwrap();
        let missed = send(&client, &server.base(), 1, 3, "nobody home", "k2")
            .await
            .unwrap()
            .id
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "the message never reached the device"
            );
            let frame = tokio::time::timeout(Duration::from_secs(10), device.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Frame::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] == "message" && value["data"]["id"] == acknowledged {
                let ack = serde_json::json!({"type": "ack", "ids": [acknowledged]});
                device.send(Frame::text(ack.to_string())).await.unwrap();
                break;
            }
        }
        let heard = receiver
            .until(Duration::from_secs(15), |d| !d.is_empty())
            .await;
        assert_eq!(heard[0].body["type"], "message.undelivered");
        assert_eq!(message_id(&heard[0]), missed);
        // The acknowledged message's job ran and found nothing to tell.
        let skipped = "chat_jobs_finished_total{outcome=\"skipped\"}";
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.metric(&client, skipped).await != Some(1.0) {
            assert!(
                Instant::now() < deadline,
                "the acknowledged message's job did not run"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(receiver.deliveries().len(), 1);
    });
}

#[test]
fn two_nodes_on_postgres_deliver_each_job_once_and_take_over_a_dead_nodes_lease() {
    let Some(url) = process::postgres_url() else {
        return;
    };
    let _serial = serial();
    runtime().block_on(async {
        let (receiver, webhook) = Receiver::start().await;
        let database = Database::postgres(&url, "webhooks").await;
        let mut first = Server::start(&database, &flags(&webhook)).await;
        let second = Server::start(&database, &flags(&webhook)).await;
        let client = http_client(Duration::from_secs(10));

        // Sends through both nodes: each job delivered by exactly one of them.
        let mut sent = HashSet::new();
        for n in 0..40_i64 {
            let node = if n % 2 == 0 { &first } else { &second };
            let key = format!("k{n}");
            let answer = send(&client, &node.base(), 1 + n % 4, 10, "hello", &key)
                .await
                .unwrap();
            assert_eq!(answer.status, 201, "{}", answer.body);
            sent.insert(answer.id.unwrap());
        }
        receiver
            .until(Duration::from_secs(20), |d| d.len() >= 40)
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let deliveries = receiver.deliveries();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for delivery in &deliveries {
            *by_id.entry(&delivery.id).or_default() += 1;
        }
        assert!(
            by_id.values().all(|&count| count == 1),
            "a job delivered twice: {by_id:?}"
        );
        let delivered: HashSet<i64> = deliveries.iter().map(message_id).collect();
        assert_eq!(delivered, sent);
        let succeeded = "chat_jobs_finished_total{outcome=\"succeeded\"}";
        assert_eq!(
            first.metric(&client, succeeded).await.unwrap()
                + second.metric(&client, succeeded).await.unwrap(),
            40.0
        );

        // The first node dies holding a lease: the second delivers after it ends.
        drop(second);
        receiver.hold.store(true, Ordering::SeqCst);
        let answer = send(&client, &first.base(), 1, 10, "orphaned", "orphan")
            .await
            .unwrap();
        let held = receiver
            .until(Duration::from_secs(10), |d| d.len() == 41)
            .await;
        let second = Server::start(&database, &flags(&webhook)).await;
        first.kill9();
        receiver.hold.store(false, Ordering::SeqCst);
        let taken_over = receiver
            .until(Duration::from_secs(20), |d| d.len() == 42)
            .await;
        assert_eq!(taken_over[41].id, held[40].id);
        assert_eq!(message_id(&taken_over[41]), answer.id.unwrap());
        // The success is recorded once the receiver's answer is back.
        let deadline = Instant::now() + Duration::from_secs(10);
        while second.metric(&client, succeeded).await != Some(1.0) {
            assert!(Instant::now() < deadline, "the delivery was not recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
