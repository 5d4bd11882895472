//! Edits and deletions through `ChatService`: who may, when, what everyone hears, and
//! what a device that was away learns when it resumes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chat_core::{
    ChatConfig, ChatService, Error, Event, EventStream, FeedEntry, FeedStart, FeedUpdate,
    MessageId, Notice, SendMessage, UserId, ValidationCode,
};
use futures_util::StreamExt;

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);
const CAROL: UserId = UserId::new(3);

async fn send(chat: &ChatService, from: UserId, to: UserId, text: &str) -> MessageId {
    let input = SendMessage {
        receiver_id: to,
        message: text.to_owned(),
        client_message_id: None,
    };
    chat.send(from, input).await.unwrap().message.id
}

/// The next event on `stream`, or `None` when none comes for a moment.
async fn next_event(stream: &mut EventStream) -> Option<Event> {
    match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
        Ok(Some(Notice::Event(event))) => Some(event),
        _ => None,
    }
}

fn field_codes(error: &Error) -> Vec<(String, ValidationCode)> {
    error
        .validation_errors()
        .unwrap_or_else(|| panic!("expected a validation error, got {error:?}"))
        .errors()
        .iter()
        .map(|e| (e.field.to_string(), e.code))
        .collect()
}

#[tokio::test]
async fn the_sender_edits_and_both_participants_hear_of_it() {
    let chat = ChatService::in_memory();
    let id = send(&chat, ALICE, BOB, "helo").await;
    let mut bob = chat.subscribe(BOB).await.unwrap();
    let mut alice = chat.subscribe(ALICE).await.unwrap();
    let edited = chat
        .edit_message(ALICE, id, "  hello  ".to_owned())
        .await
        .unwrap();
    assert_eq!(edited.message, "hello", "trimmed as a sent text is");
    assert!(edited.edited_at.is_some());
    assert_eq!(edited.deleted_at, None);
    for stream in [&mut bob, &mut alice] {
        match next_event(stream).await {
            Some(Event::Changed(change)) => {
                assert_eq!(change.message, edited);
                assert!(!change.is_deletion());
            }
            other => panic!("expected a change, got {other:?}"),
        }
    }
    // The same text again changes nothing and tells no one.
    let again = chat
        .edit_message(ALICE, id, "hello".to_owned())
        .await
        .unwrap();
    assert_eq!(again, edited);
    assert_eq!(next_event(&mut bob).await, None);
    assert_eq!(chat.message(BOB, id).await.unwrap(), edited);
}

#[tokio::test]
async fn only_the_sender_edits_valid_text_within_the_window() {
    let chat = ChatService::in_memory();
    let id = send(&chat, ALICE, BOB, "original").await;
    let receiver = chat.edit_message(BOB, id, "mine now".to_owned()).await;
    assert!(
        matches!(receiver, Err(Error::Forbidden { .. })),
        "{receiver:?}"
    );
    let stranger = chat.edit_message(CAROL, id, "x".to_owned()).await;
    assert!(
        matches!(stranger, Err(Error::NotFound { .. })),
        "{stranger:?}"
    );
    let missing = chat
        .edit_message(ALICE, MessageId::new(999), "x".to_owned())
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let blank = chat
        .edit_message(ALICE, id, "   ".to_owned())
        .await
        .unwrap_err();
    assert_eq!(field_codes(&blank)[0].0, "message");
    let long = chat
        .edit_message(ALICE, id, "x".repeat(4001))
        .await
        .unwrap_err();
    assert_eq!(field_codes(&long)[0].0, "message");
    let bad_id = chat
        .edit_message(ALICE, MessageId::new(0), "x".to_owned())
        .await
        .unwrap_err();
    assert_eq!(field_codes(&bad_id)[0].0, "message_id");
    assert_eq!(chat.message(ALICE, id).await.unwrap().message, "original");

    let closed = ChatService::in_memory()
        .with_config(ChatConfig::default().with_edit_window(Duration::ZERO));
    let id = send(&closed, ALICE, BOB, "too late").await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let late = closed.edit_message(ALICE, id, "fixed".to_owned()).await;
    assert!(matches!(late, Err(Error::Forbidden { .. })), "{late:?}");
    // Stating the text it already has is no edit, and is answered as before.
    let same = closed
        .edit_message(ALICE, id, "too late".to_owned())
        .await
        .unwrap();
    assert_eq!(same.edited_at, None);
}

