//! The `chat-server` binary as a child process, for the reliability tests: started on
//! a free loopback port, waited for until `/health` answers, killed with SIGKILL when
//! a test asks (or when its handle is dropped, also on a panic), restarted on the same
//! database; plus the HTTP calls and database checks the tests share.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_core::{JwtIssuer, UserId};
use chat_store_postgres::sqlx;
use serde_json::{Value, json};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_chat-server");
/// The HS256 secret every server of these tests is started with.
pub const SECRET: &str = "a-reliability-secret-that-is-long-enough-for-hs256";
/// How long a started server may take to answer `/health`.
const STARTUP: Duration = Duration::from_secs(30);
/// Flags that lift the per-user send limit, so the limiter never answers 429 under load.
pub const NO_SEND_LIMIT: [&str; 4] = [
    "--send-rate-per-minute",
    "1000000000",
    "--send-burst",
    "1000000000",
];

/// A token for `user`, valid for an hour.
pub fn token(user: i64) -> String {
    JwtIssuer::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(UserId::new(user), Duration::from_secs(3600))
        .unwrap()
}

/// The Postgres server of the tests, or `None` (printed) when `CHAT_TEST_POSTGRES_URL`
/// is unset; with `CHAT_REQUIRE_SERVICES=1` a missing URL fails the test instead.
pub fn postgres_url() -> Option<String> {
    chat_core::testing::service_url("CHAT_TEST_POSTGRES_URL")
}

/// Where a server keeps its messages.
pub enum Database {
    /// A SQLite file in a temporary directory of its own.
    Sqlite { dir: tempfile::TempDir },
    /// A fresh schema in the test Postgres database, dropped when this is dropped.
    Postgres { url: String, schema: String },
}

impl Database {
    /// A new SQLite file (not created yet: the server creates it).
    pub fn sqlite() -> Self {
        Self::Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A schema of its own in the database at `url`, named after the test and this
    /// process so parallel runs never share one. Schemas that earlier runs of the same
    /// test left behind (a run killed before its cleanup) are dropped first, unless
    /// their process is still running.
    pub async fn postgres(url: &str, test: &str) -> Self {
        let prefix = format!("chat_rel_{test}_");
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&pool)
        .await
        .unwrap();
        for name in stale {
            // Only schemas of processes that are gone: a run of the same test in
            // another process keeps its own.
            let owner = name.strip_prefix(&prefix).unwrap_or_default();
            if !std::path::Path::new(&format!("/proc/{owner}")).exists() {
                drop_schema(&pool, &name).await;
            }
        }
        pool.close().await;
        Self::Postgres {
            url: url.to_owned(),
            schema: format!("{prefix}{}", std::process::id()),
        }
    }

    /// The server flags that select this database.
    fn args(&self) -> Vec<String> {
        match self {
            Self::Sqlite { dir } => vec![
                "--database-url".into(),
                format!("sqlite://{}", dir.path().join("chat.db").display()),
            ],
            Self::Postgres { url, schema } => vec![
                "--database-url".into(),
                url.clone(),
                "--database-schema".into(),
                schema.clone(),
            ],
        }
    }

    /// The directory for server logs.
    fn log_dir(&self) -> PathBuf {
        match self {
            Self::Sqlite { dir } => dir.path().to_owned(),
            Self::Postgres { .. } => std::env::temp_dir(),
        }
    }

    /// Points a Postgres database at another URL (the same server through a proxy);
    /// returns the URL it had.
    pub fn replace_url(&mut self, new: String) -> String {
        match self {
            Self::Postgres { url, .. } => std::mem::replace(url, new),
            Self::Sqlite { .. } => panic!("not a Postgres database"),
        }
    }

    /// The Postgres schema, if this is one.
    pub fn schema(&self) -> Option<&str> {
        match self {
            Self::Postgres { schema, .. } => Some(schema),
            Self::Sqlite { .. } => None,
        }
    }
}

async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    // Names are made above from plain identifier characters.
    let sql = sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    let _ = sqlx::raw_sql(sql).execute(pool).await;
}

