//! Presence on Redis across nodes: one connection limit for all of them, and no ghosts
//! of a node that stopped without a word or of a seat given back while its node
//! refreshed.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_given_back_while_its_node_refreshes_stays_given_back() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = prefix("refresh-race");
    // Refreshed every third of a second: the leaves below span two or three refreshes.
    let ttl = Duration::from_secs(1);
    let node = RedisPresence::connect(&url, &prefix, ttl).unwrap();
    let users: Vec<UserId> = (1..=5_000).map(UserId::new).collect();
    let mut seats = Vec::with_capacity(users.len());
    for user in &users {
        seats.push(node.join(*user, 1).await.unwrap().unwrap());
    }
    // Five seats given back a millisecond, each leave done before the next.
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    for some in seats.chunks(5) {
        ticks.tick().await;
        for seat in some {
            node.leave(*seat).await.unwrap();
        }
    }
    // A refresh that put a seat back would show its user online for a whole TTL.
    let mut online = Vec::new();
    for some in users.chunks(500) {
        let answer = node.lookup(some).await.unwrap();
        online.extend(answer.iter().filter(|p| p.online).map(|p| p.user_id));
    }
    // Every leave wrote a last-seen time, kept 30 days: not in the shared Redis.
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut redis)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(
        online.is_empty(),
        "{} of {} users online after every seat was given back, first {:?}",
        online.len(),
        users.len(),
        online.first()
    );
}
