//! Webhooks at work: which jobs chat changes cause ([`WebhookPlan`]) and how one is
//! delivered ([`WebhookSender`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_core::{
    ChatService, Job, Message, MessageJobs, MessageStatus, NewJob, UserId, async_trait, timestamp,
};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::worker::{JobHandler, PoolWaker, Verdict};
use crate::{RetrySchedule, WebhookEvent, WebhookSecret, payload, signature};

/// The kind of the jobs that deliver webhooks.
pub const WEBHOOK_JOB: &str = "webhook";

/// What webhooks go where.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The endpoints: each gets every event, with its own retries.
    pub endpoints: Vec<reqwest::Url>,
    /// The secret deliveries are signed with.
    pub secret: WebhookSecret,
    /// The events sent.
    pub events: Vec<WebhookEvent>,
    /// How long a message stays undelivered before `message.undelivered` is sent.
    pub undelivered_after: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// When failed deliveries are tried again.
    pub schedule: RetrySchedule,
}

impl WebhookConfig {
    /// Checks an endpoint URL: absolute `http` or `https`.
    pub fn endpoint(url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|error| format!("webhook URL {url:?}: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(format!(
                "webhook URL {url:?} must be an absolute http:// or https:// URL"
            ));
        }
        Ok(parsed)
    }
}

/// The job of one delivery, as stored: what to send where, and its `webhook-id`.
#[derive(Debug, Serialize, Deserialize)]
struct Delivery {
    /// The random part of the `webhook-id`, which ends with the message id: one read
    /// of many messages stores a copy of this job for each.
    webhook_id: String,
    event: String,
    url: String,
}

/// What a webhook job delivers, for people: `message.created -> https://…`; `None` for
/// a payload that is not a webhook delivery.
pub fn describe(payload: &str) -> Option<String> {
    let delivery: Delivery = serde_json::from_str(payload).ok()?;
    Some(format!("{} -> {}", delivery.event, delivery.url))
}

/// The webhook jobs of chat changes: one per event and endpoint, so that each endpoint
/// retries on its own. A message's `message.undelivered` job is due when the message has
/// been undelivered for the configured time.
#[derive(Debug, Clone)]
pub struct WebhookPlan {
    endpoints: Vec<String>,
    events: Vec<WebhookEvent>,
    undelivered_after: Duration,
    waker: PoolWaker,
}

impl WebhookPlan {
    /// The plan of `config`, waking the pool behind `waker` when jobs are stored.
    pub fn new(config: &WebhookConfig, waker: PoolWaker) -> Self {
        Self {
            endpoints: config.endpoints.iter().map(ToString::to_string).collect(),
            events: config.events.clone(),
            undelivered_after: config.undelivered_after,
            waker,
        }
    }

    fn jobs(&self, event: WebhookEvent, due_at: OffsetDateTime, into: &mut Vec<NewJob>) {
        if !self.events.contains(&event) {
            return;
        }
        for url in &self.endpoints {
            let delivery = Delivery {
                webhook_id: webhook_id(),
                event: event.name().to_owned(),
                url: url.clone(),
            };
            into.push(NewJob {
                kind: WEBHOOK_JOB.to_owned(),
                subject: None,
                // Plain strings always serialize.
                payload: serde_json::to_string(&delivery).unwrap_or_default(),
                due_at,
            });
        }
    }
}

/// The random part of a fresh `webhook-id`: `msg_` and 128 random bits, unique across
/// databases.
fn webhook_id() -> String {
    let mut bytes = [0_u8; 16];
    // Without randomness (never on Linux), the id is still unique within the job's
    // lifetime: the time in nanoseconds.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = timestamp::now().unix_timestamp_nanos().to_be_bytes();
    }
    format!("msg_{:032x}", u128::from_be_bytes(bytes))
}

impl MessageJobs for WebhookPlan {
    fn created(&self, _: UserId, _: UserId, created_at: OffsetDateTime) -> Vec<NewJob> {
        let mut jobs = Vec::new();
        self.jobs(WebhookEvent::MessageCreated, created_at, &mut jobs);
        self.jobs(
            WebhookEvent::MessageUndelivered,
            created_at + self.undelivered_after,
            &mut jobs,
        );
        jobs
    }

