//! Durability of the real binary under crashes and database faults.
//!
//! - SIGKILL in the middle of concurrent sends, on SQLite (a file) and on Postgres (a
//!   schema of its own): after a restart on the same database every acknowledged send
//!   is stored exactly once, and retrying every unacknowledged one with the same key
//!   stores it once at most.
//! - Postgres backends of the server terminated again and again under load: every
//!   answer is 201 or 503 with `Retry-After`, every 201 is stored and no 503 is, and
//!   sends succeed again without a restart.
//!
//! The Postgres tests read `CHAT_TEST_POSTGRES_URL` and skip (passing, with a printed
//! reason) without it, unless `CHAT_REQUIRE_SERVICES=1`.
#![allow(clippy::unwrap_used)]

mod process;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chat_store_postgres::sqlx;
use process::{
    Database, NO_SEND_LIMIT, Server, conversation, count_keys, http_client, runtime, send, serial,
};

/// Concurrent HTTP senders, each its own user writing to its own receiver.
const SENDERS: i64 = 16;
/// Keys each sender may use: the run is bounded even if the kill never came.
const KEYS_PER_SENDER: usize = 1_000;
/// Acknowledged sends before the SIGKILL.
const KILL_AFTER_ACKS: usize = 3_000;
/// Longest any one request may take before the test counts it as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The receiver of `sender`: one conversation per sender, so the stores see concurrent
/// inserts into different conversations.
fn receiver_of(sender: i64) -> i64 {
    1_000 + sender
}

fn text_of(key: &str) -> String {
    format!("durable message {key}")
}

/// What became of one attempted send.
#[derive(Debug, Clone)]
enum Outcome {
    /// 201 or 200, with the message id.
    Acknowledged(i64),
    /// The connection failed or timed out: the send may or may not be stored.
    Unacknowledged,
}

/// Every attempted key of one sender, in order.
type Attempts = Vec<(String, Outcome)>;

/// Sends with fresh keys until an answer is not a 2xx (the server is gone) or the
/// keys run out; every other status fails the test.
async fn keep_sending(
    client: reqwest::Client,
    base: String,
    sender: i64,
    acks: Arc<AtomicUsize>,
) -> Attempts {
    let mut attempts = Vec::new();
    for n in 0..KEYS_PER_SENDER {
        let key = format!("s{sender}-{n}");
        match send(
            &client,
            &base,
            sender,
            receiver_of(sender),
            &text_of(&key),
            &key,
        )
        .await
        {
            Ok(answer) if answer.status == 201 => {
                acks.fetch_add(1, Ordering::Relaxed);
                attempts.push((key, Outcome::Acknowledged(answer.id.unwrap())));
            }
            Ok(answer) => panic!(
                "send {key} answered {} before the kill: {}",
                answer.status, answer.body
            ),
            Err(_) => {
                attempts.push((key, Outcome::Unacknowledged));
                break;
            }
        }
    }
    attempts
}

/// Stored messages of each sender's conversation, counted by key: (count, last id).
async fn stored_keys(
    client: &reqwest::Client,
    server: &Server,
) -> HashMap<i64, HashMap<String, (usize, i64)>> {
    let mut stored = HashMap::new();
    for sender in 1..=SENDERS {
        let messages = conversation(client, &server.base(), receiver_of(sender), sender).await;
        stored.insert(sender, count_keys(&messages));
    }
    stored
}

