//! Presence on Redis across nodes: one connection limit for all of them, and no ghosts
//! of a node that stopped without a word.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chat_bus_redis::RedisPresence;
use chat_core::testing::service_url;
use chat_core::{Presence, UserId};

const ALICE: UserId = UserId::new(1);

fn prefix(test: &str) -> String {
    format!("chat-test-presence-{test}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_across_nodes() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = prefix("limit");
    let ttl = Duration::from_secs(30);
    let nodes = [
        RedisPresence::connect(&url, &prefix, ttl).unwrap(),
        RedisPresence::connect(&url, &prefix, ttl).unwrap(),
        RedisPresence::connect(&url, &prefix, ttl).unwrap(),
    ];
    let mut seats = Vec::new();
    for node in &nodes {
        seats.push(node.join(ALICE, 3).await.unwrap().unwrap());
    }
    for node in &nodes {
        assert_eq!(node.join(ALICE, 3).await.unwrap(), None);
    }
    nodes[1].leave(seats[1]).await.unwrap();
    assert!(nodes[2].join(ALICE, 3).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_node_that_stopped_go_offline_within_the_ttl() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = prefix("ttl");
    let ttl = Duration::from_secs(1);
    let observer = RedisPresence::connect(&url, &prefix, ttl).unwrap();
    let doomed = RedisPresence::connect(&url, &prefix, ttl).unwrap();
    let _seat = doomed.join(ALICE, 5).await.unwrap().unwrap();
    // Refreshed meanwhile (every third of the TTL): still online after two TTLs.
    tokio::time::sleep(2 * ttl).await;
    assert!(observer.lookup(&[ALICE]).await.unwrap()[0].online);

    // The node stops without leaving: its refreshes stop with it.
    drop(doomed);
    let stopped = Instant::now();
    loop {
        let alice = observer.lookup(&[ALICE]).await.unwrap()[0];
        if !alice.online {
            assert!(alice.last_seen_at.is_some());
            break;
        }
        assert!(
            stopped.elapsed() < 10 * ttl,
            "a ghost: still online long after the TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
