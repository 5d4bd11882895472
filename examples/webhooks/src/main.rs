//! Run with: cargo run -p example-webhooks
//!
//! Webhooks end to end, in one process: a receiver (the part a host writes, in
//! `receive`) verifies each delivery's Standard Webhooks signature before it trusts the
//! body; a chat with webhooks on sends to it. Alice writes to Bob, Bob's device never
//! acknowledges the first message, and Bob reads the second: the receiver hears
//! `message.created` twice, `message.read` once and `message.undelivered` once.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chat::webhooks::signature::verify;
use chat::webhooks::{
    PoolConfig, PoolWaker, RetrySchedule, WebhookConfig, WebhookEvent, WebhookPlan, WebhookSecret,
    WebhookSender, WorkerPool,
};
use chat::{ChatService, InMemoryRepository, InProcessNotifier, SendMessage, UserId};
use tokio::sync::mpsc;

/// What the receiver learned: the event's type and the message's text.
type Heard = (String, String);

/// The receiver's handler: verify, then act. A delivery that does not verify is
/// refused with 401 and never looked at; a repeated `webhook-id` would be ignored by a
/// receiver that keeps the ids it handled (delivery is at least once).
async fn receive(
    State((secret, heard)): State<(Arc<WebhookSecret>, mpsc::Sender<Heard>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = verify(
        &secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        now,
    );
    if let Err(error) = verified {
        eprintln!("refused a delivery: {error}");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let kind = event["type"].as_str().unwrap_or_default().to_owned();
    let text = event["data"]["message"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("{} {kind}: {text:?}", header("webhook-id"));
    let _ = heard.send((kind, text)).await;
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The receiver, on a loopback port.
    let secret = WebhookSecret::generate()?;
    let (heard_tx, mut heard) = mpsc::channel(16);
    let app = Router::new()
        .route("/hooks/chat", post(receive))
        .with_state((Arc::new(secret.clone()), heard_tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks/chat", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The chat, with webhooks to it: jobs go to the store's outbox with each change,
    // and the pool delivers them.
    let config = WebhookConfig {
        endpoints: vec![WebhookConfig::endpoint(&url)?],
        secret,
        events: WebhookEvent::ALL.to_vec(),
        undelivered_after: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        schedule: RetrySchedule::default(),
    };
    let store = Arc::new(InMemoryRepository::new());
    let waker = PoolWaker::new();
    let chat = ChatService::new(store.clone(), Arc::new(InProcessNotifier::new()))
        .with_jobs(Arc::new(WebhookPlan::new(&config, waker.clone())));
    let sender = WebhookSender::new(chat.clone(), &config)?;
    let pool = WorkerPool::start(
        store,
        vec![Arc::new(sender)],
        PoolConfig::default(),
        waker,
        None,
    );

    let (alice, bob) = (UserId::new(1), UserId::new(2));
    let to_bob = |text: &str| SendMessage {
        receiver_id: bob,
        message: text.into(),
        client_message_id: None,
    };
    chat.send(alice, to_bob("Are you there?")).await?;
    let second = chat.send(alice, to_bob("Lunch at noon?")).await?.message;
    chat.mark_message_read(bob, second.id).await?;

    let mut all = Vec::new();
    while all.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), heard.recv()).await {
            Ok(Some(one)) => all.push(one),
            _ => return Err("the webhooks did not all arrive".into()),
        }
    }
    all.sort();
    let expected = [
        ("message.created", "Are you there?"),
        ("message.created", "Lunch at noon?"),
        ("message.read", "Lunch at noon?"),
        ("message.undelivered", "Are you there?"),
    ];
    assert!(
        all.iter()
            .zip(expected)
            .all(|((kind, text), (k, t))| kind == k && text == t),
        "unexpected webhooks: {all:?}"
    );
    pool.shut_down(Duration::from_secs(5)).await;
    println!("every webhook arrived, verified");
    Ok(())
}
