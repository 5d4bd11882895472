//! Connection ids: `"<digits>.<digits>"`, as pusher-js expects them.

use std::fmt;

/// A connection's id, handed out in `pusher:connection_established`. Clients send it
/// back in authorization requests, and the HTTP API names it to leave a connection out
/// of an event (`socket_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SocketId(String);

impl TryFrom<String> for SocketId {
    type Error = SocketIdError;

    fn try_from(id: String) -> Result<Self, SocketIdError> {
        id.parse()
    }
}

impl From<SocketId> for String {
    fn from(id: SocketId) -> Self {
        id.0
    }
}

/// Why a socket id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a socket id is two numbers of 1 to 20 digits joined by '.', such as 1234.5678")]
pub struct SocketIdError;

/// Most digits on each side of the dot.
const MAX_DIGITS: usize = 20;

impl SocketId {
    /// A fresh id from the operating system's random source: two numbers below 2³²,
    /// so ids do not reveal how many connections came before.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(Self(format!("{}.{}", getrandom::u32()?, getrandom::u32()?)))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SocketId {
    type Err = SocketIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            !part.is_empty() && part.len() <= MAX_DIGITS && part.bytes().all(|b| b.is_ascii_digit())
        };
        match text.split_once('.') {
            Some((left, right)) if number(left) && number(right) => Ok(Self(text.to_owned())),
            _ => Err(SocketIdError),
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = SocketId::generate().unwrap();
        let b = SocketId::generate().unwrap();
        assert_eq!(a.as_str().parse::<SocketId>(), Ok(a.clone()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_two_numbers_joined_by_a_dot_parse() {
        assert!("1234.1234".parse::<SocketId>().is_ok());
        for bad in [
            "",
            ".",
            "1234",
            "1234.",
            ".1234",
            "12a.1",
            "1.2.3",
            " 1.2",
            "1.2 ",
            "-1.2",
            "123456789012345678901.1",
        ] {
            assert_eq!(bad.parse::<SocketId>(), Err(SocketIdError), "{bad:?}");
        }
    }
}
