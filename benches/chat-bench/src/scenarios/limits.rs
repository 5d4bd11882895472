//! `fsync` and `hold`: what this machine can do at all, to set the server's figures
//! beside. `fsync` appends small records to a file and flushes each one, as a store
//! that committed every send on its own would; `hold` is a bare TCP server that
//! accepts connections and holds each with a task of its own, for `idle --raw` to
//! measure what a connection costs before any protocol.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::clients::quantile;
use crate::report::Report;

/// Options of `fsync`.
#[derive(Debug, clap::Args)]
pub(crate) struct FsyncArgs {
    /// The directory to write the scratch file in (the store's file system).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Seconds to flush for.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Bytes appended before each flush.
    #[arg(long, default_value_t = 4096)]
    bytes: usize,
}

/// Options of `hold`.
#[derive(Debug, clap::Args)]
pub(crate) struct HoldArgs {
    /// The loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:18300")]
    listen: SocketAddr,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
}

/// Appends `bytes` and calls `fsync` back to back for `seconds`, on one thread.
pub(crate) async fn fsync(args: &FsyncArgs) -> Result<Report, String> {
    let path = args
        .dir
        .join(format!("chat-bench-fsync-{}", std::process::id()));
    let (seconds, bytes) = (args.seconds, args.bytes.max(1));
    let flushes = tokio::task::spawn_blocking(move || {
        let result = flush_loop(&path, seconds, bytes);
        let _ = std::fs::remove_file(&path);
        result
    })
    .await
    .map_err(|e| e.to_string())??;
    let (count, elapsed, mut latencies_ms) = flushes;
    latencies_ms.sort_by(f64::total_cmp);
    let mut report = Report::new("fsync");
    report.add("bytes per flush", bytes, "B");
    report.add("flushes", count, "");
    report.add("fsyncs per second", count as f64 / elapsed, "1/s");
    report.add("fsync p50", quantile(&latencies_ms, 0.50), "ms");
    report.add("fsync p99", quantile(&latencies_ms, 0.99), "ms");
    Ok(report)
}

/// The flush loop of [`fsync`]: the count, the seconds taken and each latency.
fn flush_loop(
    path: &std::path::Path,
    seconds: u64,
    bytes: usize,
) -> Result<(usize, f64, Vec<f64>), String> {
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let record = vec![b'x'; bytes];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut latencies_ms = Vec::new();
    while Instant::now() < deadline {
        let at = Instant::now();
        file.write_all(&record).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((
        latencies_ms.len(),
        started.elapsed().as_secs_f64(),
        latencies_ms,
    ))
}

/// Accepts connections on `listen` and holds each until its peer closes it, for at
/// most `max_seconds`.
pub(crate) async fn hold(args: &HoldArgs) -> Result<Report, String> {
    if !args.listen.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", args.listen));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("{}: {e}", args.listen))?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let accepting = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(hold_until_closed(stream));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(args.max_seconds), accepting).await;
    let mut report = Report::new("hold");
    report.add("connections accepted", accepted.load(Ordering::Relaxed), "");
    Ok(report)
}

/// Waits, holding no buffer, until the peer closes `stream` (or it fails). Readiness
/// can be reported with nothing to read, so only a read of 0 bytes or an error ends it.
pub(crate) async fn hold_until_closed(stream: tokio::net::TcpStream) {
    let mut byte = [0_u8; 1];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
