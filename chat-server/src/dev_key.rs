//! The development signing key: used when no key is configured, kept beside the
//! database so `chat-server token` and the server agree across restarts.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use chat_core::jwt::MIN_HMAC_SECRET_BYTES;

/// The file holding the development secret of the database at `database`.
pub(crate) fn path_beside(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".dev-jwt-secret");
    PathBuf::from(name)
}

/// A fresh random secret: 32 random bytes, hex-encoded.
pub(crate) fn random_secret() -> std::io::Result<Vec<u8>> {
    let mut bytes = [0u8; MIN_HMAC_SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes
        .iter()
        .flat_map(|b| {
            let hex = b"0123456789abcdef";
            [hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]
        })
        .collect())
}

/// Reads the secret at `path`, creating it (readable by the owner only) if absent.
pub(crate) fn load_or_create(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            let secret = random_secret()?;
            file.write_all(&secret)?;
            file.sync_all()?;
            Ok(secret)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            let mut secret = Vec::new();
            std::fs::File::open(path)?.read_to_end(&mut secret)?;
            let trimmed = secret.trim_ascii().to_vec();
            if trimmed.len() < MIN_HMAC_SECRET_BYTES {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "{} holds a secret shorter than {MIN_HMAC_SECRET_BYTES} bytes",
                        path.display()
                    ),
                ));
            }
            Ok(trimmed)
        }
        Err(error) => Err(error),
    }
}
