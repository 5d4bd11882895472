//! What the conformance suite cannot see: query plans, migrations, connection loss.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chat_core::testing::record;
use chat_core::{Error, MessageRepository};
use chat_store_postgres::PostgresStore;
use chat_store_postgres::sqlx::{self, Row};

/// With sequential scans ruled out, every query must be served by its index, and the
/// ordered ones (history, backlog, conversation list) straight from the index: with
/// sorting disabled a plan that still needs one shows a `Sort` node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_use_their_indexes() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    let mut conn = fixture.pool().acquire().await.unwrap();
    // On an empty table the planner prefers scans and sorts; rule them out to see
    // whether the index can serve each query, order included.
    sqlx::raw_sql("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plans = [
        (
            "history page",
            "EXPLAIN SELECT id FROM messages WHERE low_user_id = 1 AND high_user_id = 2 ORDER BY id DESC LIMIT 50 OFFSET 0",
            "messages_conversation",
        ),
        (
            "history before",
            "EXPLAIN SELECT id FROM messages WHERE low_user_id = 1 AND high_user_id = 2 AND id < 1000 ORDER BY id DESC LIMIT 50",
            "messages_conversation",
        ),
        (
            "history after",
            "EXPLAIN SELECT id FROM messages WHERE low_user_id = 1 AND high_user_id = 2 AND id > 10 ORDER BY id ASC LIMIT 50",
            "messages_conversation",
        ),
        (
            "undelivered",
            "EXPLAIN SELECT id FROM messages WHERE receiver_id = 1 AND status = 'sent' AND id > 0 ORDER BY id LIMIT 50",
            "messages_undelivered",
        ),
        (
            "unread",
            "EXPLAIN SELECT count(*) FROM messages WHERE receiver_id = 1 AND status <> 'read'",
            "messages_unread",
        ),
        (
            "conversations",
            "EXPLAIN SELECT peer_id FROM conversations WHERE user_id = 1 AND last_message_id < 100 ORDER BY last_message_id DESC LIMIT 20",
            "conversations_recent",
        ),
        (
            "changes sent",
            "EXPLAIN SELECT id FROM messages WHERE sender_id = 1 AND revision > 0 ORDER BY revision LIMIT 50",
            "messages_sender_changes",
        ),
        (
            "changes received",
            "EXPLAIN SELECT id FROM messages WHERE receiver_id = 1 AND revision > 0 ORDER BY revision LIMIT 50",
            "messages_receiver_changes",
        ),
    ];
    for (name, explain, index) in plans {
        let rows = sqlx::raw_sql(explain).fetch_all(&mut *conn).await.unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{name} does not use {index}:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{name} scans:\n{plan}");
        if name.starts_with("history")
            || name.starts_with("changes")
            || name == "undelivered"
            || name == "conversations"
        {
            assert!(!plan.contains("Sort"), "{name} sorts:\n{plan}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_changes_nothing() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    let id = fixture
        .insert(record(1, 2, "kept"))
        .await
        .unwrap()
        .message
        .id;
    fixture.migrate().await.unwrap();
    assert_eq!(fixture.get(id).await.unwrap().unwrap().message, "kept");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(fixture.pool())
        .await
        .unwrap();
    // Each migration once.
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied, i64::try_from(migrations).unwrap());
}

/// A database of the release before the job outbox (migration 1 only) keeps its
/// messages when this release migrates it, and then writes jobs with new messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_the_job_outbox_is_upgraded_with_its_messages() {
    use chat_core::testing::with_jobs;
    use chat_core::{JobState, JobStore};

    let Some(fixture) = common::fixture().await else {
        return;
    };
    let kept = fixture
        .insert(record(1, 2, "before the upgrade"))
        .await
        .unwrap()
        .message;
    // Back to the previous release's schema: its newest migration taken back.
    sqlx::raw_sql("DROP TABLE jobs; DELETE FROM _sqlx_migrations WHERE version = 2;")
        .execute(fixture.pool())
        .await
        .unwrap();
    let jobs_table: Option<String> = sqlx::query_scalar("SELECT to_regclass('jobs')::text")
        .fetch_one(fixture.pool())
        .await
        .unwrap();
    assert_eq!(jobs_table, None);

    fixture.migrate().await.unwrap();
    assert_eq!(fixture.get(kept.id).await.unwrap(), Some(kept.clone()));
    let next = fixture
        .insert(with_jobs(record(2, 1, "after"), &["webhook"]))
        .await
        .unwrap()
        .message;
    assert!(next.id > kept.id);
    let jobs = fixture.list(JobState::Pending, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].subject, Some(next.id));
}

