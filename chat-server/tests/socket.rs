//! The server over real sockets, and the `chat-server` binary itself.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chat_core::{Authenticator, JwtAuthenticator, UserId};
use common::{SECRET, settings, token};
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
    let cases: [(&[(&str, &str)], &str); 6] = [
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
    graceful_shutdown_finishes_requests_in_flight,
);
