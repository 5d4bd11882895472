//! The live feed through its public API: backlog, live messages in id order, the
//! device's own sends, resume, and what a lost event or an overflow does.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    ChatService, Error, Event, EventStream, Feed, FeedEntry, FeedStart, FeedUpdate,
    InMemoryRepository, InProcessNotifier, MessageId, Notice, Notifier, SendMessage, UserId,
};
use tokio::sync::mpsc;

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);
const CAROL: UserId = UserId::new(3);
const BATCH: u32 = 3;

async fn send(chat: &ChatService, from: UserId, to: UserId, text: &str) -> MessageId {
    let input = SendMessage {
        receiver_id: to,
        message: text.to_owned(),
        client_message_id: None,
    };
    chat.send(from, input).await.unwrap().message.id
}

/// Every message the feed has now, page by page, by id.
async fn drain(feed: &mut Feed) -> Vec<MessageId> {
    let mut ids = Vec::new();
    loop {
        let page = feed.next_page().await.unwrap();
        if page.is_empty() {
            return ids;
        }
        ids.extend(page.iter().map(FeedEntry::position));
    }
}

/// Every message the feed hands out until it stays quiet, as a transport takes them.
async fn received(feed: &mut Feed) -> Vec<MessageId> {
    let mut ids = Vec::new();
    while let Some(update) = update(feed).await {
        assert_eq!(update, FeedUpdate::Messages);
        ids.extend(drain(feed).await);
    }
    ids
}

/// The next update, or `None` when the feed stays quiet for a moment.
async fn update(feed: &mut Feed) -> Option<FeedUpdate> {
    tokio::time::timeout(Duration::from_millis(100), feed.next_update())
        .await
        .ok()
}

#[tokio::test]
async fn a_feed_hands_out_what_commits_once_it_is_open_also_from_other_devices() {
    let chat = ChatService::in_memory();
    let before = send(&chat, ALICE, BOB, "before").await;
    chat.mark_messages_delivered(BOB, &[before]).await.unwrap();
    // Alice's tablet opens its feed; then her phone sends, and Bob answers.
    let mut tablet = chat
        .open_feed(ALICE, FeedStart::Undelivered, BATCH)
        .await
        .unwrap();
    let own = send(&chat, ALICE, BOB, "from the phone").await;
    let answer = send(&chat, BOB, ALICE, "answer").await;
    assert_eq!(received(&mut tablet).await, vec![own, answer]);
    assert_eq!(tablet.cursor(), answer);
}

#[tokio::test]
async fn the_undelivered_backlog_comes_first_then_newer_messages_in_id_order() {
    let chat = ChatService::in_memory();
    let mut waiting = Vec::new();
    for n in 0..7 {
        waiting.push(send(&chat, ALICE, BOB, &format!("waiting {n}")).await);
    }
    chat.mark_messages_delivered(BOB, &waiting[..2])
        .await
        .unwrap();
    let own = send(&chat, BOB, CAROL, "Bob's own, sent before").await;
    let mut phone = chat
        .open_feed(BOB, FeedStart::Undelivered, BATCH)
        .await
        .unwrap();
    let after_open = [
        send(&chat, BOB, ALICE, "from Bob's laptop").await,
        send(&chat, CAROL, BOB, "from Carol").await,
    ];
    let mut expected = waiting[2..].to_vec();
    expected.extend(after_open);
    // Bob's own earlier message was never undelivered to him: not in the backlog.
    assert!(!expected.contains(&own));
    assert_eq!(received(&mut phone).await, expected);
}

#[tokio::test]
async fn a_resumed_feed_hands_out_everything_after_its_cursor() {
    let chat = ChatService::in_memory();
    let mut all = Vec::new();
    for n in 0..5 {
        all.push(send(&chat, ALICE, BOB, &format!("to Bob {n}")).await);
        all.push(send(&chat, BOB, ALICE, &format!("from Bob {n}")).await);
    }
    send(&chat, ALICE, CAROL, "not Bob's").await;
    chat.mark_messages_delivered(BOB, &all).await.unwrap();
    let mut resumed = chat
        .open_feed(BOB, FeedStart::After(all[3]), BATCH)
        .await
        .unwrap();
    assert_eq!(received(&mut resumed).await, all[4..].to_vec());
}

#[tokio::test]
async fn a_message_the_device_sent_comes_out_in_its_place_once() {
    let chat = ChatService::in_memory();
    let mut phone = chat
        .open_feed(ALICE, FeedStart::Undelivered, BATCH)
        .await
        .unwrap();
    let incoming = send(&chat, BOB, ALICE, "incoming").await;
    let own = send(&chat, ALICE, BOB, "sent on this phone").await;
    assert!(phone.expect(own));
    assert_eq!(drain(&mut phone).await, vec![incoming, own]);
    assert!(!phone.expect(own), "handed out already");
    // The events of both say nothing new.
    assert!(received(&mut phone).await.is_empty());
}

#[tokio::test]
async fn receipts_and_typing_pass_through() {
    let chat = ChatService::in_memory();
    let mut alice = chat
        .open_feed(ALICE, FeedStart::Undelivered, BATCH)
        .await
        .unwrap();
    let id = send(&chat, ALICE, BOB, "hi").await;
    chat.typing(BOB, ALICE).await.unwrap();
    chat.mark_messages_delivered(BOB, &[id]).await.unwrap();
    assert_eq!(update(&mut alice).await, Some(FeedUpdate::Messages));
    assert!(drain(&mut alice).await.is_empty(), "the backlog is empty");
    assert_eq!(update(&mut alice).await, Some(FeedUpdate::Messages));
    assert_eq!(drain(&mut alice).await, vec![id]);
    assert!(matches!(
        update(&mut alice).await,
        Some(FeedUpdate::Typing(t)) if t.user_id == BOB
    ));
    assert!(matches!(
        update(&mut alice).await,
        Some(FeedUpdate::Receipt(r)) if r.id == id
    ));
}

