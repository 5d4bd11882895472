//! The JSON shapes of the API: request bodies, response envelopes, and the schemas that
//! document them. Messages are serialized straight from `chat_core::Message`; the
//! schema types here only describe that shape (tests check every response against
//! them).

use std::collections::BTreeMap;

use chat_core::{MAX_PAGE_SIZE, Message, MessageId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{
    FromQuery, ID, IntegerBounds, QueryReader, json_integer, optional_json_integer,
};

// The bounds below are also written as literals in the `param` attributes, which take
// no constants; the API tests check the document against the server for every bound.

/// Page numbers: 1 to the largest 32-bit integer, so they fit the `int32` the document
/// declares (a page beyond it would start past two billion messages).
pub(crate) const PAGE: IntegerBounds = IntegerBounds {
    min: 1,
    max: i32::MAX as i64,
};

/// Page sizes: 1 to the core's largest page.
pub(crate) const PAGE_SIZE: IntegerBounds = IntegerBounds {
    min: 1,
    max: MAX_PAGE_SIZE as i64,
};

/// A catch-up cursor: 0 (from the beginning) or a message id.
pub(crate) const CURSOR: IntegerBounds = IntegerBounds {
    min: 0,
    max: i64::MAX,
};

/// Body of `POST /api/chat/send`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendMessageRequest {
    /// Who the message is for (≥ 1, not yourself).
    #[serde(deserialize_with = "json_integer")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) receiver_id: i64,
    /// The text: trimmed, 1 to the configured maximum of characters. (The document
    /// states the configured maximum in a pattern: see `openapi::describe_limits`.)
    #[schema(min_length = 1)]
    pub(crate) message: String,
    /// Optional idempotency key: 1–64 of `[A-Za-z0-9._:-]`. Sending again with the same
    /// key and content returns the original with 200.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    pub(crate) client_message_id: Option<String>,
}

/// Body of `PATCH /api/chat/messages/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "See you at 8, not 9"}))]
pub(crate) struct EditMessageRequest {
    /// The new text, checked as a sent one. (The document states the configured
    /// maximum in a pattern: see `openapi::describe_limits`.)
    #[schema(min_length = 1)]
    pub(crate) message: String,
}

/// Body of `POST /api/chat/conversations/{user_id}/read` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkConversationReadRequest {
    /// Mark messages up to this id (inclusive); all when absent.
    #[serde(default, deserialize_with = "optional_json_integer")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) up_to_id: Option<i64>,
}

/// Query of `GET /api/chat/messages/{user_id}`: page mode (`page`, `per_page`) or
/// cursor mode (`before_id` or `after_id`, with `limit`).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// Page number, from 1 (page mode, the default).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 2147483647)]
    pub(crate) page: Option<u32>,
    /// Messages per page, 1–100 (default 50).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub(crate) per_page: Option<u32>,
    /// Newest messages older than this id, newest first (cursor mode).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) before_id: Option<i64>,
    /// Oldest messages newer than this id, oldest first (cursor mode, catch-up; 0 for
    /// the beginning).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) after_id: Option<i64>,
    /// Messages per cursor page, 1–100 (default 50).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

impl FromQuery for HistoryParams {
    fn from_query(query: &mut QueryReader<'_>) -> Self {
        Self {
            page: query.integer("page", PAGE),
            per_page: query.integer("per_page", PAGE_SIZE),
            before_id: query.integer("before_id", ID),
            after_id: query.integer("after_id", CURSOR),
            limit: query.integer("limit", PAGE_SIZE),
        }
    }
}

/// Query of `GET /api/chat/presence`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PresenceParams {
    /// The users, 1 to 100 ids separated by commas (`1,2,3`).
    #[param(required = true, value_type = String, pattern = "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,99}$")]
    pub(crate) user_ids: Option<Vec<i64>>,
}

impl FromQuery for PresenceParams {
    fn from_query(query: &mut QueryReader<'_>) -> Self {
        Self {
            user_ids: query.id_list("user_ids"),
        }
    }
}

