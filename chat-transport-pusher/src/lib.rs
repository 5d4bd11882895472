//! The Pusher protocol for the chat library: what Laravel Echo and pusher-js speak, so
//! a Laravel front end talks to this server by changing host and port, and a Laravel
//! back end keeps broadcasting its own events through it.
//!
//! This crate holds the protocol's rules, each testable on its own:
//!
//! - [`PusherApp`]: the application's id, key and secret;
//! - [`SocketId`]: the connection id the server hands out and clients sign with;
//! - [`ChannelName`] and [`ChatChannel`]: which channels exist, which need a signature,
//!   and the two the chat itself speaks on (`private-chat.{user}` and
//!   `presence-chat.{a}.{b}`);
//! - [`authorize_subscription`]: who may join which private and presence channel (the
//!   chat's channels by the chat's rules, a host's own by its [`ChannelAuthorizer`]);
//! - [`signature`]: channel authorization strings and signed HTTP API requests,
//!   compared in constant time;
//! - [`message_frame`]: the chat's events as Laravel Echo listens for them
//!   (`App\Events\MessageSent` and its kin, in a configurable [`EventNamespace`]);
//! - [`Member`]: a presence member's signed data and the payloads announcing it;
//! - [`parse_event`] and [`parse_batch`]: events published through the HTTP API,
//!   checked against Pusher's limits;
//! - [`protocol`]: the frames of protocol 7, parsed and written.
//!
//! [`PusherEndpoint`] puts them to work: it upgrades `GET /app/{key}` into a
//! connection speaking protocol 7 (channels, presence members, client events, and the
//! chat's own events on `private-chat.{user}` from the user's live feed), answers the
//! authorization endpoint, and serves the HTTP API ([`PusherEndpoint::handle_api`]).
//! The reference server mounts it when `CHAT_PUSHER_APP_*` are set.

mod api;
mod app;
mod authorization;
mod channel;
mod cluster;
mod config;
mod endpoint;
mod events;
mod hub;
mod member;
pub mod protocol;
mod session;
pub mod signature;
mod socket_id;
mod trigger;

pub use api::{ApiCall, ApiResponse};
pub use config::PusherConfig;
pub use endpoint::PusherEndpoint;
pub use hub::{ChannelHub, ChannelInfo};

pub use app::{AppError, PusherApp};
pub use authorization::{
    AuthRefusal, ChannelAuth, ChannelAuthorizer, Grant, authorize_subscription,
};
pub use channel::{ChannelError, ChannelKind, ChannelName, ChatChannel};
pub use events::{ChatEvent, EventNamespace, NamespaceError, message_frame};
pub use member::{MAX_CHANNEL_DATA_BYTES, Member, MemberError, presence_succeeded};
pub use socket_id::{SocketId, SocketIdError};
pub use trigger::{Trigger, TriggerError, TriggerLimits, parse_batch, parse_event};