#[tokio::test]
async fn an_overflowing_feed_ends_and_its_cursor_resumes_without_a_loss() {
    let chat = ChatService::new(
        Arc::new(InMemoryRepository::new()),
        Arc::new(InProcessNotifier::with_capacity(4)),
    );
    let mut slow = chat
        .open_feed(BOB, FeedStart::Undelivered, BATCH)
        .await
        .unwrap();
    let first = send(&chat, ALICE, BOB, "first").await;
    assert_eq!(received(&mut slow).await, vec![first]);
    let mut missed = Vec::new();
    for n in 0..10 {
        missed.push(send(&chat, ALICE, BOB, &format!("while slow {n}")).await);
    }
    // What was queued says there is news; the store has all of it; then the end.
    let mut got = Vec::new();
    loop {
        match update(&mut slow)
            .await
            .expect("the feed neither ended nor went on")
        {
            FeedUpdate::Ended => break,
            FeedUpdate::Messages => got.extend(drain(&mut slow).await),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, missed);
    let mut resumed = chat
        .open_feed(BOB, FeedStart::After(slow.cursor()), BATCH)
        .await
        .unwrap();
    assert!(received(&mut resumed).await.is_empty());
    let later = send(&chat, ALICE, BOB, "after the resume").await;
    assert_eq!(received(&mut resumed).await, vec![later]);
}

/// A notifier that can lose the events published while `losing` is set and then
/// report a gap, as a broker that reconnected would.
#[derive(Default)]
struct LossyNotifier {
    streams: Mutex<HashMap<UserId, Vec<mpsc::UnboundedSender<Notice>>>>,
    losing: Mutex<bool>,
}

impl LossyNotifier {
    fn lose(&self, losing: bool) {
        *self.losing.lock().unwrap() = losing;
    }

    fn gap(&self, user: UserId) {
        for stream in self
            .streams
            .lock()
            .unwrap()
            .get(&user)
            .into_iter()
            .flatten()
        {
            let _ = stream.send(Notice::Gap);
        }
    }
}

#[async_trait]
impl Notifier for LossyNotifier {
    async fn publish(&self, user: UserId, event: Event) -> Result<(), Error> {
        if !*self.losing.lock().unwrap() {
            for stream in self
                .streams
                .lock()
                .unwrap()
                .get(&user)
                .into_iter()
                .flatten()
            {
                let _ = stream.send(Notice::Event(event.clone()));
            }
        }
        Ok(())
    }

    async fn subscribe(&self, user: UserId) -> Result<EventStream, Error> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.streams
            .lock()
            .unwrap()
            .entry(user)
            .or_default()
            .push(sender);
        Ok(Box::pin(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|notice| (notice, receiver)) },
        )))
    }
}

#[tokio::test]
async fn after_a_gap_the_feed_rereads_the_store_and_goes_on() {
    let notifier = Arc::new(LossyNotifier::default());
    let chat = ChatService::new(Arc::new(InMemoryRepository::new()), notifier.clone());
    let mut phone = chat
        .open_feed(BOB, FeedStart::Undelivered, BATCH)
        .await
        .unwrap();
    notifier.lose(true);
    let mut lost = Vec::new();
    for n in 0..4 {
        lost.push(send(&chat, ALICE, BOB, &format!("event lost {n}")).await);
    }
    notifier.lose(false);
    // Without a gap, nothing tells the feed: the events are gone.
    assert!(received(&mut phone).await.is_empty());
    notifier.gap(BOB);
    assert_eq!(received(&mut phone).await, lost);
    // And the feed goes on.
    let later = send(&chat, CAROL, BOB, "after the gap").await;
    assert_eq!(received(&mut phone).await, vec![later]);
}

#[tokio::test]
async fn a_feed_checks_its_start_and_batch() {
    let chat = ChatService::in_memory();
    for (user, start, batch, field) in [
        (BOB, FeedStart::After(MessageId::new(-1)), BATCH, "after_id"),
        (BOB, FeedStart::Undelivered, 0, "limit"),
        (BOB, FeedStart::Undelivered, 1001, "limit"),
        (UserId::new(0), FeedStart::Undelivered, BATCH, "user_id"),
    ] {
        let error = chat.open_feed(user, start, batch).await.unwrap_err();
        let errors = error.validation_errors().unwrap();
        assert_eq!(errors.errors()[0].field, field, "{error}");
    }
}

#[tokio::test]
async fn by_default_a_device_may_fall_256_events_behind() {
    let chat = ChatService::in_memory();
    let mut behind = chat
        .open_feed(BOB, FeedStart::After(MessageId::new(0)), BATCH)
        .await
        .unwrap();
    let mut within = chat
        .open_feed(BOB, FeedStart::After(MessageId::new(0)), BATCH)
        .await
        .unwrap();
    for _ in 0..256 {
        chat.typing(ALICE, BOB).await.unwrap();
    }
    // `within` takes everything queued so far; `behind` takes nothing.
    drain(&mut within).await;
    for _ in 0..256 {
        assert!(matches!(
            update(&mut within).await,
            Some(FeedUpdate::Typing(_))
        ));
    }
    chat.typing(ALICE, BOB).await.unwrap();
    drain(&mut behind).await;
    for _ in 0..256 {
        assert!(matches!(
            update(&mut behind).await,
            Some(FeedUpdate::Typing(_))
        ));
    }
    assert_eq!(update(&mut behind).await, Some(FeedUpdate::Ended));
    assert!(matches!(
        update(&mut within).await,
        Some(FeedUpdate::Typing(_))
    ));
}
