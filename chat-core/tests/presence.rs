//! Presence as users see each other through `ChatService`: online with a grace, last
//! seen kept in the store, hidden from strangers and across blocks, and news of
//! changes for watchers.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    Admission, Broadcasted, ChatConfig, ChatService, Error, InMemoryRepository, InProcessNotifier,
    MessageRepository, Policy, SendMessage, UserId, UserPresence, async_trait,
};
use futures_util::StreamExt;

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);
const CAROL: UserId = UserId::new(3);

fn chat_on(repository: Arc<dyn MessageRepository>, grace: Duration) -> ChatService {
    ChatService::new(repository, Arc::new(InProcessNotifier::new()))
        .with_config(ChatConfig::default().with_presence_grace(grace))
}

async fn talk(chat: &ChatService, a: UserId, b: UserId) {
    let hello = SendMessage {
        receiver_id: b,
        message: "hi".to_owned(),
        client_message_id: None,
    };
    chat.send(a, hello).await.unwrap();
}

async fn seat(chat: &ChatService, user: UserId) -> chat_core::Seat {
    match chat.admit(user, 5).await {
        Admission::Seated(seat) => seat,
        other => panic!("not seated: {other:?}"),
    }
}

async fn one(chat: &ChatService, caller: UserId, user: UserId) -> UserPresence {
    chat.presence_of(caller, &[user]).await.unwrap()[0]
}

#[tokio::test]
async fn online_while_connected_then_last_seen_survives_a_restart() {
    let store: Arc<dyn MessageRepository> = Arc::new(InMemoryRepository::new());
    let chat = chat_on(Arc::clone(&store), Duration::ZERO);
    talk(&chat, ALICE, BOB).await;
    assert_eq!(
        one(&chat, ALICE, BOB).await,
        UserPresence {
            user_id: BOB,
            online: false,
            last_seen_at: None
        }
    );
    let phone = seat(&chat, BOB).await;
    let laptop = seat(&chat, BOB).await;
    assert!(one(&chat, ALICE, BOB).await.online);
    chat.release(phone).await;
    chat.settle_presence(BOB).await;
    assert!(one(&chat, ALICE, BOB).await.online, "one device is left");
    chat.release(laptop).await;
    chat.settle_presence(BOB).await;
    let gone = one(&chat, ALICE, BOB).await;
    assert!(!gone.online);
    let seen = gone.last_seen_at.expect("a last-seen time");
    // A new process on the same store: presence starts empty, last seen stays.
    let restarted = chat_on(store, Duration::ZERO);
    assert_eq!(one(&restarted, ALICE, BOB).await.last_seen_at, Some(seen));
    assert!(!one(&restarted, ALICE, BOB).await.online);
}

#[tokio::test]
async fn a_reconnecting_phone_stays_online_through_the_grace() {
    let chat = chat_on(Arc::new(InMemoryRepository::new()), Duration::from_secs(5));
    talk(&chat, ALICE, BOB).await;
    let phone = seat(&chat, BOB).await;
    chat.release(phone).await;
    assert!(one(&chat, ALICE, BOB).await.online, "within the grace");
    let again = seat(&chat, BOB).await;
    chat.settle_presence(BOB).await;
    assert!(one(&chat, ALICE, BOB).await.online);
    chat.release(again).await;
    let quick = chat_on(Arc::new(InMemoryRepository::new()), Duration::ZERO);
    talk(&quick, ALICE, BOB).await;
    let phone = seat(&quick, BOB).await;
    quick.release(phone).await;
    assert!(!one(&quick, ALICE, BOB).await.online, "no grace");
}

#[tokio::test]
async fn strangers_and_blocked_users_look_offline_and_never_seen() {
    let chat = chat_on(Arc::new(InMemoryRepository::new()), Duration::ZERO);
    talk(&chat, ALICE, BOB).await;
    let _bob = seat(&chat, BOB).await;
    // Carol never talked with Bob.
    let hidden = UserPresence {
        user_id: BOB,
        online: false,
        last_seen_at: None,
    };
    assert_eq!(one(&chat, CAROL, BOB).await, hidden);
    assert!(one(&chat, ALICE, BOB).await.online);
    chat.block_user(BOB, ALICE).await.unwrap();
    assert_eq!(one(&chat, ALICE, BOB).await, hidden);
    let list = chat.conversations(ALICE, None, 10).await.unwrap();
    assert_eq!(list.presence, vec![hidden]);
    chat.unblock_user(BOB, ALICE).await.unwrap();
    let list = chat.conversations(ALICE, None, 10).await.unwrap();
    assert!(list.presence[0].online);
    // Answers come in order, repeats included; the caller itself is nobody to watch.
    let many = chat.presence_of(ALICE, &[CAROL, BOB, BOB]).await.unwrap();
    let online: Vec<bool> = many.iter().map(|p| p.online).collect();
    assert_eq!(online, [false, true, true]);
}

#[tokio::test]
async fn lookups_are_bounded() {
    let chat = ChatService::in_memory();
    let many: Vec<UserId> = (2..=102).map(UserId::new).collect();
    for users in [&[][..], &many[..], &[UserId::new(0)][..]] {
        let error = chat.presence_of(ALICE, users).await.unwrap_err();
        assert!(
            error.validation_errors().unwrap().has("user_ids"),
            "{error}"
        );
    }
    assert_eq!(
        chat.presence_of(ALICE, &many[..100]).await.unwrap().len(),
        100
    );
}

/// Everyone in one company sees everyone's presence.
struct Company;

#[async_trait]
impl Policy for Company {
    async fn may_message(&self, _: UserId, _: UserId) -> Result<bool, Error> {
        Ok(true)
    }

    async fn may_see(&self, _: UserId, _: UserId, _: bool) -> Result<bool, Error> {
        Ok(true)
    }
}

#[tokio::test]
async fn a_policy_may_show_presence_beyond_conversations_but_not_across_blocks() {
    let chat =
        chat_on(Arc::new(InMemoryRepository::new()), Duration::ZERO).with_policy(Arc::new(Company));
    let _bob = seat(&chat, BOB).await;
    assert!(one(&chat, CAROL, BOB).await.online);
    chat.block_user(CAROL, BOB).await.unwrap();
    assert!(!one(&chat, CAROL, BOB).await.online);
}

#[tokio::test]
async fn watchers_hear_news_of_joins_and_settled_departures() {
    let chat = chat_on(Arc::new(InMemoryRepository::new()), Duration::ZERO);
    let mut news = chat.presence_changes().await.unwrap();
    let phone = seat(&chat, BOB).await;
    let heard = |item: Option<Broadcasted>| match item {
        Some(Broadcasted::Payload(payload)) => ChatService::presence_news_user(&payload),
        other => panic!("no news: {other:?}"),
    };
    assert_eq!(heard(news.next().await), Some(BOB));
    chat.release(phone).await;
    chat.settle_presence(BOB).await;
    assert_eq!(heard(news.next().await), Some(BOB));
    assert_eq!(ChatService::presence_news_user(b"nonsense"), None);
}
