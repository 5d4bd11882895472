//! Real-time one-to-one chat for Rust services.
//!
//! This package is the one dependency a host needs: it re-exports [`chat_core`] (the
//! domain, the ports and every rule in [`ChatService`]) and, behind features, the
//! adapters:
//!
//! | feature  | adds |
//! |----------|------|
//! | `sqlite` | [`sqlite::SqliteStore`], the embedded durable store |
//! | `postgres` | [`postgres::PostgresStore`], the store shared by many nodes |
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use chat::{ChatService, SendMessage, UserId};
//!
//! let chat = ChatService::in_memory();
//! let sent = chat
//!     .send(UserId::new(1), SendMessage {
//!         receiver_id: UserId::new(2),
//!         message: "Hi!".into(),
//!         client_message_id: None,
//!     })
//!     .await?;
//! assert_eq!(chat.unread_total(UserId::new(2)).await?, 1);
//! # let _ = sent;
//! # Ok::<(), chat::Error>(())
//! # }).unwrap();
//! ```

pub use chat_core::*;

/// The embedded SQLite store.
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use chat_store_sqlite::{SqliteStore, rusqlite};
}

/// The Postgres store.
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use chat_store_postgres::{PostgresStore, sqlx};
}
