//! The `webhooks` section of the OpenAPI document: what the server posts to a
//! configured endpoint (Standard Webhooks v1), one entry per event.

use serde_json::{Value, json};
use utoipa::openapi::path::Paths;
use utoipa::openapi::{OpenApi, RefOr, Schema};

/// The events, with when each is sent.
const EVENTS: [(&str, &str); 3] = [
    (
        "message.created",
        "A message was stored. `data.message` is the message as it was created (status `sent`).",
    ),
    (
        "message.read",
        "The receiver read a message. `data.message` is the message, status `read`.",
    ),
    (
        "message.undelivered",
        "A message was still undelivered `CHAT_WEBHOOK_UNDELIVERED_AFTER_SECONDS` after it was \
         stored: the hook for push or e-mail to an offline receiver. Sent at most once per \
         endpoint, never for a message delivered in time.",
    ),
];

fn header(name: &str, description: &str, example: &str) -> Value {
    json!({
        "name": name,
        "in": "header",
        "required": true,
        "description": description,
        "schema": {"type": "string"},
        "example": example,
    })
}

fn operation(event: &str, description: &str) -> Value {
    json!({
        "post": {
            "tags": ["webhooks"],
            "operationId": format!("webhook_{}", event.replace('.', "_")),
            "summary": event,
            "description": format!(
                "{description}\n\nSigned by Standard Webhooks v1: verify `webhook-signature` \
                 over `webhook-id.webhook-timestamp.body` with the endpoint's `whsec_` secret \
                 before trusting the body, and use `webhook-id` to ignore repeats (delivery is \
                 at least once)."
            ),
            "parameters": [
                header("webhook-id", "The same on every attempt of one delivery.", "msg_2b3f0c7d9e8a41f6a5c4b3a2918f7e6d_42"),
                header("webhook-timestamp", "This attempt's time, Unix seconds.", "1764806400"),
                header("webhook-signature", "`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            ],
            "requestBody": {
                "required": true,
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/WebhookPayload"},
                }},
            },
            "responses": {
                "2XX": {"description": "Received: the delivery is done."},
                "410": {"description": "Gone: the server sends nothing more to this endpoint until it restarts with it configured."},
                "default": {"description": "Any other answer, a redirect or no answer within the timeout: tried again on the retry schedule (a `Retry-After` is honoured), dead after the last attempt."},
            },
        }
    })
}

/// The schema every webhook body follows.
fn payload_schema() -> Value {
    json!({
        "type": "object",
        "description": "A webhook body, in Standard Webhooks' shape.",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {
                "type": "string",
                "enum": EVENTS.map(|(event, _)| event),
            },
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "When the event happened: the message's creation, its reading, or the end of the undelivered wait.",
            },
            "data": {
                "type": "object",
                "required": ["message"],
                "properties": {"message": {"$ref": "#/components/schemas/Message"}},
            },
        },
    })
}

/// Adds the webhooks, their payload schema and their tag to `document`.
pub(crate) fn describe_webhooks(document: &mut OpenApi) {
    let paths: serde_json::Map<String, Value> = EVENTS
        .iter()
        .map(|(event, description)| ((*event).to_owned(), operation(event, description)))
        .collect();
    let built = serde_json::from_value::<Paths>(Value::Object(paths)).and_then(|paths| {
        serde_json::from_value::<Schema>(payload_schema()).map(|schema| (paths, schema))
    });
    let (paths, schema) = match built {
        Ok(built) => built,
        Err(error) => {
            tracing::error!(%error, "the webhooks section does not build");
            debug_assert!(false, "the webhooks section does not build: {error}");
            return;
        }
    };
    document.webhooks = Some(paths);
    document
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .insert("WebhookPayload".to_owned(), RefOr::T(schema));
    let tags = document.tags.get_or_insert_with(Vec::new);
    let mut tag = utoipa::openapi::tag::Tag::new("webhooks");
    tag.description = Some(
        "What the server posts to CHAT_WEBHOOK_URL (Standard Webhooks v1); see docs/webhooks.md"
            .to_owned(),
    );
    tags.push(tag);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_described_with_its_payload_schema() {
        let mut document = crate::openapi();
        let json = serde_json::to_value(&document).expect("serializes");
        let webhooks = json["webhooks"].as_object().expect("a webhooks section");
        assert_eq!(webhooks.len(), 3);
        for (event, _) in EVENTS {
            let post = &webhooks[event]["post"];
            let parameters: Vec<&str> = post["parameters"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|p| p["name"].as_str().expect("a name"))
                .collect();
            assert_eq!(
                parameters,
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
            );
            assert!(post["responses"]["410"].is_object());
        }
        let schema = &json["components"]["schemas"]["WebhookPayload"];
        assert_eq!(
            schema["properties"]["data"]["properties"]["message"]["$ref"],
            "#/components/schemas/Message"
        );
        document.webhooks = None;
        assert!(serde_json::to_value(&document).expect("serializes")["webhooks"].is_null());
    }
}
