//! The store's own failures, and how each maps into `chat_core::Error`.

/// What went wrong inside the Postgres store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid schema name {0:?}: use 1-63 of [a-z0-9_], starting with a letter")]
    SchemaName(String),
    #[error("column {0} holds a value out of range")]
    ValueOutOfRange(&'static str),
    #[error("a block stands between the participants")]
    Blocked,
    /// The database could not be reached for a group of sends (each send of the group
    /// gets one, with the text of the one failure).
    #[error("the database could not be reached: {0}")]
    Lost(String),
}

/// SQLSTATE classes and codes that mean "the database cannot be reached right now":
/// connection exceptions, shutdown, too many connections, and serialization or
/// deadlock failures (a retry may succeed).
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
        )
}

impl StoreError {
    /// Whether the database could not be reached (a retry may succeed).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            Self::Lost(_) => true,
            Self::Sqlx(sqlx::Error::Database(db)) => {
                unavailable_code(&db.code().unwrap_or_default())
            }
            Self::Sqlx(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }

    /// Whether a unique index refused the change.
    fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Sqlx(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505"))
    }
}

/// The one place where the store's failures become the core's errors.
impl From<StoreError> for chat_core::Error {
    fn from(error: StoreError) -> Self {
        if matches!(error, StoreError::Blocked) {
            Self::Forbidden {
                reason: "a block stands between these users",
            }
        } else if error.is_unique_violation() {
            Self::Conflict {
                message: "The change conflicts with stored data.".to_owned(),
            }
        } else if error.is_unavailable() {
            Self::unavailable(error)
        } else {
            Self::internal(error)
        }
    }
}
