//! The OpenAPI 3.1 document, generated from the handlers.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::{conversations, messages, system, ws};
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
        (name = "messages", description = "Sending, history, read receipts"),
        (name = "conversations", description = "The conversation list"),
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
        .routes(routes!(messages::history))
        .routes(routes!(messages::mark_read))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::mark_read))
        .routes(routes!(ws::connect))
}

/// The reference server's own routes: health, readiness and metrics.
pub(crate) fn system_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .routes(routes!(system::metrics))
}

/// The OpenAPI document the server serves at `/api/openapi.json`: the chat API under
/// [`API_PREFIX`] and the system routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = openapi_at(API_PREFIX);
    document.merge(system_routes().split_for_parts().1);
    document
}

/// The OpenAPI document of the chat API alone, mounted at `prefix` (for a host that
/// nests [`router`](crate::router) and publishes its own documentation).
pub fn openapi_at(prefix: &str) -> utoipa::openapi::OpenApi {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(prefix, chat_routes())
        .split_for_parts()
        .1
}
