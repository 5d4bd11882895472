//! What the conformance suite cannot see: durability across reopening, migrations,
//! and group commit under many concurrent writers.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use chat_core::testing::record;
use chat_core::{Error, MessageId, MessageRepository, MessageStatus, UserId};
use chat_store_sqlite::{SqliteStore, rusqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_messages_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let (first, read) = {
        let store = SqliteStore::open(&path).await.unwrap();
        let first = store
            .insert(record(1, 2, "before restart"))
            .await
            .unwrap()
            .message;
        let read = store
            .set_status(
                UserId::new(2),
                &[first.id],
                MessageStatus::Read,
                chat_core::timestamp::now(),
                &[],
            )
            .await
            .unwrap();
        (first, read)
    };
    let store = SqliteStore::open(&path).await.unwrap();
    let stored = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(stored, read[0]);
    // Ids keep ascending after a restart.
    let next = store
        .insert(record(2, 1, "after restart"))
        .await
        .unwrap()
        .message;
    assert!(next.id > first.id);
    assert_eq!(
        store
            .history_page(UserId::new(1), UserId::new(2), 0, 10)
            .await
            .unwrap()
            .total,
        2
    );
}

#[tokio::test]
async fn opening_migrates_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        SqliteStore::LATEST_SCHEMA_VERSION
    );
    drop(store);
    // Opening again applies nothing and keeps the version.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        SqliteStore::LATEST_SCHEMA_VERSION
    );
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SqliteStore::LATEST_SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    match SqliteStore::open(&path).await {
        Err(Error::Internal { source }) => {
            assert!(
                source.to_string().contains("newer") || source.to_string().contains("knows up to"),
                "{source}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unopenable_path_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/chat.db");
    assert!(matches!(
        SqliteStore::open(&missing).await,
        Err(Error::Unavailable { .. })
    ));
    // A file that is not a database.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0xAB; 8192]).unwrap();
    assert!(SqliteStore::open(&garbage).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("chat.db")).await.unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..50 {
                    let inserted = store
                        .insert(record(100 + writer, 1, &format!("{writer}/{i}")))
                        .await
                        .unwrap();
                    ids.push(inserted.message.id);
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        let ids = task.await.unwrap();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one writer's ids must ascend"
        );
        all.extend(ids);
    }
    assert_eq!(all.len(), 64 * 50);
    assert_eq!(store.unread_total(UserId::new(1)).await.unwrap(), 64 * 50);
    let pending = store
        .undelivered(UserId::new(1), MessageId::new(0), 5000)
        .await
        .unwrap();
    assert_eq!(pending.len(), 64 * 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_database() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let clone = store.clone();
    let id = store
        .insert(record(1, 2, "shared"))
        .await
        .unwrap()
        .message
        .id;
    assert_eq!(clone.get(id).await.unwrap().unwrap().message, "shared");
    // Two separate in-memory stores are independent.
    let other = SqliteStore::open_in_memory().await.unwrap();
    assert_eq!(other.get(id).await.unwrap(), None);
}

/// A database written by the first schema keeps its messages, its catch-up, its
/// unread counts and its undelivered backlogs when a later release opens it.
#[tokio::test]
async fn a_first_schema_database_is_upgraded_with_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/0001_messages.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO messages (sender_id, receiver_id, message, created_at, updated_at)
                 VALUES (1, 2, 'before the upgrade', 1, 1), (3, 1, 'another peer', 2, 2);
             INSERT INTO messages (sender_id, receiver_id, message, status, created_at, updated_at)
                 VALUES (2, 1, 'already read', 'read', 3, 3);
             INSERT INTO conversations VALUES (1, 2, 3, 2), (2, 1, 3, 2), (3, 1, 2, 1), (1, 3, 2, 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        SqliteStore::LATEST_SCHEMA_VERSION
    );
    let caught_up = store
        .feed_after(UserId::new(1), MessageId::new(0), 10)
        .await
        .unwrap();
    let texts: Vec<&str> = caught_up
        .iter()
        .map(|entry| entry.message().message.as_str())
        .collect();
    assert_eq!(
        texts,
        ["before the upgrade", "another peer", "already read"]
    );
    // Unread counts and backlogs carried over: what each one has not read or received.
    assert_eq!(store.unread_total(UserId::new(1)).await.unwrap(), 1);
    assert_eq!(store.unread_total(UserId::new(2)).await.unwrap(), 1);
    let backlog = |user| {
        let store = store.clone();
        async move {
            let pending = store
                .undelivered(UserId::new(user), MessageId::new(0), 10)
                .await
                .unwrap();
            pending.iter().map(|m| m.id.get()).collect::<Vec<_>>()
        }
    };
    assert_eq!(backlog(1).await, [2]);
    assert_eq!(backlog(2).await, [1]);
    let next = store.insert(record(2, 1, "after")).await.unwrap().message;
    assert_eq!(next.id, MessageId::new(4));
    let read = store
        .mark_conversation_read(
            UserId::new(1),
            UserId::new(2),
            None,
            chat_core::timestamp::now(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(read, [next.id]);
    assert_eq!(store.unread_total(UserId::new(1)).await.unwrap(), 1);
    let list = store.conversations(UserId::new(1), None, 10).await.unwrap();
    let unread: Vec<(i64, u64)> = list
        .iter()
        .map(|c| (c.counterpart.get(), c.unread_count))
        .collect();
    assert_eq!(unread, [(2, 0), (3, 1)]);
    // The outbox came with the upgrade: a new message writes its jobs.
    let with_job = store
        .insert(chat_core::testing::with_jobs(
            record(1, 2, "with a job"),
            &["webhook"],
        ))
        .await
        .unwrap()
        .message;
    let jobs = chat_core::JobStore::list(&store, chat_core::JobState::Pending, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].subject, Some(with_job.id));
    // Messages from before the upgrade can be edited and deleted, and a device that
    // had everything hears of it.
    let at = chat_core::timestamp::now();
    let edit = chat_core::Amendment::Edit("edited after the upgrade".to_owned());
    let edited = store
        .amend(UserId::new(1), MessageId::new(1), edit, at)
        .await
        .unwrap()
        .unwrap();
    assert!(edited.revision > with_job.id);
    let deleted = store
        .amend(
            UserId::new(3),
            MessageId::new(2),
            chat_core::Amendment::Delete,
            at,
        )
        .await
        .unwrap()
        .unwrap();
    let changes = store
        .feed_after(UserId::new(1), with_job.id, 10)
        .await
        .unwrap();
    let positions: Vec<_> = changes.iter().map(chat_core::FeedEntry::position).collect();
    assert_eq!(positions, [edited.revision, deleted.revision]);
    assert_eq!(changes[1].message().message, "");
    let after = store.insert(record(2, 1, "after the edits")).await.unwrap();
    assert!(after.message.id > deleted.revision);
    // Blocks and last-seen times came with the upgrade.
    store
        .block(UserId::new(1), UserId::new(3), at)
        .await
        .unwrap();
    let refused = store.insert(record(3, 1, "blocked")).await;
    assert!(
        matches!(refused, Err(Error::Forbidden { .. })),
        "{refused:?}"
    );
    store.set_last_seen(UserId::new(3), at).await.unwrap();
    assert_eq!(
        store.last_seen(&[UserId::new(3)]).await.unwrap(),
        [(UserId::new(3), at)]
    );
}

/// After the conformance walk of sends, receipts and reads up to an id, every
/// conversation row's counts equal what they count and its floors hold: no unread
/// message below `read_floor`, no undelivered one below `delivery_floor`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_counts_and_floors_match_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        chat_core::testing::repository::counts_and_backlogs_follow_every_way_of_reading(&store)
            .await;
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let drift: Vec<(i64, i64, String)> = conn
        .prepare(
            "SELECT c.user_id, c.peer_id, 'unread_count' FROM conversations c
               WHERE c.unread_count <> (SELECT count(*) FROM messages m
                 WHERE m.receiver_id = c.user_id AND m.sender_id = c.peer_id
                   AND m.status <> 'read')
             UNION ALL
             SELECT c.user_id, c.peer_id, 'undelivered_count' FROM conversations c
               WHERE c.undelivered_count <> (SELECT count(*) FROM messages m
                 WHERE m.receiver_id = c.user_id AND m.sender_id = c.peer_id
                   AND m.status = 'sent')
             UNION ALL
             SELECT c.user_id, c.peer_id, 'read_floor' FROM conversations c
               WHERE EXISTS (SELECT 1 FROM messages m
                 WHERE m.receiver_id = c.user_id AND m.sender_id = c.peer_id
                   AND m.status <> 'read' AND m.id < c.read_floor)
             UNION ALL
             SELECT c.user_id, c.peer_id, 'delivery_floor' FROM conversations c
               WHERE EXISTS (SELECT 1 FROM messages m
                 WHERE m.receiver_id = c.user_id AND m.sender_id = c.peer_id
                   AND m.status = 'sent' AND m.id < c.delivery_floor)",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(drift.is_empty(), "rows out of step: {drift:?}");
    // The floors moved: reading up to an id does not rescan from the first message.
    let advanced: i64 = conn
        .query_row(
            "SELECT count(*) FROM conversations WHERE read_floor > 0 AND delivery_floor > 0",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(advanced > 0);
}

/// A message and its jobs commit together or not at all: a job the database refuses
/// (a trigger here stands for any failure) takes its message with it, and the other
/// writes of the same batch stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_and_its_jobs_commit_or_roll_back_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let store = SqliteStore::open(&path).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs WHEN NEW.kind = 'refused' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
    chat_core::testing::message_jobs::a_refused_job_rolls_its_change_back(&store).await;
}

/// Only users who take part in a block have their sends checked against the blocks
/// table; a block written before a restart is still known after it.
#[tokio::test]
async fn a_block_still_refuses_sends_after_the_store_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .block(UserId::new(1), UserId::new(2), chat_core::timestamp::now())
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    for (from, to) in [(1, 2), (2, 1)] {
        let refused = store.insert(record(from, to, "after the restart")).await;
        assert!(
            matches!(refused, Err(Error::Forbidden { .. })),
            "{from} -> {to}: {refused:?}"
        );
    }
    assert!(store.insert(record(1, 3, "others")).await.unwrap().created);
    assert!(store.unblock(UserId::new(1), UserId::new(2)).await.unwrap());
    assert!(store.insert(record(2, 1, "lifted")).await.unwrap().created);
}

/// A deleted message's text is gone from the database file, not only from answers.
#[tokio::test]
async fn a_deleted_text_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let secret = "the-secret-only-this-message-holds";
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let id = store.insert(record(1, 2, secret)).await.unwrap().message.id;
        store.insert(record(2, 1, "after it")).await.unwrap();
        let at = chat_core::timestamp::now();
        let deleted = store
            .amend(UserId::new(1), id, chat_core::Amendment::Delete, at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.message.message, "");
    }
    // The WAL keeps older page images until it is checkpointed and reused; after a
    // checkpoint that empties it, nothing of the text may be left anywhere.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let holds = |name: &str| {
        std::fs::read(dir.path().join(name)).is_ok_and(|bytes| {
            bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes())
        })
    };
    assert!(
        !holds("chat.db"),
        "the deleted text is still in the database file"
    );
    assert!(
        !holds("chat.db-wal"),
        "the deleted text is still in the WAL"
    );
}