/// One user's presence as the caller may see it.
#[derive(ToSchema)]
#[schema(as = Presence)]
#[allow(dead_code)]
pub(crate) struct PresenceSchema {
    /// The user.
    user_id: i64,
    /// Connected on some node (or within a few seconds of the last connection
    /// closing). Always false for users the caller may not see.
    online: bool,
    /// When the user was last connected; null for a user never seen, and for users
    /// the caller may not see.
    #[schema(format = DateTime)]
    last_seen_at: Option<String>,
}

/// `{"data": [Presence]}`, in the order asked.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct PresenceListSchema {
    data: Vec<PresenceSchema>,
}

/// Query of `GET /api/chat/conversations`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConversationParams {
    /// Conversations whose last message id is below this (from `meta.next_before`).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) before: Option<i64>,
    /// Conversations per page, 1–100 (default 20).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

impl FromQuery for ConversationParams {
    fn from_query(query: &mut QueryReader<'_>) -> Self {
        Self {
            before: query.integer("before", ID),
            limit: query.integer("limit", PAGE_SIZE),
        }
    }
}

/// `{"data": ...}`.
#[derive(Debug, Serialize)]
pub(crate) struct Data<T> {
    /// The payload.
    pub(crate) data: T,
}

/// Page-mode pagination, as Laravel's paginator reports it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageMeta {
    /// The page shown.
    pub(crate) current_page: u32,
    /// Messages per page.
    pub(crate) per_page: u32,
    /// The last page (1 when empty).
    pub(crate) last_page: u64,
    /// Messages in the conversation.
    pub(crate) total: u64,
    /// Position of the first message shown (1-based), if any.
    pub(crate) from: Option<u64>,
    /// Position of the last message shown, if any.
    pub(crate) to: Option<u64>,
}

/// Page-mode links (paths relative to the server).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageLinks {
    /// The first page.
    pub(crate) first: String,
    /// The last page.
    pub(crate) last: String,
    /// The previous page, if any.
    pub(crate) prev: Option<String>,
    /// The next page, if any.
    pub(crate) next: Option<String>,
}

/// Cursor-mode pagination.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CursorMeta {
    /// Requested page size.
    pub(crate) limit: u32,
    /// Whether more messages lie beyond this page in its direction.
    pub(crate) has_more: bool,
    /// Pass as `before_id` (or `after_id` in catch-up) for the next page.
    pub(crate) next_cursor: Option<i64>,
}

/// Cursor-mode links.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CursorLinks {
    /// The next page, if any.
    pub(crate) next: Option<String>,
}

/// A page-mode history answer.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryPageBody<'a> {
    /// Newest first.
    pub(crate) data: &'a [Message],
    /// Pagination.
    pub(crate) meta: PageMeta,
    /// Links.
    pub(crate) links: PageLinks,
}

/// A cursor-mode history or conversation-list answer.
#[derive(Debug, Serialize)]
pub(crate) struct CursorBody<'a, T, M> {
    /// The items.
    pub(crate) data: &'a [T],
    /// Pagination.
    pub(crate) meta: M,
    /// Links.
    pub(crate) links: CursorLinks,
}

/// One conversation as listed.
#[derive(Debug, Serialize)]
pub(crate) struct ConversationItem<'a> {
    /// The counterpart.
    pub(crate) user_id: i64,
    /// The newest message between the two.
    pub(crate) last_message: &'a Message,
    /// Messages from the counterpart not read yet.
    pub(crate) unread_count: u64,
    /// Whether the counterpart is online, as the caller may see it.
    pub(crate) online: bool,
    /// When the counterpart was last connected, as the caller may see it.
    #[serde(with = "chat_core::timestamp::serde_micros::option")]
    pub(crate) last_seen_at: Option<time::OffsetDateTime>,
}

/// Conversation-list pagination.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConversationsMeta {
    /// Unread messages over all conversations.
    pub(crate) total_unread: u64,
    /// Requested page size.
    pub(crate) limit: u32,
    /// Pass as `before` for the next page; null on the last.
    pub(crate) next_before: Option<i64>,
}

/// `{"updated": n}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Updated {
    /// How many messages changed.
    pub(crate) updated: u64,
}

pub(crate) fn cursor_of(id: Option<MessageId>) -> Option<i64> {
    id.map(MessageId::get)
}

// ---- Schemas that document what the types above serialize. ----

