//! The `Broadcast` conformance cases. Panics are the failures.
//!
//! Each case takes two handles of one broadcast: on one node they may be the same
//! value; across nodes, two nodes sharing the broker, so that everything crosses it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use futures_util::StreamExt;

use crate::ports::{Broadcast, BroadcastStream, Broadcasted};

/// Long enough for any healthy broadcast; only a hang reaches it.
const HANG: Duration = Duration::from_secs(10);
/// How long to wait before concluding that nothing is coming.
const QUIET: Duration = Duration::from_millis(100);

/// The payload an item carries; a healthy broadcast in one test has no gaps.
async fn next(stream: &mut BroadcastStream) -> Vec<u8> {
    match tokio::time::timeout(HANG, stream.next())
        .await
        .expect("nothing within the hang limit")
    {
        Some(Broadcasted::Payload(payload)) => payload.to_vec(),
        other => panic!("unexpected item {other:?}"),
    }
}

async fn nothing_arrives(stream: &mut BroadcastStream) {
    if let Ok(Some(item)) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("unexpected item {item:?}");
    }
}

pub async fn every_subscriber_on_every_node_receives(here: &dyn Broadcast, there: &dyn Broadcast) {
    let mut local = here.subscribe().await.unwrap();
    let mut remote = there.subscribe().await.unwrap();
    here.publish(b"one".to_vec()).await.unwrap();
    assert_eq!(next(&mut local).await, b"one");
    assert_eq!(next(&mut remote).await, b"one");
    nothing_arrives(&mut local).await;
}

pub async fn payloads_arrive_in_publish_order(here: &dyn Broadcast, there: &dyn Broadcast) {
    let mut stream = there.subscribe().await.unwrap();
    for n in 0..50_u8 {
        here.publish(vec![n]).await.unwrap();
    }
    for n in 0..50_u8 {
        assert_eq!(next(&mut stream).await, vec![n]);
    }
}

pub async fn nothing_is_kept_for_later_subscribers(here: &dyn Broadcast, there: &dyn Broadcast) {
    here.publish(b"early".to_vec()).await.unwrap();
    // Lets an in-flight payload land before subscribing.
    tokio::time::sleep(QUIET).await;
    let mut stream = there.subscribe().await.unwrap();
    nothing_arrives(&mut stream).await;
    here.publish(b"late".to_vec()).await.unwrap();
    assert_eq!(next(&mut stream).await, b"late");
}

pub async fn a_dropped_stream_does_not_disturb_others(here: &dyn Broadcast, there: &dyn Broadcast) {
    let dropped = there.subscribe().await.unwrap();
    let mut kept = there.subscribe().await.unwrap();
    drop(dropped);
    here.publish(b"after".to_vec()).await.unwrap();
    assert_eq!(next(&mut kept).await, b"after");
}

pub async fn a_slow_subscriber_never_blocks_publish(here: &dyn Broadcast, there: &dyn Broadcast) {
    let mut idle = there.subscribe().await.unwrap();
    tokio::time::timeout(HANG, async {
        for n in 0..5_000_u32 {
            here.publish(n.to_be_bytes().to_vec()).await.unwrap();
        }
    })
    .await
    .expect("publish waited on a subscriber that does not read");
    // What arrives is in order, with a gap wherever some was lost.
    let mut last = None;
    let mut seen = 0;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(2), idle.next()).await {
        if let Broadcasted::Payload(payload) = item {
            let n = u32::from_be_bytes(payload[..4].try_into().unwrap());
            assert!(last.is_none_or(|last| n > last), "out of order");
            last = Some(n);
            seen += 1;
        }
        if last == Some(4_999) {
            break;
        }
    }
    assert!(seen > 0, "nothing arrived");
}