#[tokio::test]
async fn a_deletion_is_final_idempotent_and_the_senders_alone() {
    let chat = ChatService::in_memory();
    let id = send(&chat, ALICE, BOB, "oops").await;
    let receiver = chat.delete_message(BOB, id).await;
    assert!(
        matches!(receiver, Err(Error::Forbidden { .. })),
        "{receiver:?}"
    );
    let stranger = chat.delete_message(CAROL, id).await;
    assert!(
        matches!(stranger, Err(Error::NotFound { .. })),
        "{stranger:?}"
    );
    let mut bob = chat.subscribe(BOB).await.unwrap();
    let tombstone = chat.delete_message(ALICE, id).await.unwrap();
    assert_eq!(tombstone.message, "");
    assert!(tombstone.deleted_at.is_some());
    match next_event(&mut bob).await {
        Some(Event::Changed(change)) => assert!(change.is_deletion()),
        other => panic!("expected a deletion, got {other:?}"),
    }
    // Again: the same tombstone, and no news.
    assert_eq!(chat.delete_message(ALICE, id).await.unwrap(), tombstone);
    assert_eq!(next_event(&mut bob).await, None);
    let edit = chat.edit_message(ALICE, id, "back".to_owned()).await;
    assert!(matches!(edit, Err(Error::Conflict { .. })), "{edit:?}");
    // The receiver still reads it, as a tombstone.
    let read = chat.mark_message_read(BOB, id).await.unwrap();
    assert_eq!(read.message, "");
    assert_eq!(chat.unread_total(BOB).await.unwrap(), 0);
}

/// Everything a feed hands out until it stays quiet.
async fn drain(feed: &mut chat_core::Feed) -> Vec<FeedEntry> {
    let mut entries = Vec::new();
    while let Ok(update) =
        tokio::time::timeout(Duration::from_millis(100), feed.next_update()).await
    {
        assert_eq!(update, FeedUpdate::Messages);
        loop {
            let page = feed.next_page().await.unwrap();
            if page.is_empty() {
                break;
            }
            entries.extend(page);
        }
    }
    entries
}

#[tokio::test]
async fn a_device_hears_of_changes_live_and_after_being_away() {
    let chat = ChatService::in_memory();
    let first = send(&chat, ALICE, BOB, "first").await;
    let second = send(&chat, BOB, ALICE, "second").await;
    let mut phone = chat
        .open_feed(BOB, FeedStart::After(second), 100)
        .await
        .unwrap();
    assert!(drain(&mut phone).await.is_empty());
    // Live.
    let edited = chat
        .edit_message(ALICE, first, "first!".to_owned())
        .await
        .unwrap();
    let live = drain(&mut phone).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].message(), &edited);
    assert!(matches!(live[0], FeedEntry::Changed(_)));
    let resume_at = phone.cursor();
    assert_eq!(resume_at, live[0].position());
    drop(phone);
    // Away: one message edited, one deleted, one sent.
    chat.edit_message(BOB, second, "second, fixed".to_owned())
        .await
        .unwrap();
    let tombstone = chat.delete_message(ALICE, first).await.unwrap();
    let third = send(&chat, ALICE, BOB, "third").await;
    let mut phone = chat
        .open_feed(BOB, FeedStart::After(resume_at), 100)
        .await
        .unwrap();
    let caught_up = drain(&mut phone).await;
    let shape: Vec<(MessageId, bool)> = caught_up
        .iter()
        .map(|e| (e.message().id, matches!(e, FeedEntry::Changed(_))))
        .collect();
    assert_eq!(shape, vec![(second, true), (first, true), (third, false)]);
    assert_eq!(caught_up[0].message().message, "second, fixed");
    assert_eq!(caught_up[1].message(), &tombstone);
    assert!(
        caught_up
            .windows(2)
            .all(|w| w[0].position() < w[1].position()),
        "in position order"
    );
}
