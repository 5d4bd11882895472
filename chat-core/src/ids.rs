//! Identifiers of users and messages.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a raw value. Nothing is checked here: `ChatService` rejects values
            /// below 1 where an existing identifier is required, naming the field.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            /// The raw value.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(raw: i64) -> Self {
                Self(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A user of the host application; chat stores only the number.
    UserId
);
id_type!(
    /// A message's identifier: 64-bit, ascending in commit order per store.
    MessageId
);
id_type!(
    /// A background job's identifier, stable for the job's whole life.
    JobId
);