/// Delivery status; it only moves forward.
#[derive(ToSchema)]
#[schema(as = MessageStatus)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum MessageStatusSchema {
    /// Stored, not yet confirmed by a device of the receiver.
    Sent,
    /// Confirmed by a device of the receiver.
    Delivered,
    /// Read by the receiver.
    Read,
}

/// A message. Times are RFC 3339 in UTC with microseconds.
#[derive(ToSchema)]
#[schema(as = Message)]
#[allow(dead_code)]
pub(crate) struct MessageSchema {
    /// Ascending id.
    id: i64,
    /// The sender.
    sender_id: i64,
    /// The receiver.
    receiver_id: i64,
    /// The text; empty once the sender deleted the message.
    message: String,
    /// Delivery status.
    status: MessageStatusSchema,
    /// The sender's idempotency key.
    client_message_id: Option<String>,
    /// When it was stored.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    updated_at: String,
    /// When a device of the receiver confirmed it.
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    /// When the receiver read it.
    #[schema(format = DateTime)]
    read_at: Option<String>,
    /// When its sender last edited the text.
    #[schema(format = DateTime)]
    edited_at: Option<String>,
    /// When its sender deleted it for everyone: the text is then empty and the
    /// message stays in history as a tombstone.
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
}

/// A user the caller blocks.
#[derive(ToSchema)]
#[schema(as = Block)]
#[allow(dead_code)]
pub(crate) struct BlockSchema {
    /// The blocked user.
    user_id: i64,
    /// When the block was made.
    #[schema(format = DateTime)]
    created_at: String,
}

/// `{"data": Block}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct BlockEnvelope {
    data: BlockSchema,
}

/// `{"data": [Block]}`, the newest block first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct BlocksSchema {
    data: Vec<BlockSchema>,
}

/// `{"data": Message}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct MessageEnvelope {
    data: MessageSchema,
}

/// A page of history in page mode.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct HistoryPageSchema {
    /// Newest first.
    data: Vec<MessageSchema>,
    meta: PageMeta,
    links: PageLinks,
}

/// A page of history in cursor mode.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct HistoryCursorSchema {
    /// Newest first with `before_id`, oldest first with `after_id`.
    data: Vec<MessageSchema>,
    meta: CursorMeta,
    links: CursorLinks,
}

/// History in page or cursor mode.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum HistorySchema {
    /// Page mode.
    Page(HistoryPageSchema),
    /// Cursor mode.
    Cursor(HistoryCursorSchema),
}

/// One conversation.
#[derive(ToSchema)]
#[schema(as = Conversation)]
#[allow(dead_code)]
pub(crate) struct ConversationSchema {
    /// The counterpart.
    user_id: i64,
    /// The newest message between the two.
    last_message: MessageSchema,
    /// Messages from the counterpart not read yet.
    unread_count: u64,
    /// Whether the counterpart is online (false across a block).
    online: bool,
    /// When the counterpart was last connected (null across a block, or never seen).
    #[schema(format = DateTime)]
    last_seen_at: Option<String>,
}

/// The conversation list.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ConversationsSchema {
    /// Newest activity first.
    data: Vec<ConversationSchema>,
    meta: ConversationsMeta,
    links: CursorLinks,
}

/// `{"data": {"updated": n}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct UpdatedEnvelope {
    data: Updated,
}

/// An error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    message: String,
}

/// A validation error: the messages of each field that broke a rule.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ValidationErrorBody {
    /// A summary, for people.
    message: String,
    /// Messages by field.
    errors: BTreeMap<String, Vec<String>>,
}

/// A liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// `ok`.
    pub(crate) status: &'static str,
}

/// A readiness answer: the store and the bus, each on its own.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyBody {
    /// `ready` (store and bus up), `degraded` (the store is up and the bus down: this
    /// node serves its own connections and REST, and events do not cross to other nodes
    /// until the bus is back) or `unavailable` (the store is down).
    #[schema(example = "ready")]
    pub(crate) status: &'static str,
    /// `up` or `down`.
    #[schema(example = "up")]
    pub(crate) store: &'static str,
    /// `up` or `down`; always `up` for a single node without a shared bus.
    #[schema(example = "up")]
    pub(crate) bus: &'static str,
}
