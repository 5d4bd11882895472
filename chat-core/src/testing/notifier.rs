//! The `Notifier` conformance cases. Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use futures_util::StreamExt;

use crate::event::{Event, Typing};
use crate::ids::UserId;
use crate::ports::{EventStream, Notice, Notifier};

/// Long enough for any healthy notifier; only a hang reaches it.
const HANG: Duration = Duration::from_secs(10);
/// How long to wait before concluding that no event is coming.
const QUIET: Duration = Duration::from_millis(100);

fn marker(n: i64) -> Event {
    Event::Typing(Typing {
        user_id: UserId::new(n),
    })
}

fn marker_of(event: &Event) -> i64 {
    match event {
        Event::Typing(t) => t.user_id.get(),
        other => panic!("unexpected event {other:?}"),
    }
}

/// The event a notice carries; a healthy notifier in one test has no gaps.
fn event_of(notice: Notice) -> Event {
    match notice {
        Notice::Event(event) => event,
        other => panic!("unexpected notice {other:?}"),
    }
}

async fn next(stream: &mut EventStream) -> Option<Event> {
    tokio::time::timeout(HANG, stream.next())
        .await
        .expect("no event within the hang limit")
        .map(event_of)
}

async fn nothing_arrives(stream: &mut EventStream) {
    if let Ok(Some(notice)) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("unexpected notice {notice:?}");
    }
}

pub async fn publish_reaches_a_subscriber(notifier: &dyn Notifier) {
    let mut stream = notifier.subscribe(UserId::new(1)).await.unwrap();
    notifier.publish(UserId::new(1), marker(7)).await.unwrap();
    assert_eq!(next(&mut stream).await, Some(marker(7)));
}

pub async fn every_stream_of_the_user_receives(notifier: &dyn Notifier) {
    let mut phone = notifier.subscribe(UserId::new(1)).await.unwrap();
    let mut laptop = notifier.subscribe(UserId::new(1)).await.unwrap();
    notifier.publish(UserId::new(1), marker(1)).await.unwrap();
    assert_eq!(next(&mut phone).await, Some(marker(1)));
    assert_eq!(next(&mut laptop).await, Some(marker(1)));
}

pub async fn other_users_receive_nothing(notifier: &dyn Notifier) {
    let mut mine = notifier.subscribe(UserId::new(1)).await.unwrap();
    let mut theirs = notifier.subscribe(UserId::new(2)).await.unwrap();
    notifier.publish(UserId::new(1), marker(1)).await.unwrap();
    assert_eq!(next(&mut mine).await, Some(marker(1)));
    nothing_arrives(&mut theirs).await;
}

pub async fn events_arrive_in_publish_order(notifier: &dyn Notifier) {
    let mut stream = notifier.subscribe(UserId::new(1)).await.unwrap();
    for n in 0..200 {
        notifier.publish(UserId::new(1), marker(n)).await.unwrap();
    }
    for n in 0..200 {
        assert_eq!(next(&mut stream).await.as_ref().map(marker_of), Some(n));
    }
}

pub async fn publish_without_subscribers_succeeds(notifier: &dyn Notifier) {
    notifier.publish(UserId::new(42), marker(1)).await.unwrap();
    // A later subscriber does not get events published before it subscribed (once
    // they are no longer in flight: a notifier across processes publishes in the
    // background).
    tokio::time::sleep(QUIET).await;
    let mut late = notifier.subscribe(UserId::new(42)).await.unwrap();
    nothing_arrives(&mut late).await;
}

pub async fn dropped_stream_does_not_disturb_others(notifier: &dyn Notifier) {
    let dropped = notifier.subscribe(UserId::new(1)).await.unwrap();
    let mut kept = notifier.subscribe(UserId::new(1)).await.unwrap();
    drop(dropped);
    notifier.publish(UserId::new(1), marker(5)).await.unwrap();
    assert_eq!(next(&mut kept).await, Some(marker(5)));
}

/// A subscriber that never reads must not make `publish` wait or fail. What it gets
/// later is an in-order prefix of what was published, and then either the rest or the
/// end of its stream (it was dropped and must resume from the store).
pub async fn slow_subscriber_never_blocks_publish(notifier: &dyn Notifier) {
    const EVENTS: i64 = 20_000;
    let mut stalled = notifier.subscribe(UserId::new(1)).await.unwrap();
    let publishing = async {
        for n in 0..EVENTS {
            notifier.publish(UserId::new(1), marker(n)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publish waited for a subscriber that does not read");
    let mut expected = 0;
    while let Ok(Some(notice)) = tokio::time::timeout(QUIET, stalled.next()).await {
        assert_eq!(
            marker_of(&event_of(notice)),
            expected,
            "events skipped or reordered"
        );
        expected += 1;
    }
    assert!(expected <= EVENTS);
}
