//! Versioned schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use crate::error::StoreError;

/// Every migration, in order. Append only: a released migration never changes.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_messages.sql")),
    (
        2,
        include_str!("../migrations/0002_catch_up_through_conversations.sql"),
    ),
    (
        3,
        include_str!("../migrations/0003_counts_on_conversations.sql"),
    ),
    (4, include_str!("../migrations/0004_jobs.sql")),
    (5, include_str!("../migrations/0005_amendments.sql")),
    (6, include_str!("../migrations/0006_relations.sql")),
];

/// The schema version this release writes.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the schema up to [`LATEST`], one transaction per migration. Refuses a file
/// written by a newer release instead of guessing.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > LATEST {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: LATEST,
        });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied chat schema migration");
    }
    Ok(())
}

/// The schema version of an open database.
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}
