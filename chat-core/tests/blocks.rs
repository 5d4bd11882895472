//! Blocks and the host's policy through `ChatService`: who may message whom, whose
//! typing reaches whom, and what stays readable.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    ChatService, Error, Event, EventStream, Notice, Policy, SendMessage, UserId, async_trait,
};
use futures_util::StreamExt;

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);
const CAROL: UserId = UserId::new(3);

fn text(to: UserId, message: &str) -> SendMessage {
    SendMessage {
        receiver_id: to,
        message: message.to_owned(),
        client_message_id: None,
    }
}

async fn next_event(stream: &mut EventStream) -> Option<Event> {
    match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
        Ok(Some(Notice::Event(event))) => Some(event),
        _ => None,
    }
}

fn forbidden_reason(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
    match result {
        Err(Error::Forbidden { reason }) => reason,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn a_block_stops_messages_and_typing_both_ways_and_history_stays() {
    let chat = ChatService::in_memory();
    let before = chat.send(BOB, text(ALICE, "hi")).await.unwrap().message;
    let blocked = chat.block_user(ALICE, BOB).await.unwrap();
    assert!(blocked.created);
    assert_eq!(blocked.block.user_id, BOB);
    let mut alice = chat.subscribe(ALICE).await.unwrap();
    let mut bob = chat.subscribe(BOB).await.unwrap();
    // The blocked user's send: refused, nothing stored, nobody told.
    let from_bob = forbidden_reason(chat.send(BOB, text(ALICE, "hello?")).await);
    // The blocker cannot write either, and both hear the same neutral reason.
    let from_alice = forbidden_reason(chat.send(ALICE, text(BOB, "go away")).await);
    assert_eq!(from_bob, from_alice);
    assert!(!from_bob.contains("block"), "{from_bob}");
    assert_eq!(next_event(&mut alice).await, None);
    assert_eq!(next_event(&mut bob).await, None);
    chat.typing(BOB, ALICE).await.unwrap();
    chat.typing(ALICE, BOB).await.unwrap();
    assert_eq!(next_event(&mut alice).await, None);
    assert_eq!(next_event(&mut bob).await, None);
    // History stays readable to both.
    for user in [ALICE, BOB] {
        let other = if user == ALICE { BOB } else { ALICE };
        let query = chat
            .history_query(chat_core::HistoryRequest::default())
            .unwrap();
        let history = chat.history(user, other, query).await.unwrap();
        assert_eq!(history.messages, vec![before.clone()]);
    }
    // Others are unaffected.
    chat.send(CAROL, text(BOB, "hey")).await.unwrap();
    // Idempotent, listed, and lifted.
    assert!(!chat.block_user(ALICE, BOB).await.unwrap().created);
    assert_eq!(chat.blocks(ALICE).await.unwrap(), vec![blocked.block]);
    assert!(chat.blocks(BOB).await.unwrap().is_empty());
    assert!(chat.unblock_user(ALICE, BOB).await.unwrap());
    assert!(!chat.unblock_user(ALICE, BOB).await.unwrap());
    chat.send(BOB, text(ALICE, "friends again")).await.unwrap();
    chat.typing(BOB, ALICE).await.unwrap();
    let mut typed = false;
    while let Some(event) = next_event(&mut alice).await {
        typed |= matches!(event, Event::Typing(t) if t.user_id == BOB);
    }
    assert!(typed);
}

#[tokio::test]
async fn blocking_yourself_or_nobody_is_invalid() {
    let chat = ChatService::in_memory();
    for other in [ALICE, UserId::new(0)] {
        let error = chat.block_user(ALICE, other).await.unwrap_err();
        assert!(error.validation_errors().unwrap().has("user_id"), "{error}");
    }
    assert!(chat.unblock_user(ALICE, ALICE).await.is_err());
}

/// Users 1–99 are one team, 100 and up another.
struct SameTeam;

#[async_trait]
impl Policy for SameTeam {
    async fn may_message(&self, sender: UserId, receiver: UserId) -> Result<bool, Error> {
        Ok((sender.get() < 100) == (receiver.get() < 100))
    }

    async fn may_see(&self, watcher: UserId, user: UserId, _: bool) -> Result<bool, Error> {
        self.may_message(watcher, user).await
    }
}

#[tokio::test]
async fn a_host_policy_narrows_who_may_message_whom_and_blocks_still_hold() {
    let chat = ChatService::in_memory().with_policy(Arc::new(SameTeam));
    let outsider = UserId::new(100);
    let refused = forbidden_reason(chat.send(ALICE, text(outsider, "hi")).await);
    let blocked = {
        chat.block_user(BOB, ALICE).await.unwrap();
        forbidden_reason(chat.send(ALICE, text(BOB, "hi")).await)
    };
    assert_eq!(refused, blocked, "a policy refusal reads as a block does");
    chat.send(ALICE, text(CAROL, "same team")).await.unwrap();
    let mut outsiders = chat.subscribe(outsider).await.unwrap();
    chat.typing(ALICE, outsider).await.unwrap();
    assert_eq!(next_event(&mut outsiders).await, None);
}
