//! The core of the chat library: domain types, the four ports, every chat rule in
//! [`ChatService`], and in-memory adapters.
//!
//! The crate knows no web framework and no database. Adapter crates implement the
//! ports ([`MessageRepository`], [`Notifier`], [`Authenticator`], [`RateLimiter`]) and
//! run the conformance suites of `testing` (feature `testing`); transports
//! authenticate a caller and hand its [`UserId`] to the service.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use chat_core::{ChatService, HistoryQuery, SendMessage, UserId};
//!
//! let chat = ChatService::in_memory();
//! let (alice, bob) = (UserId::new(1), UserId::new(2));
//! chat.send(alice, SendMessage {
//!     receiver_id: bob,
//!     message: "Hello, Bob".into(),
//!     client_message_id: Some("alice-phone:1".into()),
//! })
//! .await?;
//! let page = chat
//!     .history(bob, alice, HistoryQuery::Page { page: 1, per_page: 20 })
//!     .await?;
//! assert_eq!(page.messages[0].message, "Hello, Bob");
//! # Ok::<(), chat_core::Error>(())
//! # }).unwrap();
//! ```

mod block;
mod error;
mod event;
mod fallback;
mod ids;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod memory;
mod message;
mod page;
mod ports;
mod service;
pub mod timestamp;

#[cfg(feature = "testing")]
pub mod testing;

/// The attribute the ports are declared with; implement them with
/// `#[chat_core::async_trait]` without a dependency of your own.
pub use async_trait::async_trait;
pub use block::{Block, Blocked};
pub use error::{AuthError, BoxError, Error, FieldError, ValidationCode, ValidationErrors};
pub use event::{Event, Receipt, Typing};
pub use fallback::{FALLBACK_RETRY_AFTER, Fallback, FallbackPresence, FallbackRateLimiter};
pub use ids::{JobId, MessageId, UserId};
#[cfg(feature = "jwt")]
pub use jwt::{JwtAlgorithm, JwtAuthenticator, JwtIssuer};
pub use memory::{
    GovernorRateLimiter, InMemoryJobStore, InMemoryPresence, InMemoryRepository,
    InProcessBroadcast, InProcessNotifier,
};
pub use message::{
    Amendment, Change, FeedEntry, Inserted, Message, MessageStatus, NewMessageRecord, SendMessage,
    SendOutcome, UnknownStatus,
};
pub use page::{
    ConversationSummary, Conversations, History, HistoryPage, HistoryPosition, HistoryQuery,
    HistoryRequest, MAX_PAGE_SIZE,
};
pub use ports::{
    Authenticator, Broadcast, BroadcastStream, Broadcasted, Claimed, DefaultPolicy, EventStream,
    Identity, Job, JobState, JobStore, Layered, MessageJobs, MessageRepository, NewJob, Notice,
    Notifier, Outcome, Policy, Presence, RateDecision, RateLimiter, RepositoryLayer, Seat,
    StoreOperation, UserPresence,
};
pub use service::{
    Admission, ChatConfig, ChatService, Feed, FeedStart, FeedUpdate, MAX_BACKLOG_BATCH,
    MAX_CLIENT_MESSAGE_ID_CHARS, MAX_PRESENCE_GRACE, MAX_PRESENCE_USERS, RateStatus, ReadRequest,
    Readiness, SendAttempt, SendFailure,
};
