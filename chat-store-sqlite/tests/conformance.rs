//! The SQLite store runs the shared conformance suite, on a file and in memory.

use std::ops::Deref;

use chat_store_sqlite::SqliteStore;

/// A store on a fresh file that is deleted with the fixture.
struct FileStore {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Deref for FileStore {
    type Target = SqliteStore;

    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

async fn file_store() -> Option<FileStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("chat.db"))
        .await
        .expect("open a SQLite file");
    Some(FileStore { store, _dir: dir })
}

mod file {
    chat_core::message_repository_suite!(super::file_store());
}

mod memory {
    chat_core::message_repository_suite!(async {
        Some(Box::new(
            chat_store_sqlite::SqliteStore::open_in_memory()
                .await
                .expect("open SQLite in memory"),
        ))
    });
}

mod jobs_on_a_file {
    chat_core::job_store_suite!(super::file_store());
}

mod jobs_in_memory {
    chat_core::job_store_suite!(async {
        Some(Box::new(
            chat_store_sqlite::SqliteStore::open_in_memory()
                .await
                .expect("open SQLite in memory"),
        ))
    });
}

mod message_jobs_on_a_file {
    chat_core::message_jobs_suite!(super::file_store());
}