/// A database of the release before edits, deletions and blocks (its two newest
/// migrations taken back) keeps its messages when this release migrates it; they can
/// then be edited and deleted, the changes take their place in the feed among new
/// messages, and blocks and last-seen times are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_amendments_is_upgraded_with_its_messages() {
    use chat_core::{Amendment, FeedEntry, MessageId, UserId};

    let Some(fixture) = common::fixture().await else {
        return;
    };
    sqlx::raw_sql(
        "DROP TABLE blocks; DROP TABLE last_seen;
         DROP INDEX messages_sender_changes; DROP INDEX messages_receiver_changes;
         ALTER TABLE messages DROP COLUMN edited_at, DROP COLUMN deleted_at, DROP COLUMN revision;
         DELETE FROM _sqlx_migrations WHERE version IN (3, 4);",
    )
    .execute(fixture.pool())
    .await
    .unwrap();
    // Written as the previous release wrote them.
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO messages (sender_id, receiver_id, message, created_at, updated_at)
         VALUES (1, 2, 'before the upgrade', now(), now()), (2, 1, 'also before', now(), now())
         RETURNING id",
    )
    .fetch_all(fixture.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversations (user_id, peer_id, last_message_id, message_count)
         VALUES (1, 2, $1, 2), (2, 1, $1, 2)",
    )
    .bind(ids[1])
    .execute(fixture.pool())
    .await
    .unwrap();

    fixture.migrate().await.unwrap();
    let kept = fixture.get(MessageId::new(ids[0])).await.unwrap().unwrap();
    assert_eq!(kept.message, "before the upgrade");
    assert_eq!((kept.edited_at, kept.deleted_at), (None, None));
    let other = fixture.get(MessageId::new(ids[1])).await.unwrap().unwrap();
    let at = chat_core::timestamp::now();
    let edited = fixture
        .amend(
            UserId::new(1),
            kept.id,
            Amendment::Edit("after".to_owned()),
            at,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(edited.revision > other.id);
    assert_eq!(edited.message.edited_at, Some(at));
    let deleted = fixture
        .amend(UserId::new(2), other.id, Amendment::Delete, at)
        .await
        .unwrap()
        .unwrap();
    let next = fixture.insert(record(2, 1, "new")).await.unwrap().message;
    assert!(next.id > deleted.revision);
    let feed = fixture
        .feed_after(UserId::new(1), other.id, 10)
        .await
        .unwrap();
    let positions: Vec<_> = feed.iter().map(FeedEntry::position).collect();
    assert_eq!(positions, [edited.revision, deleted.revision, next.id]);
    assert_eq!(feed[1].message().message, "");
    // Blocks and last-seen times came with the upgrade.
    assert!(
        fixture
            .block(UserId::new(1), UserId::new(2), at)
            .await
            .unwrap()
            .created
    );
    let refused = fixture.insert(record(2, 1, "blocked")).await;
    assert!(
        matches!(refused, Err(Error::Forbidden { .. })),
        "{refused:?}"
    );
    fixture.set_last_seen(UserId::new(2), at).await.unwrap();
    assert_eq!(
        fixture.last_seen(&[UserId::new(2)]).await.unwrap(),
        [(UserId::new(2), at)]
    );
}

/// Every backend of the store's pool is terminated mid-run; requests recover by
/// themselves, and any failure in between is `Unavailable` (a 503), never internal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_after_backends_are_terminated() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    let id = fixture
        .insert(record(1, 2, "before"))
        .await
        .unwrap()
        .message
        .id;
    let admin = sqlx::PgPool::connect(&fixture.url).await.unwrap();
    for round in 0..3 {
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(format!("chat/{}", fixture.schema))
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(
            !terminated.is_empty(),
            "round {round}: nothing to terminate"
        );
        let mut recovered = false;
        for _ in 0..50 {
            match fixture.get(id).await {
                Ok(found) => {
                    assert!(found.is_some());
                    recovered = true;
                    break;
                }
                Err(Error::Unavailable { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(other) => panic!("round {round}: expected Unavailable, got {other:?}"),
            }
        }
        assert!(recovered, "round {round}: the pool did not recover");
        fixture.insert(record(2, 1, "after")).await.unwrap();
    }
    admin.close().await;
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // Nothing listens on port 1.
    match PostgresStore::connect("postgres://postgres@127.0.0.1:1/test").await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        PostgresStore::connect_with_schema("postgres://127.0.0.1:1/x", "Bad-Name; DROP")
            .await
            .is_err()
    );
}

