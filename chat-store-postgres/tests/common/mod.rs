//! A store in a fresh schema of the test database, dropped afterwards.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};

use chat_store_postgres::PostgresStore;
use chat_store_postgres::sqlx::{self, AssertSqlSafe, PgPool};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Fixture {
    pub store: PostgresStore,
    pub url: String,
    pub schema: String,
}

impl Deref for Fixture {
    type Target = PostgresStore;

    fn deref(&self) -> &PostgresStore {
        &self.store
    }
}

/// A migrated store in a schema of its own; `None` (with the reason printed) when
/// `CHAT_TEST_POSTGRES_URL` is unset, a failure when `CHAT_REQUIRE_SERVICES=1`.
pub async fn fixture() -> Option<Fixture> {
    let url = chat_core::testing::service_url("CHAT_TEST_POSTGRES_URL")?;
    let schema = format!(
        "chat_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let store = PostgresStore::connect_with_schema(&url, &schema)
        .await
        .expect("connect to CHAT_TEST_POSTGRES_URL");
    store.migrate().await.expect("migrate");
    Some(Fixture { store, url, schema })
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Async work cannot run in drop; a short-lived thread with its own runtime can.
        let url = self.url.clone();
        let schema = self.schema.clone();
        let pool = self.store.pool().clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                pool.close().await;
                if let Ok(admin) = PgPool::connect(&url).await {
                    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&admin).await;
                    admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
