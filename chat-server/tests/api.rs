//! The REST API through `app(...).oneshot(...)`: every endpoint, every documented
//! status, pagination, idempotency, and the attacks that must fail. Every answer is
//! also checked against the OpenAPI document by the harness.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chat_core::{ChatService, GovernorRateLimiter, InProcessNotifier, JwtAuthenticator};
use chat_server::AppState;
use common::{SECRET, TestApp, switchable_store, token};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn raw_post(uri: &str, token: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn with_token(uri: &str, token: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

// ---- edit and delete ----

async fn edit_is_the_senders_within_the_window_and_idempotent() {
    let app = TestApp::new().await;
    let id = app.send_message(1, 2, "helo").await["id"].as_i64().unwrap();
    let uri = format!("/api/chat/messages/{id}");
    let edit = |user, text: &str| {
        app.call(
            Method::PATCH,
            &uri,
            Some(user),
            Some(json!({"message": text})),
        )
    };
    let edited = edit(1, "  hello  ").await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    let data = &edited.body["data"];
    assert_eq!(data["message"], "hello");
    assert!(data["edited_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(data["deleted_at"], Value::Null);
    assert_eq!(data["id"], id);
    let again = edit(1, "hello").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, edited.body, "the same text is no new edit");
    assert_eq!(edit(2, "mine").await.status, StatusCode::FORBIDDEN);
    let stranger = edit(3, "mine").await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
    let unknown = app
        .call(
            Method::PATCH,
            "/api/chat/messages/999",
            Some(1),
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(unknown.body, stranger.body);
    let blank = edit(1, "   ").await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blank.error_fields(), ["message"]);
    let extra = app
        .call(
            Method::PATCH,
            &uri,
            Some(1),
            Some(json!({"message": "x", "receiver_id": 3})),
        )
        .await;
    assert_eq!(extra.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_id = app
        .call(
            Method::PATCH,
            "/api/chat/messages/abc",
            Some(1),
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_id.error_fields(), ["message_id"]);
    let history = app.get("/api/chat/messages/1", 2).await;
    assert_eq!(history.body["data"][0]["message"], "hello");

    let closed = TestApp::with_args(&["--edit-window-seconds", "0"]).await;
    let id = closed.send_message(1, 2, "late").await["id"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let late = closed
        .call(
            Method::PATCH,
            &format!("/api/chat/messages/{id}"),
            Some(1),
            Some(json!({"message": "fixed"})),
        )
        .await;
    assert_eq!(late.status, StatusCode::FORBIDDEN);
}

async fn delete_leaves_a_tombstone_and_keeps_counts_right() {
    let app = TestApp::new().await;
    app.send_message(1, 2, "first").await;
    let id = app.send_message(1, 2, "secret").await["id"]
        .as_i64()
        .unwrap();
    let uri = format!("/api/chat/messages/{id}");
    assert_eq!(
        app.call(Method::DELETE, &uri, Some(2), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(Method::DELETE, &uri, Some(3), None).await.status,
        StatusCode::NOT_FOUND
    );
    let deleted = app.call(Method::DELETE, &uri, Some(1), None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert_eq!(deleted.body["data"]["message"], "");
    assert!(deleted.body["data"]["deleted_at"].is_string());
    let again = app.call(Method::DELETE, &uri, Some(1), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, deleted.body);
    let edit = app
        .call(
            Method::PATCH,
            &uri,
            Some(1),
            Some(json!({"message": "back"})),
        )
        .await;
    assert_eq!(edit.status, StatusCode::CONFLICT);
    // History keeps the tombstone in its place; the list shows it, never the text.
    let history = app.get("/api/chat/messages/1", 2).await;
    assert_eq!(history.body["meta"]["total"], 2);
    assert_eq!(history.body["data"][0], deleted.body["data"]);
    assert!(!history.text.contains("secret"));
    let list = app.get("/api/chat/conversations", 2).await;
    assert_eq!(list.body["data"][0]["last_message"], deleted.body["data"]);
    assert_eq!(list.body["data"][0]["unread_count"], 2);
    assert_eq!(list.body["meta"]["total_unread"], 2);
    let read = app
        .post("/api/chat/conversations/1/read", 2, json!({}))
        .await;
    assert_eq!(read.body["data"]["updated"], 2);
    let list = app.get("/api/chat/conversations", 2).await;
    assert_eq!(list.body["meta"]["total_unread"], 0);
}

// ---- blocks and presence ----

async fn blocks_refuse_sends_neutrally_and_are_listed_and_lifted() {
    let app = TestApp::new().await;
    app.send_message(2, 1, "before").await;
    let blocked = app.post("/api/chat/blocks/2", 1, json!({})).await;
    assert_eq!(blocked.status, StatusCode::CREATED, "{}", blocked.text);
    assert_eq!(blocked.body["data"]["user_id"], 2);
    assert!(
        blocked.body["data"]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let again = app
        .call(Method::POST, "/api/chat/blocks/2", Some(1), None)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, blocked.body);
    let from_blocked = app
        .post(
            "/api/chat/send",
            2,
            json!({"receiver_id": 1, "message": "hello?"}),
        )
        .await;
    assert_eq!(from_blocked.status, StatusCode::FORBIDDEN);
    let from_blocker = app
        .post(
            "/api/chat/send",
            1,
            json!({"receiver_id": 2, "message": "bye"}),
        )
        .await;
    assert_eq!(from_blocker.status, StatusCode::FORBIDDEN);
    assert_eq!(
        from_blocked.body, from_blocker.body,
        "neutral: nobody learns who blocked"
    );
    assert!(
        !from_blocked.text.contains("block"),
        "{}",
        from_blocked.text
    );
    // History stays readable, and holds nothing of the refused sends.
    let history = app.get("/api/chat/messages/1", 2).await;
    assert_eq!(history.body["meta"]["total"], 1);
    let list = app.get("/api/chat/blocks", 1).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["data"], json!([blocked.body["data"]]));
    assert_eq!(app.get("/api/chat/blocks", 2).await.body["data"], json!([]));
    for uri in [
        "/api/chat/blocks/1",
        "/api/chat/blocks/0",
        "/api/chat/blocks/abc",
    ] {
        let refused = app.call(Method::POST, uri, Some(1), None).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(refused.error_fields(), ["user_id"], "{uri}");
    }
    let lifted = app
        .call(Method::DELETE, "/api/chat/blocks/2", Some(1), None)
        .await;
    assert_eq!(lifted.status, StatusCode::NO_CONTENT);
    assert!(lifted.text.is_empty());
    let lifted_again = app
        .call(Method::DELETE, "/api/chat/blocks/2", Some(1), None)
        .await;
    assert_eq!(lifted_again.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.send_status(2, 1, "friends again").await,
        StatusCode::CREATED
    );
}

async fn presence_lookups_are_bounded_and_hide_strangers() {
    let app = TestApp::new().await;
    app.send_message(1, 2, "hi").await;
    let looked = app.get("/api/chat/presence?user_ids=2,3,2", 1).await;
    assert_eq!(looked.status, StatusCode::OK, "{}", looked.text);
    assert_eq!(
        looked.body["data"],
        json!([
            {"user_id": 2, "online": false, "last_seen_at": null},
            {"user_id": 3, "online": false, "last_seen_at": null},
            {"user_id": 2, "online": false, "last_seen_at": null},
        ])
    );
    let many = (1..=101)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for query in [
        String::new(),
        "?user_ids=".to_owned(),
        "?user_ids=0".to_owned(),
        "?user_ids=1,x".to_owned(),
        "?user_ids=1&user_ids=2".to_owned(),
        format!("?user_ids={many}"),
    ] {
        let refused = app.get(&format!("/api/chat/presence{query}"), 1).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(refused.error_fields(), ["user_ids"], "{query}");
    }
    // Conversation rows carry the counterpart's presence.
    let list = app.get("/api/chat/conversations", 1).await;
    assert_eq!(list.body["data"][0]["online"], false);
    assert_eq!(list.body["data"][0]["last_seen_at"], Value::Null);
}

// ---- send ----

async fn send_stores_and_answers_201_with_rate_headers() {
    let app = TestApp::new().await;
    let answer = app
        .post(
            "/api/chat/send",
            1,
            json!({"receiver_id": 2, "message": "  hello  "}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let data = &answer.body["data"];
    assert_eq!(data["message"], "hello");
    assert_eq!(
        (data["sender_id"].as_i64(), data["receiver_id"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(data["status"], "sent");
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(answer.header("x-ratelimit-limit"), Some("30"));
    assert_eq!(answer.header("x-ratelimit-remaining"), Some("29"));
    assert!(answer.header("x-request-id").is_some());
    // Visible to the receiver.
    let history = app.get("/api/chat/messages/1", 2).await;
    assert_eq!(history.body["data"][0]["id"], data["id"]);
}

async fn replay_answers_200_with_the_original_and_other_content_409() {
    let app = TestApp::new().await;
    let body = json!({"receiver_id": 2, "message": "pay rent", "client_message_id": "phone:1"});
    let first = app.post("/api/chat/send", 1, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = app.post("/api/chat/send", 1, body).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body, first.body);
    let conflict = app
        .post(
            "/api/chat/send",
            1,
            json!({"receiver_id": 2, "message": "other", "client_message_id": "phone:1"}),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert!(
        conflict.body["message"]
            .as_str()
            .unwrap()
            .contains("client_message_id")
    );
    let history = app.get("/api/chat/messages/2", 1).await;
    assert_eq!(history.body["meta"]["total"], 1);
}

async fn invalid_sends_answer_422_naming_the_field() {
    let app = TestApp::new().await;
    let cases = [
        (json!({"receiver_id": 2, "message": "   "}), "message"),
        (json!({"receiver_id": 2}), "message"),
        (json!({"receiver_id": 2, "message": null}), "message"),
        (json!({"receiver_id": 2, "message": 5}), "message"),
        (json!({"message": "hi"}), "receiver_id"),
        (json!({"receiver_id": "2", "message": "hi"}), "receiver_id"),
        (json!({"receiver_id": 1, "message": "hi"}), "receiver_id"),
        (json!({"receiver_id": 0, "message": "hi"}), "receiver_id"),
        (
            json!({"receiver_id": 2, "message": "x".repeat(4001)}),
            "message",
        ),
        (
            json!({"receiver_id": 2, "message": "hi", "client_message_id": "bad id!"}),
            "client_message_id",
        ),
        (
            json!({"receiver_id": 2, "message": "hi", "sender_id": 7}),
            "sender_id",
        ),
        (
            json!({"receiver_id": 2, "message": "hi", "extra": true}),
            "extra",
        ),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let answer = app.post("/api/chat/send", 1, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.text
        );
        assert!(
            answer.error_fields().contains(&field.to_owned()),
            "{body}: {}",
            answer.text
        );
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Nothing was stored, and no sender_id was ever taken from a body.
    assert_eq!(
        app.get("/api/chat/messages/1", 2).await.body["meta"]["total"],
        0
    );
    assert_eq!(
        app.get("/api/chat/messages/7", 2).await.body["meta"]["total"],
        0
    );
}

async fn malformed_bodies_answer_400_413_415() {
    let app = TestApp::with_args(&["--max-body-bytes", "1024"]).await;
    let token = token(1);
    let cases = [
        (
            raw_post(
                "/api/chat/send",
                &token,
                "application/json",
                "{\"receiver_id\": 2,",
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw_post("/api/chat/send", &token, "application/json", ""),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw_post("/api/chat/send", &token, "application/json", "{} trailing"),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw_post(
                "/api/chat/send",
                &token,
                "text/plain",
                "{\"receiver_id\": 2, \"message\": \"x\"}",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            raw_post(
                "/api/chat/send",
                &token,
                "application/x-www-form-urlencoded",
                "receiver_id=2",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            raw_post(
                "/api/chat/send",
                &token,
                "application/json",
                json!({"receiver_id": 2, "message": "x".repeat(2000)}).to_string(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (request, expected) in cases {
        let answer = app.send(request).await;
        assert_eq!(answer.status, expected, "{}", answer.text);
        assert!(answer.body["message"].is_string(), "{}", answer.text);
    }
    // A JSON content type with parameters or a +json suffix is fine.
    let ok = app
        .send(raw_post(
            "/api/chat/send",
            &token,
            "application/json; charset=utf-8",
            json!({"receiver_id": 2, "message": "x"}).to_string(),
        ))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

async fn send_rate_limit_answers_429_with_retry_after() {
    let app = TestApp::with_args(&["--send-burst", "3", "--send-rate-per-minute", "6"]).await;
    for remaining in ["2", "1", "0"] {
        let answer = app
            .post(
                "/api/chat/send",
                1,
                json!({"receiver_id": 2, "message": "x"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.header("x-ratelimit-remaining"), Some(remaining));
    }
    let limited = app
        .post(
            "/api/chat/send",
            1,
            json!({"receiver_id": 2, "message": "x"}),
        )
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "retry after {retry}");
    // Malformed attempts are limited too, and other users are not affected.
    let token = token(1);
    let malformed = app
        .send(raw_post("/api/chat/send", &token, "application/json", "{"))
        .await;
    assert_eq!(malformed.status, StatusCode::TOO_MANY_REQUESTS);
    let other = app
        .post(
            "/api/chat/send",
            2,
            json!({"receiver_id": 1, "message": "x"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    let metrics = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        metrics.contains("chat_rate_limited_total{limit=\"send\"} 2"),
        "{metrics}"
    );
}

// ---- history ----

async fn history_page_mode_reports_meta_and_links() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (from, to) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
        ids.push(
            app.send_message(from, to, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
        app.send_message(1, 3, "noise").await;
    }
    let page = app.get("/api/chat/messages/2?page=2&per_page=3", 1).await;
    assert_eq!(page.status, StatusCode::OK);
    let got: Vec<i64> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[3], ids[2], ids[1]]);
    assert_eq!(
        page.body["meta"],
        json!({"current_page": 2, "per_page": 3, "last_page": 3, "total": 7, "from": 4, "to": 6})
    );
    assert_eq!(
        page.body["links"]["next"],
        "/api/chat/messages/2?page=3&per_page=3"
    );
    assert_eq!(
        page.body["links"]["prev"],
        "/api/chat/messages/2?page=1&per_page=3"
    );
    assert_eq!(
        page.body["links"]["first"],
        "/api/chat/messages/2?page=1&per_page=3"
    );
    assert_eq!(
        page.body["links"]["last"],
        "/api/chat/messages/2?page=3&per_page=3"
    );
    // Walking every page yields every message once, newest first.
    let mut walked = Vec::new();
    let mut next = Some("/api/chat/messages/1?per_page=2".to_owned());
    while let Some(uri) = next {
        let answer = app.get(&uri, 2).await;
        walked.extend(
            answer.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap()),
        );
        next = answer.body["links"]["next"].as_str().map(str::to_owned);
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);
    let beyond = app.get("/api/chat/messages/2?page=9", 1).await;
    assert_eq!(beyond.body["data"], json!([]));
    assert_eq!(beyond.body["meta"]["from"], Value::Null);
}

async fn history_cursor_modes_walk_both_ways() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.send_message(1, 2, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let latest = app.get("/api/chat/messages/2?limit=2", 1).await;
    let got: Vec<i64> = latest.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4], ids[3]]);
    assert_eq!(
        latest.body["meta"],
        json!({"limit": 2, "has_more": true, "next_cursor": ids[3]})
    );
    let mut walked = got;
    let mut next = latest.body["links"]["next"].as_str().map(str::to_owned);
    while let Some(uri) = next {
        assert!(uri.contains("before_id="));
        let answer = app.get(&uri, 1).await;
        walked.extend(
            answer.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap()),
        );
        next = answer.body["links"]["next"].as_str().map(str::to_owned);
    }
    assert_eq!(walked, ids.iter().rev().copied().collect::<Vec<_>>());
    let after = app
        .get(
            &format!("/api/chat/messages/1?after_id={}&limit=10", ids[1]),
            2,
        )
        .await;
    let got: Vec<i64> = after.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[2..].to_vec());
    assert_eq!(after.body["meta"]["has_more"], false);
    assert_eq!(after.body["links"]["next"], Value::Null);
}

async fn bad_history_parameters_answer_422() {
    let app = TestApp::new().await;
    let cases = [
        ("/api/chat/messages/2?per_page=101", "per_page"),
        ("/api/chat/messages/2?per_page=0", "per_page"),
        ("/api/chat/messages/2?page=0", "page"),
        ("/api/chat/messages/2?page=abc", "page"),
        ("/api/chat/messages/2?page=-1", "page"),
        ("/api/chat/messages/2?limit=500", "limit"),
        ("/api/chat/messages/2?before_id=0", "before_id"),
        ("/api/chat/messages/2?after_id=-5", "after_id"),
        ("/api/chat/messages/2?before_id=5&after_id=1", "after_id"),
        ("/api/chat/messages/2?page=1&before_id=5", "page"),
        ("/api/chat/messages/1", "user_id"),
        ("/api/chat/messages/0", "user_id"),
        ("/api/chat/messages/abc", "user_id"),
        ("/api/chat/messages/99999999999999999999", "user_id"),
        ("/api/chat/messages/%FF", "user_id"),
    ];
    for (uri, field) in cases {
        let answer = app.get(uri, 1).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{uri}: {}",
            answer.text
        );
        assert!(
            answer.error_fields().contains(&field.to_owned()),
            "{uri}: {}",
            answer.text
        );
    }
}

// ---- read ----

async fn mark_read_is_idempotent_and_only_for_the_receiver() {
    let app = TestApp::new().await;
    let id = app.send_message(1, 2, "read me").await["id"]
        .as_i64()
        .unwrap();
    let uri = format!("/api/chat/read/{id}");
    let by_sender = app.call(Method::PATCH, &uri, Some(1), None).await;
    assert_eq!(by_sender.status, StatusCode::FORBIDDEN);
    let by_stranger = app.call(Method::PATCH, &uri, Some(3), None).await;
    assert_eq!(by_stranger.status, StatusCode::NOT_FOUND);
    let unknown = app
        .call(Method::PATCH, "/api/chat/read/999", Some(2), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        by_stranger.body, unknown.body,
        "a stranger learns nothing an unknown id does not say"
    );
    let bad = app
        .call(Method::PATCH, "/api/chat/read/abc", Some(2), None)
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let zero = app
        .call(Method::PATCH, "/api/chat/read/0", Some(2), None)
        .await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);

    let read = app.call(Method::PATCH, &uri, Some(2), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["data"]["status"], "read");
    assert!(read.body["data"]["read_at"].is_string());
    let again = app.call(Method::PATCH, &uri, Some(2), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, read.body);
}

async fn conversation_read_marks_up_to_an_id_or_all() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.send_message(2, 1, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    app.send_message(1, 2, "mine").await;
    let up_to = app
        .post(
            "/api/chat/conversations/2/read",
            1,
            json!({"up_to_id": ids[1]}),
        )
        .await;
    assert_eq!(up_to.status, StatusCode::OK);
    assert_eq!(up_to.body, json!({"data": {"updated": 2}}));
    // An empty body means everything.
    let all = app
        .call(
            Method::POST,
            "/api/chat/conversations/2/read",
            Some(1),
            None,
        )
        .await;
    assert_eq!(all.body, json!({"data": {"updated": 2}}));
    let again = app
        .call(
            Method::POST,
            "/api/chat/conversations/2/read",
            Some(1),
            None,
        )
        .await;
    assert_eq!(again.body, json!({"data": {"updated": 0}}));
    for (uri, body, status) in [
        (
            "/api/chat/conversations/1/read",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/chat/conversations/2/read",
            json!({"up_to_id": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/chat/conversations/2/read",
            json!({"up_to": 3}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/chat/conversations/x/read",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let answer = app.post(uri, 1, body).await;
        assert_eq!(answer.status, status, "{uri}: {}", answer.text);
    }
}

async fn conversations_list_counts_unread_and_pages() {
    let app = TestApp::new().await;
    for peer in 2..=5 {
        app.send_message(peer, 1, "hi").await;
    }
    app.send_message(2, 1, "again").await;
    let first = app.get("/api/chat/conversations?limit=2", 1).await;
    assert_eq!(first.status, StatusCode::OK);
    let rows = first.body["data"].as_array().unwrap();
    assert_eq!(rows[0]["user_id"], 2);
    assert_eq!(rows[0]["unread_count"], 2);
    assert_eq!(rows[0]["last_message"]["message"], "again");
    assert_eq!(first.body["meta"]["total_unread"], 5);
    let mut seen: Vec<i64> = rows
        .iter()
        .map(|r| r["user_id"].as_i64().unwrap())
        .collect();
    let mut next = first.body["links"]["next"].as_str().map(str::to_owned);
    while let Some(uri) = next {
        let answer = app.get(&uri, 1).await;
        seen.extend(
            answer.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["user_id"].as_i64().unwrap()),
        );
        next = answer.body["links"]["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, vec![2, 5, 4, 3]);
    let bad = app.get("/api/chat/conversations?limit=0", 1).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

// ---- broken object level authorization ----

async fn a_third_user_sees_and_changes_nothing_of_a_conversation() {
    let app = TestApp::new().await;
    let id = app.send_message(1, 2, "private").await["id"]
        .as_i64()
        .unwrap();
    app.send_message(2, 1, "reply").await;
    for uri in [
        "/api/chat/messages/1",
        "/api/chat/messages/2",
        "/api/chat/messages/2?limit=50",
        "/api/chat/messages/1?after_id=0",
    ] {
        let answer = app.get(uri, 3).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["data"], json!([]), "{uri}");
    }
    assert_eq!(
        app.get("/api/chat/conversations", 3).await.body["data"],
        json!([])
    );
    let patch = app
        .call(
            Method::PATCH,
            &format!("/api/chat/read/{id}"),
            Some(3),
            None,
        )
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    for peer in [1, 2] {
        let read = app
            .call(
                Method::POST,
                &format!("/api/chat/conversations/{peer}/read"),
                Some(3),
                None,
            )
            .await;
        assert_eq!(read.body["data"]["updated"], 0);
    }
    // Both messages are still unread by their receivers.
    let two = app.get("/api/chat/conversations", 2).await;
    assert_eq!(two.body["meta"]["total_unread"], 1);
    let one = app.get("/api/chat/conversations", 1).await;
    assert_eq!(one.body["meta"]["total_unread"], 1);
}

// ---- authentication ----

fn claims(extra: Value) -> Value {
    let mut base = json!({"sub": "1", "exp": now() + 600});
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn forged_expired_and_early_tokens_answer_401() {
    let app = TestApp::new().await;
    let payload = chat_core::testing::base64url(claims(json!({})).to_string().as_bytes());
    let tokens = [
        (
            "alg none",
            format!(
                "{}.{payload}.",
                chat_core::testing::base64url(br#"{"alg":"none","typ":"JWT"}"#)
            ),
        ),
        (
            "another key",
            sign(
                &claims(json!({})),
                "another-secret-that-is-also-long-enough!!",
            ),
        ),
        (
            "expired",
            sign(&claims(json!({"exp": now() - 120})), SECRET),
        ),
        (
            "not yet valid",
            sign(&claims(json!({"nbf": now() + 300})), SECRET),
        ),
        ("no exp", sign(&json!({"sub": "1"}), SECRET)),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (name, token) in tokens {
        let answer = app
            .send(with_token("/api/chat/conversations", &token))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            answer.body,
            json!({"message": "Unauthenticated."}),
            "{name}"
        );
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token"),
            "{name}"
        );
    }
    let missing = app
        .call(Method::GET, "/api/chat/conversations", None, None)
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let basic = app
        .send(
            Request::builder()
                .uri("/api/chat/conversations")
                .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    // Every chat route requires a token, also with a body that would be invalid.
    for (method, uri) in [
        (Method::POST, "/api/chat/send"),
        (Method::GET, "/api/chat/messages/2"),
        (Method::PATCH, "/api/chat/read/1"),
        (Method::POST, "/api/chat/conversations/2/read"),
        (Method::GET, "/api/chat/conversations"),
    ] {
        let answer = app
            .call(
                method.clone(),
                uri,
                None,
                Some(json!({"receiver_id": 2, "message": "x"})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
}

async fn audience_and_issuer_are_required_once_configured() {
    let app = TestApp::with_args(&[
        "--jwt-audience",
        "chat",
        "--jwt-issuer",
        "https://id.example",
    ])
    .await;
    let good = sign(
        &claims(json!({"aud": "chat", "iss": "https://id.example"})),
        SECRET,
    );
    assert_eq!(
        app.send(with_token("/api/chat/conversations", &good))
            .await
            .status,
        StatusCode::OK
    );
    for bad in [
        claims(json!({"iss": "https://id.example"})),
        claims(json!({"aud": "other", "iss": "https://id.example"})),
        claims(json!({"aud": "chat"})),
        claims(json!({"aud": "chat", "iss": "https://evil.example"})),
    ] {
        let answer = app
            .send(with_token("/api/chat/conversations", &sign(&bad, SECRET)))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
}

async fn failed_authentications_are_limited_per_address() {
    let app = TestApp::with_args(&[
        "--auth-failure-burst",
        "3",
        "--auth-failures-per-minute",
        "1",
    ])
    .await;
    for _ in 0..3 {
        let answer = app
            .send(with_token("/api/chat/conversations", "bad-token"))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app
        .send(with_token("/api/chat/conversations", "bad-token"))
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.header("x-ratelimit-limit"), Some("3"));
    // Only failures are limited: the credential is checked first, so a valid token
    // from the blocked address is still served.
    let valid = app.get("/api/chat/conversations", 1).await;
    assert_eq!(valid.status, StatusCode::OK, "{}", valid.text);
}

// ---- errors, health, documents ----

async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::new().await;
    let missing = app.get("/api/chat/nothing-here", 1).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, json!({"message": "Not Found."}));
    let method = app
        .call(Method::DELETE, "/api/chat/send", Some(1), None)
        .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(method.body, json!({"message": "Method Not Allowed."}));
}

#[tokio::test]
async fn an_unavailable_store_answers_503_without_details() {
    let store = switchable_store();
    let chat = ChatService::new(store.clone(), Arc::new(InProcessNotifier::new()));
    let auth = Arc::new(JwtAuthenticator::hs256(SECRET.as_bytes()).unwrap());
    let app = TestApp::from_app(chat_server::app(AppState::builder(chat, auth).build()));
    assert_eq!(
        app.call(Method::GET, "/ready", None, None).await.status,
        StatusCode::OK
    );
    store.layer().fail_all();
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.body,
        json!({"status": "unavailable", "store": "down", "bus": "up"})
    );
    let send = app
        .post(
            "/api/chat/send",
            1,
            json!({"receiver_id": 2, "message": "x"}),
        )
        .await;
    assert_eq!(send.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send.header("retry-after"), Some("5"));
    assert!(
        !send.text.contains("driver") && !send.text.contains("refused"),
        "{}",
        send.text
    );
    let history = app.get("/api/chat/messages/2", 1).await;
    assert_eq!(history.status, StatusCode::SERVICE_UNAVAILABLE);
    store.layer().heal();
    assert_eq!(app.send_status(1, 2, "x").await, StatusCode::CREATED);
}

async fn health_ready_and_metrics() {
    let app = TestApp::new().await;
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        (health.status, health.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        (ready.status, ready.body.clone()),
        (
            StatusCode::OK,
            json!({"status": "ready", "store": "up", "bus": "up"})
        )
    );
    app.send_message(1, 2, "counted").await;
    app.get("/api/chat/messages/2", 1).await;
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for expected in [
        "chat_http_requests_total{method=\"POST\",route=\"/api/chat/send\",status=\"201\"} 1",
        "chat_messages_sent_total{outcome=\"created\"} 1",
        "chat_store_duration_seconds_bucket{operation=\"insert\",outcome=\"ok\"",
        "chat_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/chat/messages/{id}\"",
    ] {
        assert!(
            metrics.text.contains(expected),
            "missing {expected}:\n{}",
            metrics.text
        );
    }
}

async fn openapi_document_is_served_and_complete() {
    let app = TestApp::new().await;
    let served = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(served.status, StatusCode::OK);
    let doc = served.body;
    assert_eq!(doc, serde_json::to_value(chat_server::openapi()).unwrap());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let expected: &[(&str, &str, &[u16])] = &[
        (
            "/api/chat/send",
            "post",
            &[200, 201, 400, 401, 403, 409, 413, 415, 422, 429, 503],
        ),
        ("/api/chat/messages/{id}", "get", &[200, 401, 422, 429, 503]),
        (
            "/api/chat/messages/{id}",
            "patch",
            &[200, 400, 401, 403, 404, 409, 413, 415, 422, 429, 503],
        ),
        (
            "/api/chat/messages/{id}",
            "delete",
            &[200, 401, 403, 404, 422, 429, 503],
        ),
        (
            "/api/chat/blocks/{user_id}",
            "post",
            &[200, 201, 401, 422, 429, 503],
        ),
        (
            "/api/chat/blocks/{user_id}",
            "delete",
            &[204, 401, 422, 429, 503],
        ),
        ("/api/chat/blocks", "get", &[200, 401, 429, 503]),
        ("/api/chat/presence", "get", &[200, 401, 422, 429, 503]),
        (
            "/api/chat/read/{message_id}",
            "patch",
            &[200, 401, 403, 404, 422, 429, 503],
        ),
        (
            "/api/chat/conversations/{user_id}/read",
            "post",
            &[200, 400, 401, 413, 415, 422, 429, 503],
        ),
        ("/api/chat/conversations", "get", &[200, 401, 422, 429, 503]),
        ("/api/chat/ws", "get", &[101, 400, 401, 403, 422, 426, 429]),
    ];
    for (path, method, statuses) in expected {
        let operation = &doc["paths"][path][method];
        let security = if *path == "/api/chat/ws" {
            json!([{"bearer": []}, {"query_token": []}])
        } else {
            json!([{"bearer": []}])
        };
        assert_eq!(operation["security"], security, "{method} {path}");
        let documented: Vec<u16> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        for status in *statuses {
            assert!(
                documented.contains(status),
                "{method} {path} does not document {status}"
            );
        }
    }
    let mut operation_ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    let count = operation_ids.len();
    operation_ids.sort_unstable();
    operation_ids.dedup();
    assert_eq!(operation_ids.len(), count, "operation ids repeat");
    let docs = app.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.text.contains("swagger"),
        "{}",
        &docs.text[..docs.text.len().min(200)]
    );
}

#[tokio::test]
async fn a_full_limiter_setup_through_the_builder() {
    // The builder used by hosts: a send limiter on the service and an auth limiter.
    let chat =
        ChatService::in_memory().with_send_limiter(Arc::new(GovernorRateLimiter::per_minute(
            std::num::NonZeroU32::new(60).unwrap(),
            std::num::NonZeroU32::new(1).unwrap(),
        )));
    let auth = Arc::new(JwtAuthenticator::hs256(SECRET.as_bytes()).unwrap());
    let app = TestApp::from_app(chat_server::app(AppState::builder(chat, auth).build()));
    assert_eq!(app.send_status(1, 2, "a").await, StatusCode::CREATED);
    assert_eq!(
        app.send_status(1, 2, "b").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn websocket_handshakes_are_checked_before_the_upgrade() {
    let app = TestApp::with_args(&["--allowed-origins", "https://app.example"]).await;
    let missing = app.call(Method::GET, "/api/chat/ws", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let evil = app
        .send(
            Request::builder()
                .uri("/api/chat/ws")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::AUTHORIZATION, format!("Bearer {}", token(1)))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    // Authenticated, but a plain GET is no WebSocket handshake.
    let plain = app.get("/api/chat/ws", 1).await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST, "{}", plain.text);
    let cursor = app.get("/api/chat/ws?after_id=x", 1).await;
    assert_eq!(cursor.status, StatusCode::UNPROCESSABLE_ENTITY);
    let by_query = app
        .call(
            Method::GET,
            &format!("/api/chat/ws?token={}", token(1)),
            None,
            None,
        )
        .await;
    assert_eq!(
        by_query.status,
        StatusCode::BAD_REQUEST,
        "authenticated by the query token"
    );
}

// ---- error messages that name the real problem ----

async fn repeated_json_keys_answer_422_naming_the_field() {
    let app = TestApp::new().await;
    let token = token(1);
    let cases = [
        (
            "/api/chat/send",
            r#"{"receiver_id": 2, "receiver_id": 3, "message": "x"}"#,
            "receiver_id",
        ),
        (
            "/api/chat/send",
            r#"{"receiver_id": 2, "message": "x", "message": "y"}"#,
            "message",
        ),
        (
            "/api/chat/conversations/2/read",
            r#"{"up_to_id": 1, "up_to_id": 2}"#,
            "up_to_id",
        ),
    ];
    for (uri, body, field) in cases {
        let answer = app
            .send(raw_post(uri, &token, "application/json", body))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.text
        );
        let expected = format!("The {field} field appears more than once.");
        assert_eq!(answer.body["errors"][field][0], expected, "{body}");
        assert_eq!(answer.body["message"], expected, "{body}");
    }
    // A body that is not UTF-8 is malformed JSON (400), also after a repeated key.
    let not_utf8 = app
        .send(raw_post(
            "/api/chat/send",
            &token,
            "application/json",
            b"{\"receiver_id\": 2, \"receiver_id\": 3, \"mes\xC3age\": \"x\"}".to_vec(),
        ))
        .await;
    assert_eq!(
        not_utf8.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_utf8.text
    );
    // A number beyond what JSON numbers are read as (f64) is refused as malformed
    // wherever it stands: before a repeated key, and after one.
    for body in [
        r#"{"a": {"b": 1e400, "b": 20}}"#,
        r#"{"a": {"b": -9, "b": 222337205821e3003381, "b": 20}}"#,
        r#"{"receiver_id": 2, "receiver_id": 3, "message": "x", "n": -1e999}"#,
    ] {
        let answer = app
            .send(raw_post("/api/chat/send", &token, "application/json", body))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
    }
    // Malformed JSON stays a 400, even with a repeated key before the error.
    let malformed = app
        .send(raw_post(
            "/api/chat/send",
            &token,
            "application/json",
            r#"{"receiver_id": 2, "receiver_id": 3, "message": "#,
        ))
        .await;
    assert_eq!(
        malformed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        malformed.text
    );
    // Nothing was stored.
    assert_eq!(
        app.get("/api/chat/messages/1", 2).await.body["meta"]["total"],
        0
    );
}

async fn repeated_query_parameters_answer_422_naming_the_parameter() {
    let app = TestApp::new().await;
    let cases = [
        ("/api/chat/messages/2?page=1&page=2", "page"),
        ("/api/chat/messages/2?per_page=10&per_page=10", "per_page"),
        (
            "/api/chat/messages/2?before_id=9&limit=5&before_id=3",
            "before_id",
        ),
        ("/api/chat/messages/2?after_id=1&after_id=x", "after_id"),
        ("/api/chat/conversations?limit=5&limit=6", "limit"),
        ("/api/chat/conversations?before=5&before=6", "before"),
    ];
    for (uri, field) in cases {
        let answer = app.get(uri, 1).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{uri}: {}",
            answer.text
        );
        let expected = format!("The {field} parameter may be given only once.");
        assert_eq!(answer.body["errors"][field][0], expected, "{uri}");
    }
    // Parameters the API does not read are ignored, repeated or not.
    let ignored = app.get("/api/chat/conversations?utm=a&utm=b", 1).await;
    assert_eq!(ignored.status, StatusCode::OK, "{}", ignored.text);
}

async fn out_of_range_integers_name_their_bounds() {
    let app = TestApp::new().await;
    let cases = [
        (
            "/api/chat/messages/2?page=1000000000000",
            "page",
            "The page field must not be greater than 2147483647.",
        ),
        (
            "/api/chat/messages/2?page=2147483648",
            "page",
            "The page field must not be greater than 2147483647.",
        ),
        (
            "/api/chat/messages/2?page=0",
            "page",
            "The page field must be at least 1.",
        ),
        (
            "/api/chat/messages/2?page=-99999999999999999999",
            "page",
            "The page field must be at least 1.",
        ),
        (
            "/api/chat/messages/2?page=abc",
            "page",
            "The page field must be an integer.",
        ),
        (
            "/api/chat/messages/2?page=",
            "page",
            "The page field must be an integer.",
        ),
        (
            "/api/chat/messages/2?per_page=99999999999",
            "per_page",
            "The per_page field must not be greater than 100.",
        ),
        (
            "/api/chat/conversations?limit=0",
            "limit",
            "The limit field must be at least 1.",
        ),
        (
            "/api/chat/messages/2?before_id=99999999999999999999",
            "before_id",
            "The before_id field must not be greater than 9223372036854775807.",
        ),
        (
            "/api/chat/messages/99999999999999999999",
            "user_id",
            "The user_id field must not be greater than 9223372036854775807.",
        ),
        (
            "/api/chat/messages/-1",
            "user_id",
            "The user_id field must be at least 1.",
        ),
    ];
    for (uri, field, expected) in cases {
        let answer = app.get(uri, 1).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{uri}: {}",
            answer.text
        );
        assert_eq!(answer.body["errors"][field][0], expected, "{uri}");
    }
    let last = app.get("/api/chat/messages/2?page=2147483647", 1).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.text);
    assert_eq!(last.body["meta"]["current_page"], 2_147_483_647_i64);
}

// ---- the OpenAPI document says exactly what the server accepts ----

/// Whether the server takes `status` as an accepted input (not refused as invalid).
fn accepted(status: StatusCode) -> bool {
    status != StatusCode::UNPROCESSABLE_ENTITY && status != StatusCode::BAD_REQUEST
}

async fn parameter_bounds_in_the_document_are_the_server_bounds() {
    let app = TestApp::new().await;
    let doc = serde_json::to_value(chat_server::openapi()).unwrap();
    // A caller who is none of the ids tried below, so every id is another user.
    let caller = 5;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/chat/") {
            continue;
        }
        // Without an upgrade the WebSocket handshake answers 400 to any valid request
        // (the upgrade itself is tested in tests/ws.rs); only a 422 is a refusal there.
        let websocket = path == "/api/chat/ws";
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                if websocket && name == "token" {
                    continue;
                }
                let schema = &parameter["schema"];
                // A list of ids in one string (`user_ids=1,2,3`) is bounded by its
                // pattern, which presence_lookups_are_bounded_and_hide_strangers checks.
                if schema["type"] == "string" && schema["pattern"].is_string() {
                    continue;
                }
                assert_eq!(schema["type"], "integer", "{method} {path} {name}");
                let (Some(min), Some(max)) =
                    (schema["minimum"].as_i64(), schema["maximum"].as_i64())
                else {
                    panic!("{method} {path}: {name} declares no minimum and maximum: {schema}");
                };
                if schema["format"] == "int32" {
                    assert!(
                        max <= i64::from(i32::MAX),
                        "{path} {name}: {max} is no int32"
                    );
                }
                let cases = [
                    (i128::from(min), true),
                    (i128::from(max), true),
                    (i128::from(min) - 1, false),
                    (i128::from(max) + 1, false),
                ];
                for (value, valid) in cases {
                    let mut uri = path
                        .replace("{user_id}", "2")
                        .replace("{message_id}", "1")
                        .replace("{id}", "2");
                    if parameter["in"] == "path" {
                        uri = path.replace(&format!("{{{name}}}"), &value.to_string());
                    } else {
                        uri = format!("{uri}?{name}={value}");
                    }
                    let answer = app.call(method.clone(), &uri, Some(caller), None).await;
                    let taken = if websocket {
                        answer.status != StatusCode::UNPROCESSABLE_ENTITY
                    } else {
                        accepted(answer.status)
                    };
                    assert_eq!(
                        taken,
                        valid,
                        "{method} {uri}: the document says {}, the server answered {}",
                        if valid { "valid" } else { "invalid" },
                        answer.text
                    );
                    if !valid {
                        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
                        // `/messages/{id}` serves users (history) and messages (edits):
                        // its errors say which, as its description documents.
                        let field = match (name, &method) {
                            ("id", &Method::GET) => "user_id",
                            ("id", _) => "message_id",
                            _ => name,
                        };
                        assert!(
                            parameter["description"]
                                .as_str()
                                .is_none_or(|text| name != "id" || text.contains(field)),
                            "{method} {path}: {name} does not document its error name"
                        );
                        assert!(
                            answer.error_fields().contains(&field.to_owned()),
                            "{uri}: {}",
                            answer.text
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 44, "only {checked} cases");
}

async fn body_schemas_in_the_document_are_the_server_rules() {
    let app =
        TestApp::with_args(&["--send-burst", "1000", "--send-rate-per-minute", "60000"]).await;
    let doc = serde_json::to_value(chat_server::openapi()).unwrap();
    let validator = |name: &str| {
        let mut schema = doc["components"]["schemas"][name].clone();
        schema["components"] = doc["components"].clone();
        jsonschema::draft202012::new(&schema).unwrap()
    };
    let send_schema = validator("SendMessageRequest");
    let caller = 5;
    let long = "x".repeat(4000);
    let messages = [
        String::new(),
        " ".to_owned(),
        " \t\r\n ".to_owned(),
        "\u{3000}\u{a0}\u{2028}".to_owned(),
        "x".to_owned(),
        " x ".to_owned(),
        "\u{3000}x\u{85}".to_owned(),
        "a\u{0}b".to_owned(),
        "a\u{1f}b".to_owned(),
        "a\u{7f}b".to_owned(),
        "a\u{9f}b".to_owned(),
        "line one\nline two\ttabbed\r\n".to_owned(),
        "\u{1c}x".to_owned(),
        "\u{feff}".to_owned(),
        "\u{200b}".to_owned(),
        "😀".repeat(4000),
        "😀".repeat(4001),
        long.clone(),
        format!("{long}x"),
        format!("  {long}\n\n"),
        format!(" {long}x "),
    ];
    for (i, message) in messages.iter().enumerate() {
        // A fresh idempotency key per case, so no case replays another.
        let body = json!({
            "receiver_id": 2,
            "message": message,
            "client_message_id": format!("case-{i}"),
        });
        let answer = app.post("/api/chat/send", caller, body.clone()).await;
        assert_eq!(
            send_schema.is_valid(&body),
            accepted(answer.status),
            "message {:?}: the server answered {}",
            message.chars().take(40).collect::<String>(),
            answer.status
        );
    }
    let keys = [
        json!(null),
        json!(""),
        json!("a"),
        json!("device-a:42_x.y"),
        json!("k".repeat(64)),
        json!("k".repeat(65)),
        json!("bad id"),
        json!("é"),
        json!("abc\n"),
        json!(5),
    ];
    for (i, key) in keys.iter().enumerate() {
        let body =
            json!({"receiver_id": 2, "message": format!("key {i}"), "client_message_id": key});
        let answer = app.post("/api/chat/send", caller, body.clone()).await;
        assert_eq!(
            send_schema.is_valid(&body),
            accepted(answer.status),
            "client_message_id {key}: the server answered {}",
            answer.text
        );
    }
    let receivers = [
        json!(0),
        json!(-1),
        json!(1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!("2"),
        json!(2.5),
        json!(null),
        // JSON Schema counts a number with a zero fraction as an integer.
        json!(483.0),
        json!(1e3),
        json!(1e19),
        json!(-0.0),
    ];
    for (i, receiver) in receivers.iter().enumerate() {
        let body = json!({"receiver_id": receiver, "message": format!("to {i}")});
        let answer = app.post("/api/chat/send", caller, body.clone()).await;
        assert_eq!(
            send_schema.is_valid(&body),
            accepted(answer.status),
            "receiver_id {receiver}: the server answered {}",
            answer.text
        );
    }
    let read_schema = validator("MarkConversationReadRequest");
    let bounds = [
        json!(null),
        json!(0),
        json!(1),
        json!(i64::MAX),
        json!(-5),
        json!(u64::MAX),
        json!("1"),
        json!(7.0),
        json!(0.5),
    ];
    for up_to_id in bounds {
        let body = json!({ "up_to_id": up_to_id });
        let answer = app
            .post("/api/chat/conversations/2/read", caller, body.clone())
            .await;
        assert_eq!(
            read_schema.is_valid(&body),
            accepted(answer.status),
            "up_to_id {up_to_id}: the server answered {}",
            answer.text
        );
    }
    // The body is optional: absent, empty or JSON null.
    let token = token(caller);
    for body in ["", "null", " null "] {
        let answer = app
            .send(raw_post(
                "/api/chat/conversations/2/read",
                &token,
                "application/json",
                body,
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{body:?}: {}", answer.text);
    }
}

async fn the_document_follows_the_configured_message_limit() {
    let app = TestApp::with_args(&["--max-message-chars", "10"]).await;
    let served = app.call(Method::GET, "/api/openapi.json", None, None).await;
    let schema =
        &served.body["components"]["schemas"]["SendMessageRequest"]["properties"]["message"];
    let pattern = schema["pattern"].as_str().unwrap();
    assert!(pattern.contains("{0,8}"), "{pattern}");
    let ten = app.send_status(1, 2, "0123456789").await;
    assert_eq!(ten, StatusCode::CREATED);
    let eleven = app.send_status(1, 2, "0123456789x").await;
    assert_eq!(eleven, StatusCode::UNPROCESSABLE_ENTITY);
}

crate::both_stores!("current_thread";
    blocks_refuse_sends_neutrally_and_are_listed_and_lifted,
    presence_lookups_are_bounded_and_hide_strangers,
    edit_is_the_senders_within_the_window_and_idempotent,
    delete_leaves_a_tombstone_and_keeps_counts_right,
    send_stores_and_answers_201_with_rate_headers,
    replay_answers_200_with_the_original_and_other_content_409,
    invalid_sends_answer_422_naming_the_field,
    malformed_bodies_answer_400_413_415,
    send_rate_limit_answers_429_with_retry_after,
    history_page_mode_reports_meta_and_links,
    history_cursor_modes_walk_both_ways,
    bad_history_parameters_answer_422,
    mark_read_is_idempotent_and_only_for_the_receiver,
    conversation_read_marks_up_to_an_id_or_all,
    conversations_list_counts_unread_and_pages,
    a_third_user_sees_and_changes_nothing_of_a_conversation,
    forged_expired_and_early_tokens_answer_401,
    audience_and_issuer_are_required_once_configured,
    failed_authentications_are_limited_per_address,
    unknown_routes_and_methods_answer_json,
    health_ready_and_metrics,
    openapi_document_is_served_and_complete,
    websocket_handshakes_are_checked_before_the_upgrade,
    repeated_json_keys_answer_422_naming_the_field,
    repeated_query_parameters_answer_422_naming_the_parameter,
    out_of_range_integers_name_their_bounds,
    parameter_bounds_in_the_document_are_the_server_bounds,
    body_schemas_in_the_document_are_the_server_rules,
    the_document_follows_the_configured_message_limit,
);

/// Two nodes on one Redis (`CHAT_REDIS_URL`): the send limit of a user holds across
/// them, and a node whose Redis is away goes on limiting alone.
#[tokio::test]
async fn the_send_limit_holds_across_nodes_on_redis() {
    let Some(url) = chat_core::testing::service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("chat-test-api-{}", std::process::id());
    let args = [
        "--send-burst",
        "4",
        "--send-rate-per-minute",
        "6",
        "--redis-url",
        &url,
        "--redis-prefix",
        &prefix,
    ];
    let (a, b) = (
        TestApp::with_args(&args).await,
        TestApp::with_args(&args).await,
    );
    let mut created = 0;
    for round in 0..5 {
        for app in [&a, &b] {
            if app.send_status(1, 2, &format!("round {round}")).await == StatusCode::CREATED {
                created += 1;
            }
        }
    }
    // Ten sends over two nodes, one burst of four between them.
    assert_eq!(created, 4);
    let metrics = a.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        metrics.contains("chat_rate_limiter_fallbacks_total{limit=\"send\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_leaves_the_node_limiting_alone() {
    // Nothing listens on port 1.
    let app = TestApp::with_args(&[
        "--send-burst",
        "2",
        "--send-rate-per-minute",
        "6",
        "--redis-url",
        "redis://127.0.0.1:1",
    ])
    .await;
    let statuses = [
        app.send_status(1, 2, "one").await,
        app.send_status(1, 2, "two").await,
        app.send_status(1, 2, "three").await,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let metrics = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        metrics.contains("chat_rate_limiter_fallbacks_total{limit=\"send\"} 3"),
        "{metrics}"
    );
    // Serving, and saying that events do not cross to other nodes.
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        (ready.status, ready.body),
        (
            StatusCode::OK,
            json!({"status": "degraded", "store": "up", "bus": "down"})
        )
    );
}