/// Concurrent sends, SIGKILL after [`KILL_AFTER_ACKS`] acknowledgements, restart on
/// the same database, then the checks of the module documentation.
async fn kill9_loses_nothing(database: Database, label: &str) {
    let started = Instant::now();
    let mut server = Server::start(&database, &NO_SEND_LIMIT).await;
    let client = http_client(REQUEST_TIMEOUT);
    let acks = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (1..=SENDERS)
        .map(|sender| {
            tokio::spawn(keep_sending(
                client.clone(),
                server.base(),
                sender,
                Arc::clone(&acks),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acks.load(Ordering::Relaxed) < KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "only {} sends acknowledged in two minutes",
            acks.load(Ordering::Relaxed)
        );
        assert!(
            !senders.iter().all(tokio::task::JoinHandle::is_finished),
            "every sender finished before the kill"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    let killed_at = started.elapsed();
    let mut attempts: HashMap<i64, Attempts> = HashMap::new();
    for (sender, task) in (1..=SENDERS).zip(senders) {
        attempts.insert(sender, task.await.unwrap());
    }
    let acknowledged: usize = attempts
        .values()
        .flatten()
        .filter(|(_, o)| matches!(o, Outcome::Acknowledged(_)))
        .count();
    let unacknowledged: Vec<(i64, String)> = attempts
        .iter()
        .flat_map(|(sender, list)| {
            list.iter()
                .filter(|(_, o)| matches!(o, Outcome::Unacknowledged))
                .map(|(key, _)| (*sender, key.clone()))
        })
        .collect();
    let attempted: usize = attempts.values().map(Vec::len).sum();
    assert!(
        attempted < KEYS_PER_SENDER * SENDERS as usize,
        "the kill came after every send"
    );

    server.restart().await;
    let stored = stored_keys(&client, &server).await;
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let mut in_flight_stored = 0;
    for (sender, list) in &attempts {
        let keys = &stored[sender];
        let known: HashSet<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
        for (key, outcome) in list {
            match (outcome, keys.get(key)) {
                (Outcome::Acknowledged(_), None) => lost.push(key.clone()),
                (Outcome::Acknowledged(id), Some((count, stored_id))) => {
                    if *count != 1 {
                        duplicated.push(key.clone());
                    }
                    assert_eq!(id, stored_id, "{key} is stored under another id");
                }
                (Outcome::Unacknowledged, Some((count, _))) => {
                    in_flight_stored += 1;
                    if *count != 1 {
                        duplicated.push(key.clone());
                    }
                }
                (Outcome::Unacknowledged, None) => {}
            }
        }
        for key in keys.keys() {
            assert!(known.contains(key.as_str()), "{key} was stored, never sent");
        }
    }
    assert!(
        lost.is_empty(),
        "{label}: acknowledged sends lost: {lost:?}"
    );
    assert!(
        duplicated.is_empty(),
        "{label}: sends stored twice: {duplicated:?}"
    );

    // Every unacknowledged send retried with the same key and text: created now, or
    // answered as the replay of what the killed server had committed.
    let (mut created, mut replayed) = (0, 0);
    for (sender, key) in &unacknowledged {
        let answer = send(
            &client,
            &server.base(),
            *sender,
            receiver_of(*sender),
            &text_of(key),
            key,
        )
        .await
        .unwrap();
        match answer.status {
            201 => created += 1,
            200 => replayed += 1,
            other => panic!("{label}: retry of {key} answered {other}: {}", answer.body),
        }
    }
    assert_eq!(
        replayed, in_flight_stored,
        "{label}: replays do not match the in-flight sends the store had"
    );
    let stored = stored_keys(&client, &server).await;
    let total: usize = stored.values().flat_map(HashMap::values).map(|c| c.0).sum();
    let distinct: usize = stored.values().map(HashMap::len).sum();
    assert_eq!(
        total, distinct,
        "{label}: a key is stored twice after retries"
    );
    assert_eq!(
        distinct, attempted,
        "{label}: every attempted key is stored once after the retries"
    );
    println!(
        "{label}: {attempted} sends from {SENDERS} senders, SIGKILL at {killed_at:.1?} after \
         {acknowledged} acknowledged; {} unacknowledged ({in_flight_stored} committed before \
         the kill); after restart: lost 0, duplicates 0; retries {created} created, \
         {replayed} replayed; {total} stored = {distinct} distinct keys; {:.1?} in all",
        unacknowledged.len(),
        started.elapsed()
    );
}

#[test]
fn sigkill_mid_run_loses_no_acknowledged_send_on_sqlite() {
    let _serial = serial();
    runtime().block_on(kill9_loses_nothing(Database::sqlite(), "sqlite"));
}

#[test]
fn sigkill_mid_run_loses_no_acknowledged_send_on_postgres() {
    let Some(url) = process::postgres_url() else {
        return;
    };
    let _serial = serial();
    runtime().block_on(async {
        let database = Database::postgres(&url, "kill9").await;
        kill9_loses_nothing(database, "postgres").await;
    });
}

/// Rounds of `pg_terminate_backend` on the server's connections.
const TERMINATION_ROUNDS: usize = 25;
/// Pause between rounds: long enough for the pool to reconnect and serve some sends.
const TERMINATION_PAUSE: Duration = Duration::from_millis(200);
/// Senders during the faults.
const FAULT_SENDERS: i64 = 8;

/// Everything one sender saw while the backends were being terminated.
#[derive(Default)]
struct FaultLog {
    /// Key and id of every 201.
    created: Vec<(String, i64)>,
    /// Keys answered 503 (with `Retry-After`).
    unavailable: Vec<String>,
    /// Anything else: a hang, a reset, another status, a 503 without `Retry-After`.
    wrong: Vec<String>,
}

/// What the store holds of the answers of a run under faults.
struct Audit {
    /// Sends answered 201.
    created: usize,
    /// Sends answered 503.
    unavailable: usize,
    /// Keys answered 201 that are not stored.
    lost: Vec<String>,
    /// Keys stored more than once.
    duplicated: Vec<String>,
    /// Keys answered 503 that are stored all the same.
    unavailable_stored: Vec<String>,
}

impl Audit {
    fn assert_exact(&self) {
        let Self {
            lost,
            duplicated,
            unavailable_stored,
            ..
        } = self;
        assert!(lost.is_empty(), "acknowledged sends lost: {lost:?}");
        assert!(duplicated.is_empty(), "sends stored twice: {duplicated:?}");
        assert!(
            unavailable_stored.is_empty(),
            "sends answered 503 were stored anyway: {unavailable_stored:?}"
        );
    }
}

/// Checks that every answer was 201 or 503 with `Retry-After`, then reads every
/// sender's conversation back and compares it with the answers.
async fn audit(client: &reqwest::Client, server: &Server, logs: &[FaultLog]) -> Audit {
    let wrong: Vec<&String> = logs.iter().flat_map(|l| &l.wrong).collect();
    assert!(
        wrong.is_empty(),
        "answers other than 201 or 503 with Retry-After: {wrong:?}"
    );
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let mut unavailable_stored = Vec::new();
    for (sender, log) in (1..=FAULT_SENDERS).zip(logs) {
        let messages = conversation(client, &server.base(), receiver_of(sender), sender).await;
        let keys = count_keys(&messages);
        for (key, id) in &log.created {
            match keys.get(key) {
                None => lost.push(key.clone()),
                Some((1, stored)) => assert_eq!(stored, id, "{key} under another id"),
                Some(_) => duplicated.push(key.clone()),
            }
        }
        unavailable_stored.extend(
            log.unavailable
                .iter()
                .filter(|k| keys.contains_key(*k))
                .cloned(),
        );
    }
    let created: usize = logs.iter().map(|l| l.created.len()).sum();
    let unavailable: usize = logs.iter().map(|l| l.unavailable.len()).sum();
    Audit {
        created,
        unavailable,
        lost,
        duplicated,
        unavailable_stored,
    }
}

async fn send_through_faults(
    client: reqwest::Client,
    base: String,
    sender: i64,
    stop: Arc<AtomicBool>,
) -> FaultLog {
    let mut log = FaultLog::default();
    // Bounded by keys as well as by the stop flag.
    for n in 0..20_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("f{sender}-{n}");
        match send(
            &client,
            &base,
            sender,
            receiver_of(sender),
            &text_of(&key),
            &key,
        )
        .await
        {
            Ok(answer) if answer.status == 201 => log.created.push((key, answer.id.unwrap())),
            Ok(answer) if answer.status == 503 && answer.retry_after.is_some() => {
                log.unavailable.push(key);
            }
            Ok(answer) => log
                .wrong
                .push(format!("{key}: {} {}", answer.status, answer.body)),
            Err(error) => log.wrong.push(format!("{key}: {error}")),
        }
    }
    log
}

#[test]
fn terminated_postgres_backends_answer_201_or_503_and_store_exactly_the_201s() {
    let Some(url) = process::postgres_url() else {
        return;
    };
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        let database = Database::postgres(&url, "faults").await;
        let server = Server::start(&database, &NO_SEND_LIMIT).await;
        let client = http_client(REQUEST_TIMEOUT);
        let application = format!("chat/{}", database.schema().unwrap());
        let admin = sqlx::PgPool::connect(&url).await.unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (1..=FAULT_SENDERS)
            .map(|sender| {
                tokio::spawn(send_through_faults(
                    client.clone(),
                    server.base(),
                    sender,
                    Arc::clone(&stop),
                ))
            })
            .collect();
        let mut terminated = 0_i64;
        for _ in 0..TERMINATION_ROUNDS {
            tokio::time::sleep(TERMINATION_PAUSE).await;
            let killed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1) AS t",
            )
            .bind(&application)
            .fetch_one(&admin)
            .await
            .unwrap();
            terminated += killed;
        }
        stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for task in senders {
            logs.push(task.await.unwrap());
        }
        admin.close().await;
        let fault_phase = started.elapsed();

        assert!(terminated > 0, "no backend of {application} was terminated");
        let audit = audit(&client, &server, &logs).await;
        audit.assert_exact();
        let Audit {
            created,
            unavailable,
            ..
        } = audit;
        assert!(created > 0, "nothing was sent during the faults");

        // Sends succeed again, without a restart: the first within a few seconds, then
        // every one.
        let recovery = Instant::now();
        let mut first = None;
        for n in 0..200 {
            let key = format!("after-{n}");
            let answer = send(
                &client,
                &server.base(),
                1,
                receiver_of(1),
                &text_of(&key),
                &key,
            )
            .await
            .unwrap();
            if answer.status == 201 {
                first = Some(recovery.elapsed());
                break;
            }
            assert!(
                recovery.elapsed() < Duration::from_secs(10),
                "no send succeeded within 10 s of the last fault"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first = first.expect("no send succeeded after the faults");
        for n in 0..50 {
            let key = format!("steady-{n}");
            let answer = send(
                &client,
                &server.base(),
                2,
                receiver_of(2),
                &text_of(&key),
                &key,
            )
            .await
            .unwrap();
            assert_eq!(answer.status, 201, "after recovery: {}", answer.body);
        }

        println!(
            "postgres faults: {TERMINATION_ROUNDS} rounds of pg_terminate_backend every \
             {TERMINATION_PAUSE:?} ended {terminated} backends while {FAULT_SENDERS} senders \
             sent {} ({created} answered 201, all stored; {unavailable} answered 503 with \
             Retry-After, none stored; nothing else) in {fault_phase:.1?}; first 201 after \
             the faults in {first:.1?}, then 50 of 50; {:.1?} in all",
            created + unavailable,
            started.elapsed()
        );
        drop(server);
        drop(database);
    });
}

/// A TCP proxy on loopback between the server and Postgres that can cut every
/// connection through it at once, in either direction, at any byte: unlike
/// `pg_terminate_backend`, a cut can fall after a `COMMIT` reached Postgres and before
/// its answer reached the server.
struct CuttingProxy {
    address: std::net::SocketAddr,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut list = connections.lock().unwrap();
                    list.retain(|t| !t.is_finished());
                    list.push(task);
                }
            })
        };
        Self {
            address,
            connections,
            accept,
        }
    }

    /// Drops every connection through the proxy; returns how many.
    fn cut(&self) -> usize {
        let list = std::mem::take(&mut *self.connections.lock().unwrap());
        let live = list.iter().filter(|t| !t.is_finished()).count();
        for task in list {
            task.abort();
        }
        live
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The Postgres URL with its host and port replaced by `proxy`.
fn through(url: &str, proxy: std::net::SocketAddr) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (format!("{credentials}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .unwrap()
        .next()
        .unwrap();
    (format!("{scheme}://{credentials}{proxy}/{path}"), upstream)
}

/// Rounds of cutting every connection between the server and Postgres.
const CUT_ROUNDS: usize = 15;
/// Pause between cuts.
const CUT_PAUSE: Duration = Duration::from_millis(400);

#[test]
fn connections_to_postgres_cut_mid_commit_answer_201_or_503_and_store_exactly_the_201s() {
    let Some(url) = process::postgres_url() else {
        return;
    };
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        let mut database = Database::postgres(&url, "cuts").await;
        // The proxy must exist before the URL that names it.
        let (_, upstream) = through(&url, "127.0.0.1:1".parse().unwrap());
        let proxy = CuttingProxy::start(upstream).await;
        let (proxied, _) = through(&url, proxy.address);
        // The server connects through the proxy; the cleanup goes direct.
        let direct = database.replace_url(proxied);
        let server = Server::start(&database, &NO_SEND_LIMIT).await;
        database.replace_url(direct);
        run_cuts(&server, &proxy, started).await;
        drop(server);
        drop(database);
    });
}