impl Drop for Database {
    fn drop(&mut self) {
        let Self::Postgres { url, schema } = self else {
            return;
        };
        let (url, schema) = (url.clone(), schema.clone());
        // Drop runs inside the test's runtime, which must not be blocked on: a thread
        // of its own with its own runtime does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    drop_schema(&pool, &schema).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A running `chat-server` process. Dropping it kills the process (SIGKILL) and
/// waits for it, so no test leaves a server behind, also when it panics.
pub struct Server {
    child: Option<Child>,
    address: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
    starts: u32,
}

/// A free loopback port: bound, read, and released for the server to bind.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

impl Server {
    /// Starts the binary on `database` with `extra` flags and waits for `/health`.
    pub async fn start(database: &Database, extra: &[&str]) -> Self {
        // `serve` is the default command; the flags are the top-level ones.
        let mut args = vec![
            "--jwt-secret".to_owned(),
            SECRET.into(),
            "--log".into(),
            "warn".into(),
        ];
        args.extend(database.args());
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let log = database.log_dir().join(format!(
            "chat-server-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let mut server = Self {
            child: None,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            args,
            log,
            starts: 0,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is running already");
        self.starts += 1;
        // A few attempts: a port found free can be taken by another process before the
        // server binds it.
        for _ in 0..5 {
            self.address = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let child = Command::new(BIN)
                .args(&self.args)
                .arg("--addr")
                .arg(self.address.to_string())
                .env_remove("CHAT_DATABASE_URL")
                .env_remove("CHAT_DATABASE_SCHEMA")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            self.child = Some(child);
            if self.wait_healthy().await {
                return;
            }
            self.kill9();
        }
        panic!("chat-server did not start:\n{}", self.log_tail());
    }

    /// Waits until `/health` answers 200; `false` if the process exits or the time is up.
    async fn wait_healthy(&mut self) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("chat-server exited at start ({status})");
                self.child = None;
                return false;
            }
            if let Ok(answer) = client.get(format!("{}/health", self.base())).send().await
                && answer.status() == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the binary again with the same flags and database (on a new port).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `ws://127.0.0.1:port/api/chat/ws` with `query` (`?after_id=…` or empty).
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/api/chat/ws{query}", self.address)
    }

    /// The loopback address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is not running").id()
    }

    /// How many times the binary was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The resident memory of the process (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// The value of a metric without labels on `/metrics`, if present.
    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        let text = client
            .get(format!("{}/metrics", self.base()))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// The last lines the server logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("chat-server log (last lines):\n{}", self.log_tail());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An HTTP client for a test: keep-alive pool, and a timeout on every request so a
/// hanging server fails the test instead of stalling it.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// The answer to one send.
#[derive(Debug, Clone)]
pub struct SendAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The message id of a 200 or 201.
    pub id: Option<i64>,
    pub body: String,
}

/// `POST /api/chat/send` from `from` to `to` with `text` and the idempotency `key`.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    from: i64,
    to: i64,
    text: &str,
    key: &str,
) -> Result<SendAnswer, reqwest::Error> {
    let answer = client
        .post(format!("{base}/api/chat/send"))
        .bearer_auth(token(from))
        .json(&json!({"receiver_id": to, "message": text, "client_message_id": key}))
        .send()
        .await?;
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = answer.text().await?;
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["data"]["id"].as_i64());
    Ok(SendAnswer {
        status,
        retry_after,
        id,
        body,
    })
}

/// Every message of the conversation of `user` with `other`, oldest first, read
/// through the history endpoint's `after_id` cursor (100 a page).
pub async fn conversation(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    other: i64,
) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0_i64;
    // Bounded: a page holds at least one message, and no test stores a million.
    for _ in 0..10_000 {
        let url = format!("{base}/api/chat/messages/{other}?after_id={after}&limit=100");
        let mut answer = client
            .get(&url)
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap();
        // A store recovering from a fault may answer 503 for a moment.
        for _ in 0..50 {
            if answer.status() != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = client
                .get(&url)
                .bearer_auth(token(user))
                .send()
                .await
                .unwrap();
        }
        assert_eq!(answer.status(), 200, "history of {user} with {other}");
        let page: Value = answer.json().await.unwrap();
        let messages = page["data"].as_array().unwrap().clone();
        let Some(last) = messages.last() else {
            return all;
        };
        after = last["id"].as_i64().unwrap();
        let more = page["meta"]["has_more"].as_bool().unwrap_or(false);
        all.extend(messages);
        if !more {
            return all;
        }
    }
    panic!("history of {user} with {other} did not end");
}

/// Counts the stored messages of a conversation by `client_message_id`.
pub fn count_keys(messages: &[Value]) -> HashMap<String, (usize, i64)> {
    let mut counts: HashMap<String, (usize, i64)> = HashMap::new();
    for message in messages {
        if let Some(key) = message["client_message_id"].as_str() {
            let entry = counts.entry(key.to_owned()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 = message["id"].as_i64().unwrap();
        }
    }
    counts
}

/// The heavy tests of a file run one at a time, so each has both cores (under
/// `cargo nextest`, whose processes hold one test each, `.config/nextest.toml` does it).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A runtime of two worker threads, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