    fn read(&self, _: UserId, read_at: OffsetDateTime) -> Vec<NewJob> {
        let mut jobs = Vec::new();
        self.jobs(WebhookEvent::MessageRead, read_at, &mut jobs);
        jobs
    }

    fn stored(&self) {
        self.waker.wake();
    }
}

/// An endpoint as the sender knows it.
#[derive(Debug)]
struct Endpoint {
    /// Set after the endpoint answered 410 Gone: nothing more is sent to it until the
    /// server restarts with it configured.
    disabled: AtomicBool,
}

/// Delivers webhook jobs: signs the body, posts it with a timeout and without following
/// redirects, and decides from the answer: 2xx done, 410 disables the endpoint, anything
/// else tried again on the schedule (or dead after the last attempt).
#[derive(Debug, Clone)]
pub struct WebhookSender {
    chat: ChatService,
    client: reqwest::Client,
    secret: WebhookSecret,
    schedule: RetrySchedule,
    timeout: Duration,
    endpoints: Arc<HashMap<String, Endpoint>>,
}

impl WebhookSender {
    /// A sender for `config`, reading the messages it tells of from `chat`.
    pub fn new(chat: ChatService, config: &WebhookConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()?;
        Ok(Self {
            chat,
            client,
            secret: config.secret.clone(),
            schedule: config.schedule.clone(),
            timeout: config.timeout,
            endpoints: Arc::new(
                config
                    .endpoints
                    .iter()
                    .map(|url| {
                        let endpoint = Endpoint {
                            disabled: AtomicBool::new(false),
                        };
                        (url.to_string(), endpoint)
                    })
                    .collect(),
            ),
        })
    }

    /// Whether `url` answered 410 Gone and receives nothing more.
    pub fn is_disabled(&self, url: &str) -> bool {
        self.endpoints
            .get(url)
            .is_some_and(|endpoint| endpoint.disabled.load(Ordering::Relaxed))
    }

    /// The body of `event` about `message`, and its timestamp. The body is the same on
    /// every attempt: `message.created` shows the message as it was created.
    fn body(event: WebhookEvent, job: &Job, message: Message) -> String {
        match event {
            WebhookEvent::MessageCreated => {
                let created = Message {
                    status: MessageStatus::Sent,
                    updated_at: message.created_at,
                    delivered_at: None,
                    read_at: None,
                    ..message
                };
                payload(event, created.created_at, &created)
            }
            WebhookEvent::MessageRead => {
                let at = message.read_at.unwrap_or(job.due_at);
                payload(event, at, &message)
            }
            WebhookEvent::MessageUndelivered => payload(event, job.due_at, &message),
        }
    }

    /// A failed attempt: tried again on the schedule, or dead after the last.
    fn failed(&self, job: &Job, error: String, retry_after: Option<Duration>) -> Verdict {
        match self.schedule.next_wait_jittered(job.attempts, retry_after) {
            Some(wait) => Verdict::Retry {
                error,
                at: timestamp::now() + wait,
            },
            None => Verdict::Dead { error },
        }
    }
}

