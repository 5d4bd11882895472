//! The Redis notifier beyond the conformance suite: topics follow local subscribers,
//! and a Redis outage turns into a gap, then live delivery again, with no restart.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chat_bus_redis::RedisNotifier;
use chat_bus_redis::testing::RedisServer;
use chat_core::testing::service_url;
use chat_core::{Event, EventStream, Notice, Notifier, Typing, UserId};
use futures_util::StreamExt;

const ALICE: UserId = UserId::new(1);
/// How long a recovery may take: reconnect attempts back off to one a second.
const RECOVERY: Duration = Duration::from_secs(15);

fn marker(n: i64) -> Event {
    Event::Typing(Typing {
        user_id: UserId::new(n),
    })
}

async fn next(stream: &mut EventStream) -> Notice {
    tokio::time::timeout(RECOVERY, stream.next())
        .await
        .expect("nothing arrived in time")
        .expect("the stream ended")
}

/// Polls `check` every 50 ms until it holds; panics with `what` after [`RECOVERY`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + RECOVERY;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn subscribers_of(url: &str, topic: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(topic)
        .query_async::<Vec<(String, i64)>>(&mut connection)
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_topic_is_subscribed_while_it_has_local_streams() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("chat-test-topics-{}", std::process::id());
    let topic = format!("{prefix}:user:1");
    let node = RedisNotifier::connect(&url, &prefix).unwrap();

    let phone = node.subscribe(ALICE).await.unwrap();
    assert_eq!(subscribers_of(&url, &topic).await, 1);
    let laptop = node.subscribe(ALICE).await.unwrap();
    // One connection per node, whatever the number of local streams.
    assert_eq!(subscribers_of(&url, &topic).await, 1);
    drop(phone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(subscribers_of(&url, &topic).await, 1);
    drop(laptop);
    eventually("the topic is released", || async {
        subscribers_of(&url, &topic).await == 0
    })
    .await;
}

/// A payload this node cannot read on a user's topic (a newer node's kind of event,
/// say) becomes a gap, so the user's feeds re-read the store instead of missing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_becomes_a_gap() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("chat-test-unreadable-{}", std::process::id());
    let node = RedisNotifier::connect(&url, &prefix).unwrap();
    let mut stream = node.subscribe(ALICE).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PUBLISH")
        .arg(format!("{prefix}:user:1"))
        .arg(r#"{"node":1,"user":1,"kind":"reaction","event":{}}"#)
        .query_async::<i64>(&mut connection)
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, Notice::Gap);
}

/// A caller that gives up while its subscription waits for Redis (a handshake whose
/// client went away) leaves no topic subscribed behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_given_up_while_waiting_releases_its_topic() {
    let Some(url) = service_url("CHAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("chat-test-given-up-{}", std::process::id());
    let node = RedisNotifier::connect(&url, &prefix).unwrap();
    // A first stream, so the node is connected and the next ones wait for Redis.
    let first = node.subscribe(UserId::new(100)).await.unwrap();
    let mut abandoned = 0;
    for user in 1..=20 {
        let subscribing = node.subscribe(UserId::new(user));
        if tokio::time::timeout(Duration::ZERO, subscribing)
            .await
            .is_err()
        {
            abandoned += 1;
        }
    }
    assert!(abandoned > 0, "every subscription was answered at once");
    for user in 1..=20 {
        let topic = format!("{prefix}:user:{user}");
        eventually("the abandoned topic is released", || async {
            subscribers_of(&url, &topic).await == 0
        })
        .await;
    }
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_becomes_a_gap_and_live_delivery_resumes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let sending = RedisNotifier::connect(&url, "chat").unwrap();
    let receiving = RedisNotifier::connect(&url, "chat").unwrap();
    let mut stream = receiving.subscribe(ALICE).await.unwrap();
    sending.publish(ALICE, marker(1)).await.unwrap();
    assert_eq!(next(&mut stream).await, Notice::Event(marker(1)));
    sending.ping().await.unwrap();
    receiving.ping().await.unwrap();

    redis.kill();
    eventually("the receiving node reports the outage", || async {
        receiving.ping().await.is_err()
    })
    .await;
    // Lost on the way: the receiver will hear of it as a gap.
    sending.publish(ALICE, marker(2)).await.unwrap();
    eventually("the sending node reports the outage", || async {
        sending.ping().await.is_err()
    })
    .await;

    redis.restart();
    // The receiving node lost its subscription: a gap comes, perhaps after the event
    // published meanwhile if the sending node was still retrying it.
    loop {
        match next(&mut stream).await {
            Notice::Gap => break,
            notice => assert_eq!(notice, Notice::Event(marker(2))),
        }
    }
    eventually("both nodes report the bus up again", || async {
        sending.ping().await.is_ok() && receiving.ping().await.is_ok()
    })
    .await;
    // Live again, without a restart of either node: what is published now arrives
    // (after, at most, the sending node's own gap announcement).
    sending.publish(ALICE, marker(3)).await.unwrap();
    let mut notice = next(&mut stream).await;
    while notice == Notice::Gap || notice == Notice::Event(marker(2)) {
        notice = next(&mut stream).await;
    }
    assert_eq!(notice, Notice::Event(marker(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_while_redis_is_away_works_locally_then_catches_up() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let sending = RedisNotifier::connect(&url, "chat").unwrap();
    let receiving = RedisNotifier::connect(&url, "chat").unwrap();
    // Both nodes connected once, then Redis goes.
    let warm = receiving.subscribe(UserId::new(9)).await.unwrap();
    sending.publish(UserId::new(9), marker(0)).await.unwrap();
    drop(warm);
    redis.kill();

    // Redis stays away until this returns: waiting for it would never end.
    let mut stream = tokio::time::timeout(RECOVERY, receiving.subscribe(ALICE))
        .await
        .expect("subscribing waited for Redis")
        .unwrap();
    // Events published on the same node still arrive.
    receiving.publish(ALICE, marker(1)).await.unwrap();
    assert_eq!(next(&mut stream).await, Notice::Event(marker(1)));

    redis.restart();
    assert_eq!(next(&mut stream).await, Notice::Gap);
    // The other node may still be reconnecting: it publishes until one arrives.
    let deadline = Instant::now() + RECOVERY;
    loop {
        sending.publish(ALICE, marker(2)).await.unwrap();
        let arrived = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        if matches!(arrived, Ok(Some(Notice::Event(ref event))) if *event == marker(2)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other node's events never arrived"
        );
    }
}