async fn run_cuts(server: &Server, proxy: &CuttingProxy, started: Instant) {
    let client = http_client(REQUEST_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (1..=FAULT_SENDERS)
        .map(|sender| {
            tokio::spawn(send_through_faults(
                client.clone(),
                server.base(),
                sender,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let mut cut = 0;
    for _ in 0..CUT_ROUNDS {
        tokio::time::sleep(CUT_PAUSE).await;
        cut += proxy.cut();
    }
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for task in senders {
        logs.push(task.await.unwrap());
    }
    let fault_phase = started.elapsed();
    let audit = audit(&client, server, &logs).await;
    let Audit {
        created,
        unavailable,
        ref lost,
        ref unavailable_stored,
        ..
    } = audit;
    println!(
        "postgres cuts: {CUT_ROUNDS} cuts every {CUT_PAUSE:?} dropped {cut} connections while \
         {FAULT_SENDERS} senders sent {} ({created} answered 201, {} lost; {unavailable} \
         answered 503 with Retry-After, {} of them stored) in {fault_phase:.1?}",
        created + unavailable,
        lost.len(),
        unavailable_stored.len(),
    );
    audit.assert_exact();
    assert!(created > 0 && cut > 0, "nothing was sent, or nothing cut");
    for n in 0..50 {
        let key = format!("steady-{n}");
        let answer = send(
            &client,
            &server.base(),
            2,
            receiver_of(2),
            &text_of(&key),
            &key,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 201, "after the cuts: {}", answer.body);
    }
}
