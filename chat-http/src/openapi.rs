//! The OpenAPI 3.1 document, generated from the handlers.

use chat_core::ChatConfig;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::{blocks, conversations, messages, presence, system, ws};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat",
        description = "Real-time one-to-one chat: send, history, read receipts. \
            Authenticate with `Authorization: Bearer <JWT>` whose `sub` is your user id. \
            Errors have Laravel's shape: `{\"message\": ..., \"errors\": {field: [...]}}`."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "messages", description = "Sending, history, read receipts, edits and deletions"),
        (name = "conversations", description = "The conversation list"),
        (name = "blocks", description = "Blocking users"),
        (name = "presence", description = "Who is online, and when they were last seen"),
        (name = "websocket", description = "Real-time delivery"),
        (name = "system", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // Browsers cannot set headers on a WebSocket handshake.
        components.add_security_scheme(
            "query_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The bearer JWT, for the WebSocket handshake only",
            ))),
        );
    }
}

/// Where the reference server mounts the chat API.
pub const API_PREFIX: &str = "/api/chat";

/// The chat API (REST and WebSocket), at paths relative to where it is mounted.
pub(crate) fn chat_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(messages::send))
        .routes(routes!(messages::history, messages::edit, messages::delete))
        .routes(routes!(messages::mark_read))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::mark_read))
        .routes(routes!(blocks::block, blocks::unblock))
        .routes(routes!(blocks::list))
        .routes(routes!(presence::lookup))
        .routes(routes!(ws::connect))
}

/// The reference server's own routes: health, readiness and metrics.
/// The system routes, `/health`, `/ready` and `/metrics`, for a server to mount at its
/// root (the reference server does).
pub fn system_routes() -> axum::Router<AppState> {
    system_api().split_for_parts().0
}

fn system_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .routes(routes!(system::metrics))
}

/// The OpenAPI document of the reference server with the default limits: the chat API
/// under [`API_PREFIX`] and the system routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi_for(&ChatConfig::default())
}

/// The OpenAPI document the server serves at `/api/openapi.json`, stating the limits of
/// `config` (the longest message), with the webhooks it can send.
pub fn openapi_for(config: &ChatConfig) -> utoipa::openapi::OpenApi {
    let mut document = openapi_at_for(API_PREFIX, config);
    document.merge(system_api().split_for_parts().1);
    crate::webhooks_doc::describe_webhooks(&mut document);
    document
}

/// The OpenAPI document of the chat API alone with the default limits, mounted at
/// `prefix` (for a host that nests [`router`](crate::router) and publishes its own
/// documentation).
pub fn openapi_at(prefix: &str) -> utoipa::openapi::OpenApi {
    openapi_at_for(prefix, &ChatConfig::default())
}

/// [`openapi_at`] stating the limits of `config`.
pub fn openapi_at_for(prefix: &str, config: &ChatConfig) -> utoipa::openapi::OpenApi {
    let mut document = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(prefix, chat_routes())
        .split_for_parts()
        .1;
    describe_limits(&mut document, config);
    document
}

/// Writes the configured message limit into the `message` field of the send body: the
/// limit is a setting, so no attribute can state it.
fn describe_limits(document: &mut utoipa::openapi::OpenApi, config: &ChatConfig) {
    let max = config.max_message_chars;
    for body in ["SendMessageRequest", "EditMessageRequest"] {
        let message = document
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut(body))
            .and_then(|schema| match schema {
                RefOr::T(Schema::Object(object)) => object.properties.get_mut("message"),
                _ => None,
            });
        let Some(RefOr::T(Schema::Object(message))) = message else {
            tracing::error!(body, "a message body has no message field to describe");
            continue;
        };
        message.description = Some(format!(
            "The text. White space is trimmed from both ends; what remains must be 1 to {max} \
             characters, none of them a control character other than tab, line feed and \
             carriage return. The pattern says exactly that."
        ));
        message.pattern = Some(message_pattern(max));
    }
}

/// A pattern (ECMA-262, also read alike by Python's and Rust's regex engines) matching
/// exactly the texts the service accepts for a limit of `max_chars` characters: after
/// trimming Unicode white space (what `str::trim` removes), 1 to `max_chars`
/// characters, none of them a control character (Unicode Cc) other than tab, line feed
/// and carriage return. Length alone cannot say it: the limit counts the trimmed text.
pub(crate) fn message_pattern(max_chars: usize) -> String {
    // White space that trimming removes (Unicode White_Space, controls included).
    const SPACE: &str =
        r"[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*";
    // A character allowed inside the text: anything but a control character other
    // than tab, line feed and carriage return.
    const ALLOWED: &str = r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]";
    // A character trimming keeps at an end: allowed and not white space.
    const KEPT: &str = r"[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
    let text = match max_chars {
        // No text is accepted (a configuration refuses this, a library user may not).
        0 => return r"[^\s\S]".to_owned(),
        1 => KEPT.to_owned(),
        n => format!("{KEPT}(?:{ALLOWED}{{0,{}}}{KEPT})?", n - 2),
    };
    format!("^{SPACE}{text}{SPACE}$")
}
