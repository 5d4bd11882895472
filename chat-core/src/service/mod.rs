//! `ChatService`: every chat rule, in one place.

mod admission;
mod config;
mod feed;
mod presence;
mod readiness;
pub(crate) mod validation;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use crate::block::{Block, Blocked};
use crate::error::{Error, ValidationErrors};
use crate::event::{Event, Receipt, Typing};
use crate::ids::{MessageId, UserId};
use crate::memory::{InMemoryPresence, InMemoryRepository, InProcessBroadcast, InProcessNotifier};
use crate::message::{
    Amendment, Change, FeedEntry, Message, MessageStatus, NewMessageRecord, SendMessage,
    SendOutcome,
};
use crate::page::{Conversations, History, HistoryPosition, HistoryQuery, HistoryRequest};
use crate::ports::{
    Broadcast, DefaultPolicy, EventStream, MessageJobs, MessageRepository, NewJob, Notifier,
    Policy, Presence, RateDecision, RateLimiter,
};
use crate::timestamp;

pub use admission::Admission;
pub use config::ChatConfig;
pub use feed::{Feed, FeedStart, FeedUpdate};
pub use presence::{MAX_PRESENCE_GRACE, MAX_PRESENCE_USERS};
pub use readiness::Readiness;
pub use validation::MAX_CLIENT_MESSAGE_ID_CHARS;

/// A sender's send allowance after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    /// The burst size of the limit.
    pub limit: u32,
    /// Sends still allowed right now.
    pub remaining: u32,
    /// Set when this attempt was refused: how long until one would pass.
    pub retry_after: Option<Duration>,
}

/// A read receipt as a client sent it: `ids`, or `user_id` with an optional
/// `up_to_id`; see [`ChatService::mark_read_request`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// These messages.
    pub ids: Option<Vec<MessageId>>,
    /// The conversation with this user.
    pub user_id: Option<UserId>,
    /// In the conversation, up to this id.
    pub up_to_id: Option<MessageId>,
}

/// What became of a send attempt, and the sender's allowance after it.
#[derive(Debug)]
pub struct SendAttempt<E> {
    /// The allowance left, when a send limiter is configured.
    pub allowance: Option<RateStatus>,
    /// The message, or why not.
    pub result: Result<SendOutcome, SendFailure<E>>,
}

/// Why a send attempt stored nothing.
#[derive(Debug)]
pub enum SendFailure<E> {
    /// The transport could not parse the request; its own error, reported after the
    /// attempt spent allowance.
    Rejected(E),
    /// A rule of the chat refused it (rate limit, validation, conflict...) or the store
    /// failed.
    Chat(Error),
}

/// Most entries one backlog call (`undelivered`, `feed_after`) returns.
pub const MAX_BACKLOG_BATCH: u32 = 1000;

/// The chat application: validates, authorizes, stores through a
/// [`MessageRepository`] and then announces through a [`Notifier`].
///
/// Transports (HTTP, WebSocket) authenticate the caller and pass its [`UserId`]; they
/// hold no rule of their own. Cloning is cheap and shares the adapters.
///
/// ```
/// # tokio_test_block_on(async {
/// use chat_core::{ChatService, SendMessage, UserId};
///
/// let chat = ChatService::in_memory();
/// let alice = UserId::new(1);
/// let bob = UserId::new(2);
/// let sent = chat
///     .send(alice, SendMessage { receiver_id: bob, message: " hi ".into(), client_message_id: None })
///     .await?;
/// assert_eq!(sent.message.message, "hi");
/// let read = chat.mark_message_read(bob, sent.message.id).await?;
/// assert_eq!(read.status, chat_core::MessageStatus::Read);
/// # Ok::<(), chat_core::Error>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct ChatService {
    repository: Arc<dyn MessageRepository>,
    notifier: Arc<dyn Notifier>,
    presence: Arc<dyn Presence>,
    presence_changes: Arc<dyn Broadcast>,
    policy: Arc<dyn Policy>,
    send_limiter: Option<Arc<dyn RateLimiter>>,
    jobs: Option<Outbox>,
    config: ChatConfig,
}

/// Presence news one watcher may fall behind by before it gets a gap (and asks again
/// for everyone it watches).
const PRESENCE_NEWS_CAPACITY: usize = 1024;

