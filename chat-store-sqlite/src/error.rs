//! The store's own failures, and how each maps into `chat_core::Error`.

use rusqlite::ErrorCode;

/// What went wrong inside the SQLite store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database schema is version {found}; this release knows up to {supported}")]
    NewerSchema { found: i64, supported: i64 },
    #[error("the store's writer thread could not be started: {0}")]
    WriterNotStarted(String),
    #[error("the store's writer thread has stopped")]
    WriterStopped,
    #[error("a write batch could not begin: {0}")]
    BatchNotStarted(String),
    #[error("a write batch was rolled back whole: {0}")]
    BatchAborted(String),
    #[error("a commit failed: {0}")]
    CommitFailed(String),
    #[error("a blocking task running a query was lost: {0}")]
    BlockingTaskLost(String),
    #[error("column {0} holds a value out of range")]
    ValueOutOfRange(&'static str),
    #[error("a block stands between the participants")]
    Blocked,
}

impl From<StoreError> for chat_core::Error {
    fn from(error: StoreError) -> Self {
        let unavailable = match &error {
            StoreError::Blocked => {
                return Self::Forbidden {
                    reason: "a block stands between these users",
                };
            }
            StoreError::Sqlite(e) => match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => {
                    return Self::Conflict {
                        message: "The change conflicts with stored data.".to_owned(),
                    };
                }
                Some(code) => matches!(
                    code,
                    ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::CannotOpen
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::DiskFull
                        | ErrorCode::ReadOnly
                        | ErrorCode::OutOfMemory
                ),
                None => false,
            },
            StoreError::WriterNotStarted(_)
            | StoreError::WriterStopped
            | StoreError::BatchNotStarted(_)
            | StoreError::BatchAborted(_)
            | StoreError::CommitFailed(_) => true,
            StoreError::NewerSchema { .. }
            | StoreError::BlockingTaskLost(_)
            | StoreError::ValueOutOfRange(_) => false,
        };
        if unavailable {
            Self::unavailable(error)
        } else {
            Self::internal(error)
        }
    }
}