/// Makes the database refuse every insert into `table` whose row meets `condition`
/// (PL/pgSQL over `NEW`): a trigger standing for any failure of a statement's own.
async fn refuse_inserts(pool: &sqlx::PgPool, table: &str, condition: &str) {
    // Only this file's fixed names and conditions reach the text.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
         FOR EACH ROW EXECUTE FUNCTION refuse_{table}();"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// A message and its jobs commit together or not at all: a job the database refuses
/// (a trigger here stands for any failure) takes its message with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_and_its_jobs_commit_or_roll_back_together() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    refuse_inserts(fixture.pool(), "jobs", "NEW.kind = 'refused'").await;
    chat_core::testing::message_jobs::a_refused_job_rolls_its_change_back(&*fixture).await;
}

/// Sends stored at the same moment share group transactions, and each keeps its own
/// fate: new ones are stored once, a key used twice stores one message, a send across a
/// block is refused, and a send whose statement fails (a trigger here) fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_in_groups_keep_their_own_outcomes() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    refuse_inserts(fixture.pool(), "messages", "NEW.message = 'poison'").await;
    let now = chat_core::timestamp::now();
    fixture
        .block(chat_core::UserId::new(51), chat_core::UserId::new(50), now)
        .await
        .unwrap();

    let mut sends = tokio::task::JoinSet::new();
    for round in 0..3 {
        for n in 0..100_i64 {
            let store = fixture.store.clone();
            let (sender, receiver) = (1 + n % 20, 100 + n % 7);
            // Each key twice: in round 0 and again in round 1 (the same content).
            let key = format!("k{}", n + 100 * (round % 2));
            let kind = match (round, n) {
                (2, 0..5) => "blocked",
                (2, 5) => "poison",
                _ => "new",
            };
            sends.spawn(async move {
                let record = match kind {
                    "blocked" => record(50, 51, "across a block"),
                    "poison" => record(sender, receiver, "poison"),
                    _ => chat_core::testing::keyed_record(sender, receiver, "hello", &key),
                };
                (kind, key, store.insert(record).await)
            });
        }
    }
    let (mut created, mut replays, mut blocked, mut failed) = (0, 0, 0, 0);
    let mut ids = std::collections::HashMap::new();
    while let Some(joined) = sends.join_next().await {
        let (kind, key, outcome) = joined.unwrap();
        match (kind, outcome) {
            ("new", Ok(inserted)) => {
                if inserted.created {
                    created += 1;
                } else {
                    replays += 1;
                }
                let id = inserted.message.id;
                assert_eq!(*ids.entry(key).or_insert(id), id, "one message per key");
            }
            ("blocked", Err(Error::Forbidden { .. })) => blocked += 1,
            ("poison", Err(_)) => failed += 1,
            (kind, outcome) => panic!("{kind}: {outcome:?}"),
        }
    }
    // 200 distinct keys; round 1 repeats round 0's 100 keys, round 2 uses round 0's
    // again for the 94 sends neither blocked nor poison.
    assert_eq!((created, blocked, failed), (200, 5, 1));
    assert_eq!(replays, 94);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(fixture.pool())
        .await
        .unwrap();
    assert_eq!(stored, 200);
}

/// A store made from the caller's own pool writes where that pool's connections point:
/// the group writer's connection takes the pool's `search_path`, here set by the
/// pool's own `after_connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_callers_pool_writes_into_that_pools_schema() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    let schema = fixture.schema.clone();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _meta| {
            let sql = format!("SET search_path TO {schema}");
            Box::pin(async move {
                sqlx::Executor::execute(conn, sqlx::raw_sql(sqlx::AssertSqlSafe(sql))).await?;
                Ok(())
            })
        })
        .connect(&fixture.url)
        .await
        .unwrap();
    let store = PostgresStore::new(pool);
    let sent = store
        .insert(record(7, 8, "through the caller's pool"))
        .await;
    let id = sent.unwrap().message.id;
    let found = fixture
        .get(id)
        .await
        .unwrap()
        .expect("stored in the fixture's schema");
    assert_eq!(found.message, "through the caller's pool");
    store.pool().close().await;
}

/// A send alone whose statement fails for a reason of its own (a trigger here) answers
/// with that failure, an internal error, not as if the database were out of reach: a
/// 503 would have the client retry a send that cannot succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_send_refused_by_the_database_is_internal_not_unavailable() {
    let Some(fixture) = common::fixture().await else {
        return;
    };
    refuse_inserts(fixture.pool(), "messages", "NEW.message = 'refused'").await;
    let refused = fixture.insert(record(1, 2, "refused")).await;
    assert!(
        matches!(refused, Err(Error::Internal { .. })),
        "{refused:?}"
    );
    fixture.insert(record(1, 2, "stored")).await.unwrap();
}