/// Why a send to someone is refused, whoever blocked whom or whatever the policy
/// said: the sender learns nothing more.
const NOT_REACHABLE: &str = "this user cannot be messaged";

/// The jobs chat changes cause, and how many were stored.
#[derive(Clone)]
struct Outbox {
    plan: Arc<dyn MessageJobs>,
    enqueued: Arc<AtomicU64>,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("config", &self.config)
            .field("send_limiter", &self.send_limiter.is_some())
            .field("jobs", &self.jobs.is_some())
            .finish_non_exhaustive()
    }
}

impl ChatService {
    /// A service over the given store and notifier, with default limits and no send
    /// rate limit.
    pub fn new(repository: Arc<dyn MessageRepository>, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            repository,
            notifier,
            presence: Arc::new(InMemoryPresence::new()),
            presence_changes: Arc::new(InProcessBroadcast::new(PRESENCE_NEWS_CAPACITY)),
            policy: Arc::new(DefaultPolicy),
            send_limiter: None,
            jobs: None,
            config: ChatConfig::default(),
        }
    }

    /// A service on an [`InMemoryRepository`] and an [`InProcessNotifier`]: for tests,
    /// examples and single-process demos.
    pub fn in_memory() -> Self {
        Self::new(
            Arc::new(InMemoryRepository::new()),
            Arc::new(InProcessNotifier::new()),
        )
    }

    /// Replaces the limits.
    pub fn with_config(mut self, config: ChatConfig) -> Self {
        self.config = config;
        self
    }

    /// Limits sends per sender through `limiter` (key `send:<user id>`, cost 1).
    pub fn with_send_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.send_limiter = Some(limiter);
        self
    }

    /// Keeps who is connected in `presence` (one shared by every node, say) instead of
    /// this process's memory.
    pub fn with_presence(mut self, presence: Arc<dyn Presence>) -> Self {
        self.presence = presence;
        self
    }

    /// Asks `policy` who may message whom and who may see whose presence and typing,
    /// instead of [`DefaultPolicy`]. Blocks hold whatever it answers.
    pub fn with_policy(mut self, policy: Arc<dyn Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// Stores the jobs `plan` says chat changes cause (webhooks, say) with the changes:
    /// those of a new message in the message's transaction, those of a read in the
    /// read's. The repository must keep jobs (be a [`JobStore`](crate::JobStore), as
    /// every store of this project is), and workers claim them from it.
    pub fn with_jobs(mut self, plan: Arc<dyn MessageJobs>) -> Self {
        self.jobs = Some(Outbox {
            plan,
            enqueued: Arc::new(AtomicU64::new(0)),
        });
        self
    }

    /// Jobs this service has stored so far (for metrics).
    pub fn jobs_enqueued(&self) -> u64 {
        self.jobs
            .as_ref()
            .map_or(0, |outbox| outbox.enqueued.load(Ordering::Relaxed))
    }

    /// The stored message `id`, whoever took part in it: for background jobs acting on
    /// behalf of the system, never for a caller's request.
    pub async fn stored_message(&self, id: MessageId) -> Result<Option<Message>, Error> {
        self.repository.get(id).await
    }

    /// The stored message `id` while no device of its receiver has acknowledged it
    /// (still `sent`); `None` once it was delivered or read, or when it is gone. The
    /// rule behind telling a host that a receiver is offline.
    pub async fn still_undelivered(&self, id: MessageId) -> Result<Option<Message>, Error> {
        Ok(self
            .repository
            .get(id)
            .await?
            .filter(|message| message.status == MessageStatus::Sent))
    }

    /// Admits a new live connection of `user` while they hold fewer than `limit` across
    /// every node sharing the presence. While presence cannot be reached, the connection
    /// is let in unseated (its node's own limit still applies): a presence outage never
    /// locks users out.
    pub async fn admit(&self, user: UserId, limit: usize) -> Admission {
        match self.presence.join(user, limit).await {
            Ok(Some(seat)) => {
                self.announce_presence(user).await;
                Admission::Seated(seat)
            }
            Ok(None) => Admission::Full,
            Err(error) => {
                tracing::debug!(%user, %error, "presence unavailable: connection admitted unseated");
                Admission::Unseated
            }
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// Sends a message from `sender`.
    ///
    /// The text is trimmed and checked; with a `client_message_id` the send is
    /// idempotent: the same key with the same receiver and text returns the original
    /// (`replay: true`, nothing published again), the same key with other content is
    /// `Error::Conflict`. The message is announced to both participants only after the
    /// store committed it.
    pub async fn send(&self, sender: UserId, input: SendMessage) -> Result<SendOutcome, Error> {
        match self
            .attempt_send(sender, Ok::<_, std::convert::Infallible>(input))
            .await
            .result
        {
            Ok(outcome) => Ok(outcome),
            Err(SendFailure::Chat(error)) => Err(error),
            Err(SendFailure::Rejected(never)) => match never {},
        }
    }

    /// A send as a transport received it: `attempt` is the parsed message, or the
    /// transport's own refusal of a request it could not parse. Every attempt spends
    /// the sender's allowance, valid or not, so malformed requests cannot be used to
    /// flood; a refused attempt is `Error::RateLimited` before anything else is looked
    /// at. The answer carries the allowance left (for `X-RateLimit-*` headers) when a
    /// send limiter is configured.
    pub async fn attempt_send<E>(
        &self,
        sender: UserId,
        attempt: Result<SendMessage, E>,
    ) -> SendAttempt<E> {
        let refused = |error| SendAttempt {
            allowance: None,
            result: Err(SendFailure::Chat(error)),
        };
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "sender_id", sender.get());
        if let Err(error) = errors.into_result() {
            return refused(error);
        }
        let allowance = match self.spend_send_allowance(sender).await {
            Ok(allowance) => allowance,
            Err(error) => return refused(error),
        };
        let result = match (allowance, attempt) {
            (
                Some(RateStatus {
                    limit,
                    retry_after: Some(retry_after),
                    ..
                }),
                _,
            ) => Err(SendFailure::Chat(Error::RateLimited { retry_after, limit })),
            (_, Err(rejected)) => Err(SendFailure::Rejected(rejected)),
            (_, Ok(input)) => self
                .send_allowed(sender, input)
                .await
                .map_err(SendFailure::Chat),
        };
        SendAttempt { allowance, result }
    }

    async fn send_allowed(&self, sender: UserId, input: SendMessage) -> Result<SendOutcome, Error> {
        let SendMessage {
            receiver_id,
            message,
            client_message_id,
        } = input;
        let mut errors = ValidationErrors::default();
        validation::counterpart(&mut errors, "receiver_id", sender, receiver_id);
        let trimmed_len =
            validation::message_text(&mut errors, &message, self.config.max_message_chars).len();
        if let Some(id) = &client_message_id {
            validation::client_message_id(&mut errors, id);
        }
        errors.into_result()?;
        let text = if trimmed_len == message.len() {
            message
        } else {
            message.trim().to_owned()
        };

        if !self.policy.may_message(sender, receiver_id).await? {
            return Err(Error::Forbidden {
                reason: NOT_REACHABLE,
            });
        }
        // Only a keyed send can be a replay, so only then is the text kept to compare.
        let expected_text = client_message_id.as_ref().map(|_| text.clone());
        let created_at = timestamp::now();
        let jobs = self.jobs.as_ref().map_or_else(Vec::new, |outbox| {
            outbox.plan.created(sender, receiver_id, created_at)
        });
        let job_count = jobs.len() as u64;
        let inserted = self
            .repository
            .insert(NewMessageRecord {
                sender_id: sender,
                receiver_id,
                message: text,
                client_message_id,
                created_at,
                jobs,
            })
            .await
            .map_err(|error| match error {
                // A block, checked in the insert's transaction; said neutrally.
                Error::Forbidden { .. } => Error::Forbidden {
                    reason: NOT_REACHABLE,
                },
                other => other,
            })?;
        if !inserted.created {
            // The store matched on (sender, key); the content decides replay or conflict.
            let original = inserted.message;
            let same_content = original.receiver_id == receiver_id
                && expected_text.as_deref() == Some(original.message.as_str());
            return if same_content {
                Ok(SendOutcome {
                    message: original,
                    replay: true,
                })
            } else {
                Err(Error::Conflict {
                    message: "The client_message_id has already been used for a different message."
                        .to_owned(),
                })
            };
        }
        self.jobs_stored(job_count);
        let message = inserted.message;
        let shared = Arc::new(message.clone());
        self.publish(message.receiver_id, Event::Message(Arc::clone(&shared)))
            .await;
        self.publish(message.sender_id, Event::Message(shared))
            .await;
        Ok(SendOutcome {
            message,
            replay: false,
        })
    }

    /// The message `id`, if `caller` took part in it. A message of other users is
    /// `NotFound`, exactly like a missing one, so ids reveal nothing.
    pub async fn message(&self, caller: UserId, id: MessageId) -> Result<Message, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "message_id", id.get());
        errors.into_result()?;
        self.visible_message(caller, id).await
    }

    /// The history query `request` asks for, with this service's default sizes.
    pub fn history_query(&self, request: HistoryRequest) -> Result<HistoryQuery, Error> {
        HistoryQuery::from_request(request, self.config.default_page_size)
    }

    /// A page of the conversation between `caller` and `other`.
    pub async fn history(
        &self,
        caller: UserId,
        other: UserId,
        query: HistoryQuery,
    ) -> Result<History, Error> {
        let mut errors = ValidationErrors::default();
        validation::counterpart(&mut errors, "user_id", caller, other);
        match query {
            HistoryQuery::Page { page, per_page } => {
                if page < 1 {
                    errors.add(
                        "page",
                        crate::ValidationCode::OutOfRange,
                        "The page field must be at least 1.",
                    );
                }
                validation::page_size(&mut errors, "per_page", per_page);
            }
            HistoryQuery::Before { before_id, limit } => {
                if let Some(id) = before_id {
                    validation::positive_id(&mut errors, "before_id", id.get());
                }
                validation::page_size(&mut errors, "limit", limit);
            }
            HistoryQuery::After { after_id, limit } => {
                validation::cursor_id(&mut errors, "after_id", after_id);
                validation::page_size(&mut errors, "limit", limit);
            }
        }
        errors.into_result()?;

        match query {
            HistoryQuery::Page { page, per_page } => {
                let offset = u64::from(page - 1) * u64::from(per_page);
                let found = self
                    .repository
                    .history_page(caller, other, offset, per_page)
                    .await?;
                let shown = found.messages.len() as u64;
                Ok(History {
                    position: HistoryPosition::Page {
                        current_page: page,
                        per_page,
                        last_page: found.total.div_ceil(u64::from(per_page)).max(1),
                        total: found.total,
                        from: (shown > 0).then_some(offset + 1),
                        to: (shown > 0).then_some(offset + shown),
                    },
                    messages: found.messages,
                })
            }
            HistoryQuery::Before { before_id, limit } => {
                let found = self
                    .repository
                    .history_before(caller, other, before_id, limit + 1)
                    .await?;
                Ok(cursor_page(found, limit))
            }
            HistoryQuery::After { after_id, limit } => {
                let found = self
                    .repository
                    .history_after(caller, other, after_id, limit + 1)
                    .await?;
                Ok(cursor_page(found, limit))
            }
        }
    }

    /// Marks one message read by its receiver and tells the sender. Idempotent: a
    /// message already read is returned as it is. A message the caller did not take
    /// part in is `NotFound`; the sender asking is `Forbidden`.
    pub async fn mark_message_read(&self, caller: UserId, id: MessageId) -> Result<Message, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "message_id", id.get());
        errors.into_result()?;
        let message = self.visible_message(caller, id).await?;
        if message.receiver_id != caller {
            return Err(Error::Forbidden {
                reason: "only the receiver can mark a message as read",
            });
        }
        if message.status == MessageStatus::Read {
            return Ok(message);
        }
        let at = timestamp::now();
        let jobs = self.read_jobs(caller, at);
        let changed = self
            .repository
            .set_status(caller, &[id], MessageStatus::Read, at, &jobs)
            .await?;
        match changed.into_iter().next() {
            Some(updated) => {
                self.jobs_stored(jobs.len() as u64);
                self.publish_receipt(&updated).await;
                Ok(updated)
            }
            // Another device read it in between; show the stored state.
            None => self.visible_message(caller, id).await,
        }
    }

    /// Marks the listed messages received by `caller` as delivered and tells each
    /// sender. Ids of messages the caller did not receive are ignored. Returns the
    /// messages that changed.
    pub async fn mark_messages_delivered(
        &self,
        caller: UserId,
        ids: &[MessageId],
    ) -> Result<Vec<Message>, Error> {
        self.advance_status(caller, ids, MessageStatus::Delivered)
            .await
    }

    /// Marks the listed messages received by `caller` as read (and so delivered) and
    /// tells each sender. Ids of messages the caller did not receive are ignored.
    /// Returns the messages that changed.
    pub async fn mark_messages_read(
        &self,
        caller: UserId,
        ids: &[MessageId],
    ) -> Result<Vec<Message>, Error> {
        self.advance_status(caller, ids, MessageStatus::Read).await
    }

    /// Marks read what a client's read request names: the messages `ids`, or the
    /// conversation with `user_id` up to `up_to_id` (everything without it). Naming
    /// both, or neither, is `Error::Validation`. The number of messages it covered.
    pub async fn mark_read_request(
        &self,
        caller: UserId,
        request: ReadRequest,
    ) -> Result<u64, Error> {
        match request {
            ReadRequest {
                ids: Some(ids),
                user_id: None,
                up_to_id: None,
            } => Ok(self.mark_messages_read(caller, &ids).await?.len() as u64),
            ReadRequest {
                ids: None,
                user_id: Some(other),
                up_to_id,
            } => self.mark_conversation_read(caller, other, up_to_id).await,
            _ => Err(Error::invalid(
                "ids",
                crate::ValidationCode::Exclusive,
                "A read request takes either ids, or user_id with an optional up_to_id.",
            )),
        }
    }

    /// Marks every message `caller` received from `other` up to `up_to_id` (all when
    /// `None`) as read, tells `other`, and returns how many changed.
    pub async fn mark_conversation_read(
        &self,
        caller: UserId,
        other: UserId,
        up_to_id: Option<MessageId>,
    ) -> Result<u64, Error> {
        let mut errors = ValidationErrors::default();
        validation::counterpart(&mut errors, "user_id", caller, other);
        if let Some(id) = up_to_id {
            validation::positive_id(&mut errors, "up_to_id", id.get());
        }
        errors.into_result()?;
        let at = timestamp::now();
        let jobs = self.read_jobs(caller, at);
        let changed = self
            .repository
            .mark_conversation_read(caller, other, up_to_id, at, &jobs)
            .await?;
        self.jobs_stored((changed.len() * jobs.len()) as u64);
        for &id in &changed {
            self.publish(
                other,
                Event::Receipt(Receipt {
                    id,
                    sender_id: other,
                    receiver_id: caller,
                    status: MessageStatus::Read,
                    at,
                }),
            )
            .await;
        }
        Ok(changed.len() as u64)
    }

    /// `caller`'s conversations, newest activity first, `limit` (1–100) at a time; pass
    /// the answer's `next_before` as `before` for the next page.
    pub async fn conversations(
        &self,
        caller: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Conversations, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        if let Some(id) = before {
            validation::positive_id(&mut errors, "before", id.get());
        }
        validation::page_size(&mut errors, "limit", limit);
        errors.into_result()?;
        let mut items = self
            .repository
            .conversations(caller, before, limit + 1)
            .await?;
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_before = has_more
            .then(|| items.last().map(|c| c.last_message.id))
            .flatten();
        let total_unread = self.repository.unread_total(caller).await?;
        let counterparts: Vec<UserId> = items.iter().map(|c| c.counterpart).collect();
        // Every counterpart of a conversation is acquainted: no need to ask the store.
        let visible = self
            .visible_among(caller, &counterparts, &counterparts)
            .await?;
        let presence = self.presence_of_visible(&counterparts, &visible).await?;
        Ok(Conversations {
            items,
            total_unread,
            next_before,
            presence,
        })
    }

    /// Messages to `caller` not yet read, over all conversations.
    pub async fn unread_total(&self, caller: UserId) -> Result<u64, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        errors.into_result()?;
        self.repository.unread_total(caller).await
    }

    /// Up to `limit` (1–1000) messages to `caller` still `sent`, after `after_id`,
    /// oldest first: the backlog a device receives on connect.
    pub async fn undelivered(
        &self,
        caller: UserId,
        after_id: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        Self::check_backlog(caller, after_id, limit)?;
        self.repository.undelivered(caller, after_id, limit).await
    }

    /// Up to `limit` (1–1000) entries of `caller`'s feed after position `after_id`, by
    /// position: new messages to or from `caller` and changes (edits, deletions) to
    /// older ones. The catch-up of a device resuming from a cursor.
    pub async fn feed_after(
        &self,
        caller: UserId,
        after_id: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, Error> {
        Self::check_backlog(caller, after_id, limit)?;
        self.repository.feed_after(caller, after_id, limit).await
    }

    /// Replaces the text of message `id`, sent by `caller`, and tells every device of
    /// both participants. The text is checked and trimmed as in [`send`](Self::send).
    ///
    /// Idempotent: the text the message already has changes nothing (and is accepted
    /// also after the edit window). Only the sender may edit (`Forbidden` for the
    /// receiver, `NotFound` for anyone else), only within
    /// [`edit_window`](ChatConfig::edit_window) of sending (`Forbidden` after), and
    /// never a deleted message (`Conflict`).
    pub async fn edit_message(
        &self,
        caller: UserId,
        id: MessageId,
        text: String,
    ) -> Result<Message, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "message_id", id.get());
        let trimmed_len =
            validation::message_text(&mut errors, &text, self.config.max_message_chars).len();
        errors.into_result()?;
        let text = if trimmed_len == text.len() {
            text
        } else {
            text.trim().to_owned()
        };
        let message = self
            .sent_message(caller, id, "only the sender can edit a message")
            .await?;
        if message.deleted_at.is_some() {
            return Err(deleted_conflict());
        }
        if message.message == text {
            return Ok(message);
        }
        let at = timestamp::now();
        let window =
            time::Duration::try_from(self.config.edit_window).unwrap_or(time::Duration::MAX);
        if at - message.created_at > window {
            return Err(Error::Forbidden {
                reason: "the time to edit this message has passed",
            });
        }
        match self
            .repository
            .amend(caller, id, Amendment::Edit(text), at)
            .await?
        {
            Some(change) => Ok(self.publish_change(change).await),
            // Deleted in between.
            None => Err(deleted_conflict()),
        }
    }

    /// Deletes message `id`, sent by `caller`, for everyone: the text is removed from
    /// the store, the message stays in history as a tombstone (`deleted_at` set, text
    /// empty), and every device of both participants is told. Idempotent: a deleted
    /// message is returned as it is. Only the sender may delete (`Forbidden` for the
    /// receiver, `NotFound` for anyone else).
    pub async fn delete_message(&self, caller: UserId, id: MessageId) -> Result<Message, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "message_id", id.get());
        errors.into_result()?;
        let message = self
            .sent_message(caller, id, "only the sender can delete a message")
            .await?;
        if message.deleted_at.is_some() {
            return Ok(message);
        }
        match self
            .repository
            .amend(caller, id, Amendment::Delete, timestamp::now())
            .await?
        {
            Some(change) => Ok(self.publish_change(change).await),
            // Another device deleted it in between.
            None => self.visible_message(caller, id).await,
        }
    }

    /// Tells `receiver` that `caller` is typing.
    pub async fn typing(&self, caller: UserId, receiver: UserId) -> Result<(), Error> {
        let mut errors = ValidationErrors::default();
        validation::counterpart(&mut errors, "receiver_id", caller, receiver);
        errors.into_result()?;
        // Typing reaches whoever the caller may message; otherwise it is dropped,
        // which the caller cannot tell from nobody listening.
        if !self.may_reach(caller, receiver).await? {
            return Ok(());
        }
        self.notifier
            .publish(receiver, Event::Typing(Typing { user_id: caller }))
            .await
    }

    /// `caller` blocks `other`: from now on neither can message the other (403), and
    /// neither sees the other's presence or typing; their history stays readable.
    /// Idempotent: the block already made is answered with `created: false`.
    pub async fn block_user(&self, caller: UserId, other: UserId) -> Result<Blocked, Error> {
        let mut errors = ValidationErrors::default();
        validation::counterpart(&mut errors, "user_id", caller, other);
        errors.into_result()?;
        self.repository.block(caller, other, timestamp::now()).await
    }

    /// Lifts `caller`'s block of `other`; whether there was one. A block `other` made
    /// of `caller` stays.
    pub async fn unblock_user(&self, caller: UserId, other: UserId) -> Result<bool, Error> {
        let mut errors = ValidationErrors::default();
        validation::counterpart(&mut errors, "user_id", caller, other);
        errors.into_result()?;
        self.repository.unblock(caller, other).await
    }

    /// The users `caller` blocks, the newest block first.
    pub async fn blocks(&self, caller: UserId) -> Result<Vec<Block>, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        errors.into_result()?;
        self.repository.blocks(caller).await
    }

    /// Whether `sender` may reach `receiver` — show typing, join their conversation's
    /// presence channel: no block between them either way, and the policy lets
    /// `sender` message `receiver`.
    /// (Sends check blocks in the store's insert instead, in its transaction.)
    pub async fn may_reach(&self, sender: UserId, receiver: UserId) -> Result<bool, Error> {
        Ok(self
            .repository
            .blocked_among(sender, &[receiver])
            .await?
            .is_empty()
            && self.policy.may_message(sender, receiver).await?)
    }

    /// Of `users`, those whose presence `watcher` may see: no block between
    /// them either way, and the policy agrees (by default: they have a conversation).
    async fn visible_to(&self, watcher: UserId, users: &[UserId]) -> Result<Vec<UserId>, Error> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let acquainted = self.repository.acquainted_among(watcher, users).await?;
        self.visible_among(watcher, users, &acquainted).await
    }

    /// [`visible_to`](Self::visible_to) when the caller already knows which of `users`
    /// `watcher` has a conversation with (`acquainted`).
    async fn visible_among(
        &self,
        watcher: UserId,
        users: &[UserId],
        acquainted: &[UserId],
    ) -> Result<Vec<UserId>, Error> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let blocked = self.repository.blocked_among(watcher, users).await?;
        let mut visible = Vec::with_capacity(users.len());
        for &user in users {
            if user == watcher || blocked.contains(&user) || visible.contains(&user) {
                continue;
            }
            if self
                .policy
                .may_see(watcher, user, acquainted.contains(&user))
                .await?
            {
                visible.push(user);
            }
        }
        Ok(visible)
    }

    /// `caller`'s live events. Subscribe before loading a backlog, then drop duplicates
    /// by id, so nothing committed in between is missed.
    pub async fn subscribe(&self, caller: UserId) -> Result<EventStream, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        errors.into_result()?;
        self.notifier.subscribe(caller).await
    }

    /// Whether the store and the bus answer (readiness), each on its own.
    pub async fn readiness(&self) -> Readiness {
        Readiness {
            store: self.repository.ping().await,
            bus: self.notifier.ping().await,
        }
    }

    /// Whether `caller` may follow the live events of `owner`: a user follows only their
    /// own (every transport's channels ask this).
    pub fn may_follow(caller: UserId, owner: UserId) -> bool {
        caller == owner
    }

    /// Whether `caller` takes part in the conversation between `a` and `b`, and so may
    /// watch it (its presence, its typing).
    pub fn takes_part(caller: UserId, a: UserId, b: UserId) -> bool {
        caller == a || caller == b
    }

    /// Whether `caller` may join the live channel of the conversation between `a` and
    /// `b` (both participants' presence and typing, as a Pusher presence channel):
    /// they take part in it, and may reach the other (no block either way, and the
    /// policy agrees).
    pub async fn may_join_conversation(
        &self,
        caller: UserId,
        a: UserId,
        b: UserId,
    ) -> Result<bool, Error> {
        if !Self::takes_part(caller, a, b) {
            return Ok(false);
        }
        let other = if caller == a { b } else { a };
        self.may_reach(caller, other).await
    }

    /// Message `id` if `caller` sent it: `NotFound` when they took no part in it,
    /// `Forbidden` with `reason` when they received it.
    async fn sent_message(
        &self,
        caller: UserId,
        id: MessageId,
        reason: &'static str,
    ) -> Result<Message, Error> {
        let message = self.visible_message(caller, id).await?;
        if message.sender_id != caller {
            return Err(Error::Forbidden { reason });
        }
        Ok(message)
    }

    /// Tells both participants of a change, and answers the changed message.
    async fn publish_change(&self, change: Change) -> Message {
        let (sender, receiver) = (change.message.sender_id, change.message.receiver_id);
        let shared = Arc::new(change);
        self.publish(receiver, Event::Changed(Arc::clone(&shared)))
            .await;
        self.publish(sender, Event::Changed(Arc::clone(&shared)))
            .await;
        Arc::unwrap_or_clone(shared).message
    }

    async fn visible_message(&self, caller: UserId, id: MessageId) -> Result<Message, Error> {
        match self.repository.get(id).await? {
            Some(message) if message.is_participant(caller) => Ok(message),
            _ => Err(Error::NotFound { what: "message" }),
        }
    }

    async fn advance_status(
        &self,
        caller: UserId,
        ids: &[MessageId],
        status: MessageStatus,
    ) -> Result<Vec<Message>, Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        validation::id_batch(&mut errors, "ids", ids, self.config.max_batch_ids);
        errors.into_result()?;
        let at = timestamp::now();
        let jobs = if status == MessageStatus::Read {
            self.read_jobs(caller, at)
        } else {
            Vec::new()
        };
        let changed = self
            .repository
            .set_status(caller, ids, status, at, &jobs)
            .await?;
        self.jobs_stored((changed.len() * jobs.len()) as u64);
        for message in &changed {
            self.publish_receipt(message).await;
        }
        Ok(changed)
    }

    fn check_backlog(caller: UserId, after_id: MessageId, limit: u32) -> Result<(), Error> {
        let mut errors = ValidationErrors::default();
        validation::positive_id(&mut errors, "user_id", caller.get());
        validation::cursor_id(&mut errors, "after_id", after_id);
        if !(1..=MAX_BACKLOG_BATCH).contains(&limit) {
            errors.add(
                "limit",
                crate::ValidationCode::OutOfRange,
                format!("The limit field must be between 1 and {MAX_BACKLOG_BATCH}."),
            );
        }
        errors.into_result()
    }

    /// Spends one send of `sender`'s allowance. `None` without a send limiter; a
    /// refusal is a status with `retry_after` set.
    async fn spend_send_allowance(&self, sender: UserId) -> Result<Option<RateStatus>, Error> {
        let Some(limiter) = &self.send_limiter else {
            return Ok(None);
        };
        let decision = limiter
            .check(&format!("send:{sender}"), NonZeroU32::MIN)
            .await?;
        Ok(Some(match decision {
            RateDecision::Allowed { limit, remaining } => RateStatus {
                limit,
                remaining,
                retry_after: None,
            },
            RateDecision::Denied { limit, retry_after } => RateStatus {
                limit,
                remaining: 0,
                retry_after: Some(retry_after),
            },
        }))
    }

    async fn publish_receipt(&self, message: &Message) {
        let at = match message.status {
            MessageStatus::Read => message.read_at,
            _ => message.delivered_at,
        }
        .unwrap_or(message.updated_at);
        self.publish(
            message.sender_id,
            Event::Receipt(Receipt {
                id: message.id,
                sender_id: message.sender_id,
                receiver_id: message.receiver_id,
                status: message.status,
                at,
            }),
        )
        .await;
    }

    /// The jobs of each message `receiver` reads at `at`.
    fn read_jobs(&self, receiver: UserId, at: OffsetDateTime) -> Vec<NewJob> {
        self.jobs
            .as_ref()
            .map_or_else(Vec::new, |outbox| outbox.plan.read(receiver, at))
    }

    /// Counts `count` jobs just stored, and tells the plan (which wakes its workers).
    fn jobs_stored(&self, count: u64) {
        if let Some(outbox) = &self.jobs
            && count > 0
        {
            outbox.enqueued.fetch_add(count, Ordering::Relaxed);
            outbox.plan.stored();
        }
    }

    /// Publishing is best effort: the change is committed, and clients catch up from
    /// the store, so a failure is logged and not returned.
    async fn publish(&self, user: UserId, event: Event) {
        if let Err(error) = self.notifier.publish(user, event).await {
            tracing::warn!(%user, %error, "could not publish a chat event");
        }
    }
}

fn deleted_conflict() -> Error {
    Error::Conflict {
        message: "The message has been deleted and can no longer be edited.".to_owned(),
    }
}

fn cursor_page(mut messages: Vec<Message>, limit: u32) -> History {
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    History {
        messages,
        position: HistoryPosition::Cursor { limit, has_more },
    }
}