#[async_trait]
impl JobHandler for WebhookSender {
    fn kind(&self) -> &'static str {
        WEBHOOK_JOB
    }

    async fn run(&self, job: &Job) -> Verdict {
        let Ok(delivery) = serde_json::from_str::<Delivery>(&job.payload) else {
            return Verdict::Dead {
                error: "the job's payload is not a webhook delivery".to_owned(),
            };
        };
        let Ok(event) = delivery.event.parse::<WebhookEvent>() else {
            return Verdict::Dead {
                error: format!("unknown webhook event {:?}", delivery.event),
            };
        };
        let Some(endpoint) = self.endpoints.get(&delivery.url) else {
            return Verdict::Dead {
                error: format!("{} is no longer a configured endpoint", delivery.url),
            };
        };
        if endpoint.disabled.load(Ordering::Relaxed) {
            return Verdict::Dead {
                error: format!("{} is disabled: it answered 410 Gone", delivery.url),
            };
        }
        let Some(subject) = job.subject else {
            return Verdict::Dead {
                error: "the job names no message".to_owned(),
            };
        };
        let found = if event == WebhookEvent::MessageUndelivered {
            self.chat.still_undelivered(subject).await
        } else {
            self.chat.stored_message(subject).await
        };
        let message = match found {
            Ok(Some(message)) => message,
            // Gone, or (for `message.undelivered`) delivered since: nothing to tell.
            Ok(None) => return Verdict::Skipped,
            Err(error) => {
                return self.failed(job, format!("cannot read the message: {error}"), None);
            }
        };
        let body = Self::body(event, job, message);
        let webhook_id = format!("{}_{subject}", delivery.webhook_id);
        let sent_at = timestamp::now().unix_timestamp();
        let mut headers = HeaderMap::new();
        for (name, value) in signature::headers(&self.secret, &webhook_id, sent_at, body.as_bytes())
        {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            "application/json".parse().expect("a valid header"),
        );
        headers.insert(
            USER_AGENT,
            concat!("chat-webhooks/", env!("CARGO_PKG_VERSION"))
                .parse()
                .expect("a valid header"),
        );
        let answer = self
            .client
            .post(&delivery.url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => Verdict::Done,
            Ok(response) if response.status() == StatusCode::GONE => {
                endpoint.disabled.store(true, Ordering::Relaxed);
                tracing::warn!(url = %delivery.url, "webhook endpoint answered 410 Gone: disabled");
                Verdict::Dead {
                    error: "410 Gone: the endpoint is disabled".to_owned(),
                }
            }
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let error = if status.is_redirection() {
                    format!("HTTP {status}: redirects are not followed")
                } else {
                    format!("HTTP {status}")
                };
                self.failed(job, error, retry_after)
            }
            Err(error) if error.is_timeout() => self.failed(
                job,
                format!("no answer within {} ms", self.timeout.as_millis()),
                None,
            ),
            Err(error) => self.failed(job, format!("cannot deliver: {error}"), None),
        }
    }
}

/// A `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::format_description::well_known::Rfc2822;
    let at = OffsetDateTime::parse(value, &format).ok()?;
    (at - timestamp::now()).try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().expect("a header value"));
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            retry_after(&with_retry_after("120")),
            Some(Duration::from_secs(120))
        );
        let later = timestamp::now() + Duration::from_secs(600);
        let date = later
            .format(&time::format_description::well_known::Rfc2822)
            .expect("formats");
        let http_date = format!("{} GMT", date.trim_end_matches(" +0000"));
        let wait = retry_after(&with_retry_after(&http_date)).expect("an HTTP date parses");
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600));
        // A date in the past, or nonsense, asks for nothing.
        assert_eq!(
            retry_after(&with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(retry_after(&with_retry_after("soon")), None);
    }

    #[test]
    fn a_plan_makes_one_job_per_event_and_endpoint_with_fresh_ids() {
        let config = WebhookConfig {
            endpoints: vec![
                WebhookConfig::endpoint("http://127.0.0.1:9/a").expect("valid"),
                WebhookConfig::endpoint("https://example.com/b").expect("valid"),
            ],
            secret: WebhookSecret::generate().expect("random bytes"),
            events: WebhookEvent::ALL.to_vec(),
            undelivered_after: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            schedule: RetrySchedule::default(),
        };
        let plan = WebhookPlan::new(&config, PoolWaker::new());
        let now = timestamp::now();
        let jobs = plan.created(UserId::new(1), UserId::new(2), now);
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].due_at, now);
        assert_eq!(jobs[2].due_at, now + Duration::from_secs(30));
        let ids: std::collections::HashSet<_> = jobs
            .iter()
            .map(|job| {
                serde_json::from_str::<Delivery>(&job.payload)
                    .expect("a delivery")
                    .webhook_id
            })
            .collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(plan.read(UserId::new(2), now).len(), 2);
        for bad in ["ftp://example.com/x", "/relative", "http://", "not a url"] {
            assert!(WebhookConfig::endpoint(bad).is_err(), "{bad}");
        }
    }
}
