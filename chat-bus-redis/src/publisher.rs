//! The node's publishing side: one task pipelines every event to Redis.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::health::Health;

/// Most events in one pipeline.
const BATCH: usize = 256;
/// How often a publisher that lost events tries Redis again while nothing is sent.
const RETRY: Duration = Duration::from_millis(250);

/// One event on its way: the topic and the payload.
pub(crate) type Outgoing = (String, Vec<u8>);

/// Publishes what arrives on `outbox` until every sender is gone. Events that cannot
/// be published (Redis away, or the outbox full) are dropped; once Redis answers
/// again, the first thing published is the node's id on `gap_topic`, and every other
/// node answers it with a gap to its feeds, which then catch up from the store.
pub(crate) async fn run(
    mut connection: ConnectionManager,
    mut outbox: mpsc::Receiver<Outgoing>,
    gap_topic: String,
    node: u64,
    health: Arc<Health>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if health.gap_owed() {
            // Waits for events, or tries again after a while without any.
            let received = tokio::time::timeout(RETRY, outbox.recv_many(&mut batch, BATCH)).await;
            if received == Ok(0) {
                return;
            }
            // Taken before announcing, so an event dropped while the announcement is
            // on its way is announced again by the next round.
            health.take_owed_gap();
            let announced: Result<(), _> = redis::cmd("PUBLISH")
                .arg(&gap_topic)
                .arg(node)
                .query_async(&mut connection)
                .await;
            match announced {
                Ok(()) => health.set_publisher(true, &"recovered"),
                Err(error) => {
                    // Still away: what was waiting is lost too, and announced later.
                    health.lost_events(&error);
                    batch.clear();
                    continue;
                }
            }
        } else if outbox.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        if batch.is_empty() {
            continue;
        }
        let mut pipeline = redis::pipe();
        for (topic, payload) in batch.drain(..) {
            pipeline.publish(topic, payload).ignore();
        }
        let published: Result<(), _> = pipeline.query_async(&mut connection).await;
        if let Err(error) = published {
            health.lost_events(&error);
        }
    }
}
