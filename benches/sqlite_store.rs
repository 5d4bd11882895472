//! SQLite store benchmarks: durable inserts one at a time and from 64 concurrent
//! writers (group commit), and the latest-50 history page of a 20,000-message
//! conversation inside a 1,000,000-row table.
//!
//! Run with: `cargo bench --bench sqlite_store`
//!
//! The 1,000,000-row database is built once through the public insert path and kept in
//! `target/bench-data/` for later runs (delete it to rebuild).
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::testing::record;
use chat::{MessageId, MessageRepository, UserId};
use chat_store_sqlite::SqliteStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const WRITERS: u64 = 64;
const TABLE_ROWS: i64 = 1_000_000;
const CONVERSATION: i64 = 20_000;
/// Tasks used to fill the large table through the group-commit path.
const SEED_TASKS: i64 = 256;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh database file on the same disk as the build (not a RAM disk), so commits
/// really flush.
async fn fresh_store(name: &str) -> SqliteStore {
    let path = bench_dir().join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    SqliteStore::open(&path).await.unwrap()
}

fn inserts(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("sqlite_insert");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    let store = rt.block_on(fresh_store("insert-single.db"));
    group.bench_function("one_at_a_time", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .insert(record(1, 2, "a durable message"))
                .await
                .unwrap()
        });
    });

    let store = Arc::new(rt.block_on(fresh_store("insert-concurrent.db")));
    group.bench_function("64_concurrent_writers", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = Arc::clone(&store);
            async move {
                let per_writer = iters.div_ceil(WRITERS);
                let start = Instant::now();
                let tasks: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move {
                            for _ in 0..per_writer {
                                let sender = 10 + w as i64;
                                store
                                    .insert(record(sender, 1, "a durable message"))
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                // Time per insert, scaled to the `iters` criterion asked for.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_writer * WRITERS) as f64)
            }
        });
    });
    group.finish();
}

/// Opens the 1,000,000-row database, building it on first use.
async fn large_store() -> SqliteStore {
    let path = bench_dir().join("history-1m.db");
    if path.exists() {
        let store = SqliteStore::open(&path).await.unwrap();
        let complete = store
            .get(MessageId::new(TABLE_ROWS))
            .await
            .unwrap()
            .is_some()
            && store
                .history_page(UserId::new(1), UserId::new(2), 0, 1)
                .await
                .unwrap()
                .total
                == CONVERSATION as u64;
        if complete {
            return store;
        }
    }
    let store = Arc::new(fresh_store("history-1m.db").await);
    eprintln!("building {TABLE_ROWS} rows in {} (once)…", path.display());
    let started = Instant::now();
    let every = TABLE_ROWS / CONVERSATION;
    let tasks: Vec<_> = (0..SEED_TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut n = task;
                while n < TABLE_ROWS {
                    // Every 50th row belongs to the conversation 1 <-> 2; the rest spread
                    // over 10,000 other users.
                    let (from, to) = if n % every == 0 {
                        if n % (2 * every) == 0 { (1, 2) } else { (2, 1) }
                    } else {
                        (3 + n % 5_000, 5_003 + (n / 7) % 5_000)
                    };
                    store
                        .insert(record(from, to, "seed message body"))
                        .await
                        .unwrap();
                    n += SEED_TASKS;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    eprintln!("built in {:.1?}", started.elapsed());
    Arc::into_inner(store).unwrap()
}

fn history(c: &mut Criterion) {
    let rt = runtime();
    let store = rt.block_on(large_store());
    let (a, b) = (UserId::new(1), UserId::new(2));
    let mut group = c.benchmark_group("sqlite_history_20k_of_1m");
    group.bench_function("latest_50_cursor", |bench| {
        bench.to_async(&rt).iter(|| async {
            let page = store.history_before(a, b, None, 50).await.unwrap();
            assert_eq!(page.len(), 50);
        });
    });
    group.bench_function("latest_50_page_with_total", |bench| {
        bench.to_async(&rt).iter(|| async {
            let page = store.history_page(a, b, 0, 50).await.unwrap();
            assert_eq!(page.total, CONVERSATION as u64);
        });
    });
    group.bench_function("page_200_of_400", |bench| {
        bench.to_async(&rt).iter(|| async {
            let page = store.history_page(a, b, 199 * 50, 50).await.unwrap();
            assert_eq!(page.messages.len(), 50);
        });
    });
    group.finish();
}

criterion_group!(benches, inserts, history);
criterion_main!(benches);
