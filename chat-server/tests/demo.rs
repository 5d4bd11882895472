//! The demo page and `POST /dev/token` over real sockets: on in development mode, off
//! with a configured key unless `CHAT_DEMO=on` (and then without tokens), tokens only
//! for loopback peers that are not forwarded and not another site's page, and clear
//! errors for bad input. The page itself is tested in a browser (`tests/browser`).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chat_server::config::Cli;
use clap::Parser;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A server assembled from `args` as the binary does, on SQLite in memory, serving its
/// demo as `main` does.
async fn serve(args: &[&str]) -> (SocketAddr, chat_server::Demo) {
    let mut all = vec!["chat-server", "--database-url", "sqlite::memory:"];
    all.extend_from_slice(args);
    let settings = Cli::try_parse_from(all).unwrap().settings;
    let server = chat_server::assemble(&settings).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = chat_server::app_with_demo(server.state, &server.demo);
    tokio::spawn(chat_server::serve(listener, app, std::future::pending()));
    (address, server.demo)
}

async fn mint(address: SocketAddr, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://{address}/dev/token"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn get(address: SocketAddr, path: &str) -> reqwest::Response {
    reqwest::get(format!("http://{address}{path}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn development_mode_serves_the_page_and_mints_tokens_the_api_accepts() {
    let (address, demo) = serve(&[]).await;
    assert!(demo.serves_page() && demo.mints_tokens());

    let page = get(address, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-dev-tokens="on""#));
    for (path, kind) in [
        ("/demo/demo.js", "text/javascript; charset=utf-8"),
        ("/demo/demo.css", "text/css; charset=utf-8"),
    ] {
        assert!(html.contains(path), "the page loads {path}");
        let asset = get(address, path).await;
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert_eq!(asset.headers()[CONTENT_TYPE], kind);
        assert!(!asset.text().await.unwrap().is_empty());
    }

    // The token is for the user asked, and the API takes it.
    let minted = mint(address, r#"{"user_id": 4}"#, &[]).await;
    assert_eq!(minted.status(), StatusCode::OK);
    assert_eq!(minted.headers()[CACHE_CONTROL], "no-store");
    let body: Value = minted.json().await.unwrap();
    assert_eq!(body["user_id"], 4);
    assert_eq!(body["expires_in"], chat_server::DEV_TOKEN_TTL.as_secs());
    let token = body["token"].as_str().unwrap();
    let client = reqwest::Client::new();
    let sent = client
        .post(format!("http://{address}/api/chat/send"))
        .bearer_auth(token)
        .json(&json!({"receiver_id": 5, "message": "from the demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["data"]["sender_id"], 4);

    // A page of this server may ask; a page of another site, or a request through a
    // proxy, finds nothing there.
    let host = address.to_string();
    let own = format!("http://{host}");
    assert_eq!(
        mint(address, r#"{"user_id": 4}"#, &[("origin", &own)])
            .await
            .status(),
        StatusCode::OK
    );
    for refused in [
        // Another site whose name points at this machine (DNS rebinding).
        ("host", "evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("via", "1.1 tunnel"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("x-forwarded-for", "192.0.2.7"),
        ("forwarded", "for=192.0.2.7"),
        ("x-real-ip", "192.0.2.7"),
    ] {
        let answer = mint(address, r#"{"user_id": 4}"#, &[refused]).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{refused:?}");
        let body: Value = answer.json().await.unwrap();
        assert!(body["token"].is_null());
    }
}

#[tokio::test]
async fn dev_token_input_is_checked() {
    let (address, _) = serve(&[]).await;
    for (body, field) in [
        (r#"{"user_id": 0}"#, "user_id"),
        (r#"{"user_id": -3}"#, "user_id"),
        (r#"{"user_id": "1"}"#, "user_id"),
        (r#"{"user_id": 1.5}"#, "user_id"),
        (r#"{"user_id": 99999999999999999999}"#, "user_id"),
        (r#"{}"#, "user_id"),
        (r#"{"user_id": 1, "admin": true}"#, "admin"),
        (r#"[1]"#, "body"),
    ] {
        let answer = mint(address, body, &[]).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let body: Value = answer.json().await.unwrap();
        assert!(body["errors"][field].is_array(), "{body}");
    }
    assert_eq!(
        mint(address, r#"{"user_id": "#, &[]).await.status(),
        StatusCode::BAD_REQUEST
    );
    let plain = reqwest::Client::new()
        .post(format!("http://{address}/dev/token"))
        .body(r#"{"user_id": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!(r#"{{"user_id": 1, "pad": "{}"}}"#, "x".repeat(4096));
    assert_eq!(
        mint(address, &big, &[]).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        get(address, "/dev/token").await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn a_configured_key_turns_both_off_and_chat_demo_chooses_the_page() {
    let secret = "a-test-secret-that-is-long-enough-for-hs256";
    let (address, demo) = serve(&["--jwt-secret", secret]).await;
    assert!(!demo.serves_page() && !demo.mints_tokens());
    assert_eq!(get(address, "/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get(address, "/demo/demo.js").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        mint(address, r#"{"user_id": 1}"#, &[]).await.status(),
        StatusCode::NOT_FOUND
    );

    // The page on request, signing in with pasted tokens only.
    let (address, demo) = serve(&["--jwt-secret", secret, "--demo", "on"]).await;
    assert!(demo.serves_page() && !demo.mints_tokens());
    let page = get(address, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"data-dev-tokens="off""#)
    );
    assert_eq!(
        mint(address, r#"{"user_id": 1}"#, &[]).await.status(),
        StatusCode::NOT_FOUND
    );

    // Behind declared proxies no request is known to come from this machine.
    let (address, demo) = serve(&["--trusted-proxies", "10.0.0.0/8"]).await;
    assert!(demo.mints_tokens());
    assert_eq!(
        mint(address, r#"{"user_id": 1}"#, &[]).await.status(),
        StatusCode::NOT_FOUND
    );

    // Development mode without the page still mints tokens for this machine's tools.
    let (address, demo) = serve(&["--demo", "off"]).await;
    assert!(!demo.serves_page() && demo.mints_tokens());
    assert_eq!(get(address, "/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        mint(address, r#"{"user_id": 1}"#, &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_server_that_does_not_record_peers_mints_nothing() {
    let settings = Cli::try_parse_from(["chat-server", "--database-url", "sqlite::memory:"])
        .unwrap()
        .settings;
    let server = chat_server::assemble(&settings).await.unwrap();
    let app = chat_server::app_with_demo(server.state, &server.demo);
    let request = Request::post("/dev/token")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"user_id": 1}"#))
        .unwrap();
    let answer = app.clone().oneshot(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    // Whatever the method or body: the route is not there for them.
    let request = Request::get("/dev/token").body(Body::empty()).unwrap();
    assert_eq!(
        app.oneshot(request).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}
