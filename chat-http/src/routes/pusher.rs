//! The Pusher routes: `GET /app/{key}` (the WebSocket pusher-js opens),
//! `POST /broadcasting/auth` (Laravel's authorization route, as Echo calls it) and the
//! HTTP API under `/apps/{id}/…` a back end publishes through.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_transport_pusher::{
    ApiCall, AuthRefusal, ChannelName, ChatChannel, PusherEndpoint, SocketId,
};
use chat_transport_ws::{WsUpgrade, WsUpgradeRejection};
use serde::Deserialize;

use crate::auth::{authenticate, bearer_token};
use crate::error::ApiError;
use crate::state::AppState;

fn endpoint(state: &AppState) -> Result<&PusherEndpoint, ApiError> {
    state.pusher().ok_or(ApiError::RouteNotFound)
}

/// `GET /app/{key}?protocol=7`: a Pusher connection.
pub(crate) async fn connect(
    State(state): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    parts: Parts,
    upgrade: Result<WsUpgrade, WsUpgradeRejection>,
) -> Response {
    let pusher = match endpoint(&state) {
        Ok(pusher) => pusher,
        Err(error) => return error.into_response(),
    };
    if !state
        .websocket()
        .origin_allowed(parts.headers.get(header::ORIGIN))
    {
        return ApiError::OriginNotAllowed.into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::NotUpgradable(rejection.status(), rejection.to_string())
                .into_response();
        }
    };
    let protocol = form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "protocol")
        .map(|(_, value)| value.into_owned());
    pusher.accept(upgrade, &key, protocol.as_deref())
}

#[derive(Deserialize)]
struct AuthForm {
    socket_id: Option<String>,
    channel_name: Option<String>,
}

/// `POST /broadcasting/auth`: signs a subscription of the authenticated user, from a
/// form (as Echo sends it) or a JSON body.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    parts: Parts,
    body: Bytes,
) -> Response {
    match authorize_request(&state, &parts, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn authorize_request(
    state: &AppState,
    parts: &Parts,
    body: &[u8],
) -> Result<Response, ApiError> {
    let pusher = endpoint(state)?;
    let identity = authenticate(state, bearer_token(&parts.headers), parts).await?;
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let form: AuthForm = if is_json {
        serde_json::from_slice(body).map_err(|_| {
            forbidden("the body must be a JSON object with socket_id and channel_name")
        })?
    } else {
        let mut form = AuthForm {
            socket_id: None,
            channel_name: None,
        };
        for (name, value) in form_urlencoded::parse(body) {
            match &*name {
                "socket_id" => form.socket_id = Some(value.into_owned()),
                "channel_name" => form.channel_name = Some(value.into_owned()),
                _ => {}
            }
        }
        form
    };
    // Laravel's route answers 403 for anything but a missing credential; so does this.
    let socket_id: SocketId = form
        .socket_id
        .and_then(|id| id.parse().ok())
        .ok_or(forbidden("socket_id must be a socket id such as 1234.5678"))?;
    let channel: ChannelName = form
        .channel_name
        .and_then(|name| name.parse().ok())
        .ok_or(forbidden("channel_name must be a valid channel name"))?;
    // A conversation channel carries presence and typing: the chat decides who joins.
    if let Some(ChatChannel::Conversation(a, b)) = ChatChannel::of(&channel)
        && !state
            .chat()
            .may_join_conversation(identity.user_id, a, b)
            .await?
    {
        return Err(ApiError::Chat(chat_core::Error::Forbidden {
            reason: "this channel is not yours to join",
        }));
    }
    match pusher.authorize(identity.user_id, &socket_id, &channel) {
        Ok(auth) => Ok(Json(auth).into_response()),
        Err(refusal @ (AuthRefusal::Forbidden | AuthRefusal::Public)) => {
            Err(ApiError::Chat(chat_core::Error::Forbidden {
                reason: if refusal == AuthRefusal::Public {
                    "public channels need no authorization"
                } else {
                    "this channel is not yours to join"
                },
            }))
        }
    }
}

fn forbidden(reason: &'static str) -> ApiError {
    ApiError::Chat(chat_core::Error::Forbidden { reason })
}

/// `/apps/{id}/…`: the HTTP API, answered by the Pusher endpoint.
pub(crate) async fn api(
    State(state): State<AppState>,
    method: Method,
    parts: Parts,
    body: Bytes,
) -> Response {
    let pusher = match endpoint(&state) {
        Ok(pusher) => pusher,
        Err(error) => return error.into_response(),
    };
    // The path as the client signed it, wherever a host mounted these routes.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let call = ApiCall {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        body: &body,
    };
    let answer = pusher
        .handle_api(&call, time::OffsetDateTime::now_utc().unix_timestamp())
        .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    let content_type = if answer.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        answer.body,
    )
        .into_response()
}
