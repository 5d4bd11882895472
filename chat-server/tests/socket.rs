//! The server over real sockets, and the `chat-server` binary itself; and the client
//! address the failed-login limit keys on, from the connection's peer address and, for
//! trusted proxies only, their forwarding headers.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chat_core::{Authenticator, JwtAuthenticator, UserId};
use common::{Answer, SECRET, TestApp, settings, token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

struct Running {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(extra: &[&str]) -> Running {
    let state = chat_server::build_state(&settings(extra)).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(chat_server::serve(
        listener,
        chat_server::app(state),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        address,
        stop: Some(stop),
        task,
    }
}

async fn sends_and_reads_over_a_real_socket() {
    let server = start(&[]).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let sent = client
        .post(format!("{base}/api/chat/send"))
        .bearer_auth(token(1))
        .json(&json!({"receiver_id": 2, "message": "over TCP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    assert!(sent.headers().contains_key("x-request-id"));
    assert_eq!(sent.headers()["x-ratelimit-remaining"], "29");
    let history: Value = client
        .get(format!("{base}/api/chat/messages/1"))
        .bearer_auth(token(2))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["data"][0]["message"], "over TCP");
    // A client-supplied request id is kept.
    let traced = client
        .get(format!("{base}/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "trace-me-42");
}

async fn failed_logins_are_limited_by_peer_address() {
    let server = start(&[
        "--auth-failure-burst",
        "2",
        "--auth-failures-per-minute",
        "1",
    ])
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/chat/conversations", server.address);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            client
                .get(&url)
                .bearer_auth("guess")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![401, 401, 429, 429]);
}

/// After an address has spent its failed-login burst, a valid token from it is still
/// served (REST and WebSocket): behind a NAT or a proxy many users share one address, and
/// one of them guessing must not lock the others out. Bad tokens stay refused with 429.
async fn a_valid_token_is_served_from_an_address_blocked_for_failed_logins() {
    let server = start(&[
        "--auth-failure-burst",
        "2",
        "--auth-failures-per-minute",
        "1",
    ])
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/chat/conversations", server.address);
    let status = |bearer: String| {
        let request = client.get(&url).bearer_auth(bearer);
        async move { request.send().await.unwrap() }
    };
    for expected in [401, 401, 429] {
        assert_eq!(status("guess".to_owned()).await.status(), expected);
    }
    let valid = status(token(1)).await;
    assert_eq!(valid.status(), 200, "a valid token was throttled");
    let still_bad = status("guess".to_owned()).await;
    assert_eq!(still_bad.status(), 429);
    let wait: u64 = still_bad.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    // A missing token is not a guess: 401, not 429.
    let none = client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    // The WebSocket handshake follows the same rule.
    let ws = format!("ws://{}/api/chat/ws", server.address);
    let (socket, _) = tokio_tungstenite::connect_async(format!("{ws}?token={}", token(1)))
        .await
        .expect("a valid token opens a WebSocket from a blocked address");
    drop(socket);
    match tokio_tungstenite::connect_async(format!("{ws}?token=guess")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        other => panic!("expected a 429 refusal, got {other:?}"),
    }
}

/// `GET /api/chat/conversations` with `bearer` over a connection whose peer is `peer`,
/// with extra `headers`: the connection address is set as the server sets it.
async fn from_peer(app: &TestApp, peer: &str, bearer: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get("/api/chat/conversations")
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 40_000)));
    app.send(request).await
}

/// Two failed logins per address, then 429 for about a minute.
const TIGHT_AUTH_LIMIT: [&str; 4] = [
    "--auth-failure-burst",
    "2",
    "--auth-failures-per-minute",
    "1",
];

/// A client that is not a trusted proxy cannot choose the address it is limited as:
/// forwarding headers neither spread its failures over made-up addresses nor charge
/// them to someone else's.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let app =
        TestApp::with_args(&[&TIGHT_AUTH_LIMIT[..], &["--trusted-proxies", "10.0.0.0/8"]].concat())
            .await;
    let attacker = "198.51.100.9";
    let disguises: [&[(&str, &str)]; 4] = [
        &[("x-forwarded-for", "203.0.113.1")],
        &[("x-forwarded-for", "203.0.113.2, 10.0.0.1")],
        &[("forwarded", "for=203.0.113.3")],
        &[
            ("x-real-ip", "203.0.113.4"),
            ("forwarded", "for=\"[2001:db8::4]\""),
        ],
    ];
    let mut statuses = Vec::new();
    for headers in disguises {
        statuses.push(from_peer(&app, attacker, "guess", headers).await.status);
    }
    assert_eq!(
        statuses,
        [401, 401, 429, 429].map(|s| StatusCode::from_u16(s).unwrap())
    );
    // None of the addresses it named was charged: each still has its own allowance,
    // directly and through a trusted proxy.
    assert_eq!(
        from_peer(&app, "203.0.113.1", "guess", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        from_peer(
            &app,
            "10.0.0.1",
            "guess",
            &[("x-forwarded-for", "203.0.113.3")]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
}

/// Behind a trusted proxy, each forwarded client has its own allowance; the address is
/// the rightmost hop that is not a trusted proxy, so what a client prepends changes
/// nothing; an unreadable header counts against the proxy's own address, never errs.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_limited_apart() {
    let app = TestApp::with_args(
        &[
            &TIGHT_AUTH_LIMIT[..],
            &["--trusted-proxies", "10.0.0.0/8,192.0.2.1"],
        ]
        .concat(),
    )
    .await;
    let proxy = "10.0.0.1";
    let first = [("x-forwarded-for", "203.0.113.1")];
    let status = |answer: Answer| answer.status.as_u16();
    for expected in [401, 401, 429] {
        assert_eq!(
            status(from_peer(&app, proxy, "guess", &first).await),
            expected
        );
    }
    // The other client behind the same proxy is not affected.
    let second = [("x-forwarded-for", "203.0.113.2")];
    assert_eq!(status(from_peer(&app, proxy, "guess", &second).await), 401);
    // And the blocked one is still served with a valid token.
    assert_eq!(status(from_peer(&app, proxy, &token(1), &first).await), 200);
    // Prepending another address (or the other client's) does not escape the block; nor
    // does a chain through a second trusted proxy, nor an RFC 7239 header.
    for headers in [
        [("x-forwarded-for", "203.0.113.9, 203.0.113.1")],
        [("x-forwarded-for", "203.0.113.2,203.0.113.1, 10.9.9.9")],
        [(
            "forwarded",
            "for=203.0.113.2, for=\"203.0.113.1:4711\";proto=https",
        )],
    ] {
        let answer = from_peer(&app, proxy, "guess", &headers).await;
        assert_eq!(status(answer), 429, "{headers:?}");
    }
    // The last proxy may be a single trusted address; an IPv6 client is its own key.
    let v6 = [("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")];
    assert_eq!(
        status(from_peer(&app, "192.0.2.1", "guess", &v6).await),
        401
    );
    // Unreadable headers from the proxy: its own address is the key, and no error.
    for headers in [
        [("x-forwarded-for", "not-an-address")],
        [("forwarded", "for=\"unterminated")],
        [("forwarded", "for=unknown")],
    ] {
        let answer = from_peer(&app, proxy, "guess", &headers).await;
        assert!(matches!(status(answer), 401 | 429), "{headers:?}");
    }
    // Those three spent the proxy's own allowance, not the second client's.
    assert_eq!(status(from_peer(&app, proxy, "guess", &second).await), 401);
    assert_eq!(status(from_peer(&app, proxy, "guess", &[]).await), 429);
}

/// A request whose body is still arriving when shutdown begins is answered, then the
/// server stops.
async fn graceful_shutdown_finishes_requests_in_flight() {
    let mut server = start(&[]).await;
    let body = json!({"receiver_id": 2, "message": "in flight"}).to_string();
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /api/chat/send HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        token(1),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(server.address).await.is_err(),
        "still accepting"
    );
}

fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(dir).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that should exit but serves instead must fail the test, not hang it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chat-server {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn token_command_mints_with_the_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["token", "--user", "7", "--ttl", "15m"],
        &[("CHAT_JWT_SECRET", SECRET)],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let auth = JwtAuthenticator::hs256(SECRET.as_bytes()).unwrap();
    let identity = auth.authenticate(token.trim()).await.unwrap();
    assert_eq!(identity.user_id, UserId::new(7));
    let left = identity.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    assert!(left <= time::Duration::minutes(15) && left > time::Duration::minutes(14));
    for bad in [
        vec!["token", "--user", "0"],
        vec!["token", "--user", "1", "--ttl", "soon"],
    ] {
        let out = run(&bad, &[("CHAT_JWT_SECRET", SECRET)], dir.path());
        assert!(!out.status.success(), "{bad:?}");
    }
}

#[tokio::test]
async fn development_key_lives_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(&["token", "--user", "1"], &[], dir.path());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let secret = std::fs::read(dir.path().join("chat.db.dev-jwt-secret")).unwrap();
    assert!(secret.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("chat.db.dev-jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the development secret is readable by others"
        );
    }
    let second = run(&["token", "--user", "2"], &[], dir.path());
    let auth = JwtAuthenticator::hs256(&secret).unwrap();
    for (out, user) in [(first, 1), (second, 2)] {
        let token = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            auth.authenticate(token.trim()).await.unwrap().user_id,
            UserId::new(user)
        );
    }
}

#[test]
fn bad_settings_refuse_to_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 9] = [
        (&[("CHAT_JWT_SECRET", "too-short")], "at least 32 bytes"),
        (&[("CHAT_DATABASE_URL", "mysql://x")], "CHAT_DATABASE_URL"),
        (&[("CHAT_SEND_BURST", "0")], "send-burst"),
        (&[("CHAT_ADDR", "not-an-address")], "addr"),
        (
            &[
                ("CHAT_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem"),
                ("CHAT_JWT_ALGORITHM", "RS256"),
            ],
            "nonexistent.pem",
        ),
        (
            &[("CHAT_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem")],
            "CHAT_JWT_ALGORITHM",
        ),
        (
            &[("CHAT_TRUSTED_PROXIES", "10.0.0.0/33")],
            "trusted-proxies",
        ),
        (
            &[("CHAT_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")],
            "proxy.internal",
        ),
        (&[("CHAT_TRUSTED_PROXIES", "::1/+8")], "trusted-proxies"),
    ];
    for (env, expected) in cases {
        let out = run(&[], env, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn the_binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .current_dir(dir.path())
        .env("CHAT_ADDR", &address)
        .env("CHAT_JWT_SECRET", SECRET)
        .env("CHAT_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(answer) = client.get(format!("http://{address}/ready")).send().await
            && answer.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = client
        .post(format!("http://{address}/api/chat/send"))
        .bearer_auth(token(1))
        .json(&json!({"receiver_id": 2, "message": "from the binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "exit {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    // JSON logs, one object per line, with the request id of each request.
    assert!(
        logs.lines()
            .all(|line| serde_json::from_str::<Value>(line).is_ok()),
        "{logs}"
    );
    assert!(logs.contains("request_id"), "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    // The message was committed to the default database file.
    assert!(dir.path().join("chat.db").exists());
}

crate::both_stores!("current_thread";
    sends_and_reads_over_a_real_socket,
    failed_logins_are_limited_by_peer_address,
    a_valid_token_is_served_from_an_address_blocked_for_failed_logins,
    graceful_shutdown_finishes_requests_in_flight,
);
