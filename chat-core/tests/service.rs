//! `ChatService` rules through its public API, on the in-memory adapters.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::testing::Faults;
use chat_core::{
    ChatConfig, ChatService, Error, Event, EventStream, FeedEntry, GovernorRateLimiter,
    HistoryPosition, HistoryQuery, InMemoryRepository, InProcessNotifier, Layered, MessageId,
    MessageRepository, MessageStatus, Notice, Notifier, SendAttempt, SendFailure, SendMessage,
    UserId, ValidationCode,
};
use futures_util::StreamExt;

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);
const CAROL: UserId = UserId::new(3);

fn text(receiver: UserId, message: &str) -> SendMessage {
    SendMessage {
        receiver_id: receiver,
        message: message.to_owned(),
        client_message_id: None,
    }
}

fn keyed(receiver: UserId, message: &str, key: &str) -> SendMessage {
    SendMessage {
        client_message_id: Some(key.to_owned()),
        ..text(receiver, message)
    }
}

fn fields(error: &Error) -> Vec<(&str, ValidationCode)> {
    error
        .validation_errors()
        .unwrap_or_else(|| panic!("expected a validation error, got {error:?}"))
        .errors()
        .iter()
        .map(|e| (e.field.as_ref(), e.code))
        .collect()
}

#[tokio::test]
async fn send_trims_and_stores() {
    let chat = ChatService::in_memory();
    let sent = chat.send(ALICE, text(BOB, "  hello \n")).await.unwrap();
    assert!(!sent.replay);
    assert_eq!(sent.message.message, "hello");
    assert_eq!(sent.message.status, MessageStatus::Sent);
    assert_eq!(
        chat.message(BOB, sent.message.id).await.unwrap(),
        sent.message
    );
}

#[tokio::test]
async fn bad_send_input_names_each_field() {
    let chat = ChatService::in_memory();
    let cases: Vec<(SendMessage, Vec<(&str, ValidationCode)>)> = vec![
        (
            text(BOB, "   \t\n"),
            vec![("message", ValidationCode::Required)],
        ),
        (text(BOB, ""), vec![("message", ValidationCode::Required)]),
        (
            text(ALICE, "hi"),
            vec![("receiver_id", ValidationCode::SelfReference)],
        ),
        (
            text(UserId::new(0), "hi"),
            vec![("receiver_id", ValidationCode::OutOfRange)],
        ),
        (
            text(UserId::new(-5), "hi"),
            vec![("receiver_id", ValidationCode::OutOfRange)],
        ),
        (
            text(BOB, "nul\0byte"),
            vec![("message", ValidationCode::InvalidFormat)],
        ),
        (
            keyed(BOB, "hi", ""),
            vec![("client_message_id", ValidationCode::Required)],
        ),
        (
            keyed(BOB, "hi", &"a".repeat(65)),
            vec![("client_message_id", ValidationCode::TooLong)],
        ),
        (
            keyed(BOB, "hi", "has space"),
            vec![("client_message_id", ValidationCode::InvalidFormat)],
        ),
        (
            keyed(BOB, "hi", "é"),
            vec![("client_message_id", ValidationCode::InvalidFormat)],
        ),
        (
            keyed(UserId::new(0), " ", "x y"),
            vec![
                ("receiver_id", ValidationCode::OutOfRange),
                ("message", ValidationCode::Required),
                ("client_message_id", ValidationCode::InvalidFormat),
            ],
        ),
    ];
    for (input, expected) in cases {
        let error = chat.send(ALICE, input.clone()).await.unwrap_err();
        assert_eq!(fields(&error), expected, "input {input:?}");
    }
    let error = chat.send(ALICE, text(ALICE, "")).await.unwrap_err();
    let by_field: Vec<&str> = error
        .validation_errors()
        .unwrap()
        .by_field()
        .into_keys()
        .collect();
    assert_eq!(by_field, vec!["message", "receiver_id"]);
    // Nothing was stored by any of them.
    assert_eq!(chat.unread_total(BOB).await.unwrap(), 0);
}

#[tokio::test]
async fn message_length_counts_characters_not_bytes() {
    let chat =
        ChatService::in_memory().with_config(ChatConfig::default().with_max_message_chars(5));
    chat.send(ALICE, text(BOB, "ééééé")).await.unwrap();
    chat.send(ALICE, text(BOB, "🎉🎉🎉🎉🎉")).await.unwrap();
    chat.send(ALICE, text(BOB, "  abcde  ")).await.unwrap();
    let error = chat.send(ALICE, text(BOB, "abcdef")).await.unwrap_err();
    assert_eq!(fields(&error), vec![("message", ValidationCode::TooLong)]);
    // The default allows 4000 characters and refuses 4001.
    let chat = ChatService::in_memory();
    chat.send(ALICE, text(BOB, &"ü".repeat(4000)))
        .await
        .unwrap();
    let error = chat
        .send(ALICE, text(BOB, &"ü".repeat(4001)))
        .await
        .unwrap_err();
    assert_eq!(fields(&error), vec![("message", ValidationCode::TooLong)]);
    let valid_key = "A-z0.9_:".repeat(8);
    chat.send(ALICE, keyed(BOB, "ok", &valid_key))
        .await
        .unwrap();
}

#[tokio::test]
async fn idempotent_send_replays_and_conflicts() {
    let chat = ChatService::in_memory();
    let mut bob_events = chat.subscribe(BOB).await.unwrap();
    let first = chat
        .send(ALICE, keyed(BOB, "pay rent", "k-1"))
        .await
        .unwrap();
    assert!(!first.replay);
    // Same content (after trimming): the original, flagged as a replay.
    let replay = chat
        .send(ALICE, keyed(BOB, " pay rent ", "k-1"))
        .await
        .unwrap();
    assert!(replay.replay);
    assert_eq!(replay.message, first.message);
    // Other text or another receiver under the same key: a conflict.
    for input in [
        keyed(BOB, "pay more rent", "k-1"),
        keyed(CAROL, "pay rent", "k-1"),
    ] {
        assert!(matches!(
            chat.send(ALICE, input).await,
            Err(Error::Conflict { .. })
        ));
    }
    // Another sender may use the same key.
    assert!(
        !chat
            .send(CAROL, keyed(BOB, "pay rent", "k-1"))
            .await
            .unwrap()
            .replay
    );
    // Bob heard of two messages, not of the replay.
    let mut ids = Vec::new();
    while let Ok(Some(Notice::Event(Event::Message(m)))) =
        tokio::time::timeout(Duration::from_millis(50), bob_events.next()).await
    {
        ids.push(m.id);
    }
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], first.message.id);
}

#[tokio::test]
async fn only_participants_see_a_message() {
    let chat = ChatService::in_memory();
    let sent = chat.send(ALICE, text(BOB, "secret")).await.unwrap().message;
    assert_eq!(chat.message(ALICE, sent.id).await.unwrap(), sent);
    assert_eq!(chat.message(BOB, sent.id).await.unwrap(), sent);
    for (caller, id) in [(CAROL, sent.id), (ALICE, MessageId::new(999))] {
        assert!(matches!(
            chat.message(caller, id).await,
            Err(Error::NotFound { what: "message" })
        ));
    }
    let error = chat.message(ALICE, MessageId::new(0)).await.unwrap_err();
    assert_eq!(
        fields(&error),
        vec![("message_id", ValidationCode::OutOfRange)]
    );
    // Carol sees nothing of their conversation.
    let history = chat
        .history(
            CAROL,
            ALICE,
            HistoryQuery::Page {
                page: 1,
                per_page: 50,
            },
        )
        .await
        .unwrap();
    assert!(history.messages.is_empty());
}

#[tokio::test]
async fn only_the_receiver_marks_read() {
    let chat = ChatService::in_memory();
    let sent = chat.send(ALICE, text(BOB, "hi")).await.unwrap().message;
    assert!(matches!(
        chat.mark_message_read(ALICE, sent.id).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        chat.mark_message_read(CAROL, sent.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        chat.mark_message_read(BOB, MessageId::new(12345)).await,
        Err(Error::NotFound { .. })
    ));
    // Neither the sender nor a stranger can move it by id batches or up-to either.
    assert!(
        chat.mark_messages_delivered(ALICE, &[sent.id])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        chat.mark_messages_read(CAROL, &[sent.id])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        chat.mark_conversation_read(CAROL, ALICE, None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        chat.message(BOB, sent.id).await.unwrap().status,
        MessageStatus::Sent
    );

    let read = chat.mark_message_read(BOB, sent.id).await.unwrap();
    assert_eq!(read.status, MessageStatus::Read);
    assert!(read.delivered_at.is_some() && read.read_at.is_some());
    // Idempotent: the same answer again.
    assert_eq!(chat.mark_message_read(BOB, sent.id).await.unwrap(), read);
}

#[tokio::test]
async fn receipts_reach_the_sender_after_each_change() {
    let chat = ChatService::in_memory();
    let mut alice_events = chat.subscribe(ALICE).await.unwrap();
    let first = chat.send(ALICE, text(BOB, "one")).await.unwrap().message;
    let second = chat.send(ALICE, text(BOB, "two")).await.unwrap().message;
    let third = chat.send(ALICE, text(BOB, "three")).await.unwrap().message;
    chat.mark_messages_delivered(BOB, &[first.id, second.id])
        .await
        .unwrap();
    chat.mark_message_read(BOB, first.id).await.unwrap();
    assert_eq!(
        chat.mark_conversation_read(BOB, ALICE, Some(second.id))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        chat.mark_conversation_read(BOB, ALICE, None).await.unwrap(),
        1
    );

    let mut receipts = Vec::new();
    while let Ok(Some(notice)) =
        tokio::time::timeout(Duration::from_millis(50), alice_events.next()).await
    {
        if let Notice::Event(Event::Receipt(r)) = notice {
            assert_eq!((r.sender_id, r.receiver_id), (ALICE, BOB));
            receipts.push((r.id, r.status));
        }
    }
    assert_eq!(
        receipts,
        vec![
            (first.id, MessageStatus::Delivered),
            (second.id, MessageStatus::Delivered),
            (first.id, MessageStatus::Read),
            (second.id, MessageStatus::Read),
            (third.id, MessageStatus::Read),
        ]
    );
}

#[tokio::test]
async fn history_validates_and_reports_position() {
    let chat = ChatService::in_memory();
    for i in 0..5 {
        chat.send(ALICE, text(BOB, &format!("m{i}"))).await.unwrap();
    }
    let page = chat
        .history(
            ALICE,
            BOB,
            HistoryQuery::Page {
                page: 2,
                per_page: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.position,
        HistoryPosition::Page {
            current_page: 2,
            per_page: 2,
            last_page: 3,
            total: 5,
            from: Some(3),
            to: Some(4)
        }
    );
    let beyond = chat
        .history(
            ALICE,
            BOB,
            HistoryQuery::Page {
                page: 9,
                per_page: 2,
            },
        )
        .await
        .unwrap();
    assert!(beyond.messages.is_empty());
    assert!(matches!(
        beyond.position,
        HistoryPosition::Page {
            from: None,
            to: None,
            ..
        }
    ));
    let latest = chat
        .history(
            BOB,
            ALICE,
            HistoryQuery::Before {
                before_id: None,
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        latest.position,
        HistoryPosition::Cursor {
            limit: 3,
            has_more: true
        }
    );
    let all = chat
        .history(
            BOB,
            ALICE,
            HistoryQuery::After {
                after_id: MessageId::new(0),
                limit: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        all.position,
        HistoryPosition::Cursor {
            limit: 5,
            has_more: false
        }
    );

    let invalid = [
        (
            HistoryQuery::Page {
                page: 0,
                per_page: 10,
            },
            "page",
        ),
        (
            HistoryQuery::Page {
                page: 1,
                per_page: 0,
            },
            "per_page",
        ),
        (
            HistoryQuery::Page {
                page: 1,
                per_page: 101,
            },
            "per_page",
        ),
        (
            HistoryQuery::Before {
                before_id: Some(MessageId::new(0)),
                limit: 10,
            },
            "before_id",
        ),
        (
            HistoryQuery::Before {
                before_id: None,
                limit: 101,
            },
            "limit",
        ),
        (
            HistoryQuery::After {
                after_id: MessageId::new(-1),
                limit: 10,
            },
            "after_id",
        ),
        (
            HistoryQuery::After {
                after_id: MessageId::new(0),
                limit: 0,
            },
            "limit",
        ),
    ];
    for (query, field) in invalid {
        let error = chat.history(ALICE, BOB, query).await.unwrap_err();
        assert_eq!(fields(&error)[0].0, field, "query {query:?}");
    }
    let error = chat
        .history(
            ALICE,
            ALICE,
            HistoryQuery::Before {
                before_id: None,
                limit: 1,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        fields(&error),
        vec![("user_id", ValidationCode::SelfReference)]
    );
    // Page numbers far beyond the data do not overflow.
    let far = chat
        .history(
            ALICE,
            BOB,
            HistoryQuery::Page {
                page: u32::MAX,
                per_page: 100,
            },
        )
        .await
        .unwrap();
    assert!(far.messages.is_empty());
}

#[tokio::test]
async fn batches_and_conversation_read_validate_ids() {
    let chat = ChatService::in_memory().with_config(ChatConfig::default().with_max_batch_ids(3));
    let error = chat.mark_messages_delivered(BOB, &[]).await.unwrap_err();
    assert_eq!(fields(&error), vec![("ids", ValidationCode::Required)]);
    let four = [1, 2, 3, 4].map(MessageId::new);
    let error = chat.mark_messages_read(BOB, &four).await.unwrap_err();
    assert_eq!(fields(&error), vec![("ids", ValidationCode::TooLong)]);
    let error = chat
        .mark_messages_read(BOB, &[MessageId::new(0)])
        .await
        .unwrap_err();
    assert_eq!(fields(&error), vec![("ids", ValidationCode::OutOfRange)]);
    let error = chat
        .mark_conversation_read(BOB, BOB, Some(MessageId::new(0)))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&error),
        vec![
            ("user_id", ValidationCode::SelfReference),
            ("up_to_id", ValidationCode::OutOfRange)
        ]
    );
}

#[tokio::test]
async fn conversations_page_and_count_unread() {
    let chat = ChatService::in_memory();
    for peer in 2..=6 {
        chat.send(UserId::new(peer), text(ALICE, "hi"))
            .await
            .unwrap();
    }
    let first = chat.conversations(ALICE, None, 2).await.unwrap();
    assert_eq!(first.total_unread, 5);
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.items[0].counterpart, UserId::new(6));
    let mut seen: Vec<i64> = first.items.iter().map(|c| c.counterpart.get()).collect();
    let mut before = first.next_before;
    while let Some(cursor) = before {
        let page = chat.conversations(ALICE, Some(cursor), 2).await.unwrap();
        seen.extend(page.items.iter().map(|c| c.counterpart.get()));
        before = page.next_before;
    }
    assert_eq!(seen, vec![6, 5, 4, 3, 2]);
    let error = chat.conversations(ALICE, None, 0).await.unwrap_err();
    assert_eq!(fields(&error), vec![("limit", ValidationCode::OutOfRange)]);
}

#[tokio::test]
async fn send_rate_limit_is_per_sender() {
    let limiter = Arc::new(GovernorRateLimiter::per_minute(
        NonZeroU32::new(60).unwrap(),
        NonZeroU32::new(2).unwrap(),
    ));
    let chat = ChatService::in_memory().with_send_limiter(limiter);
    chat.send(ALICE, text(BOB, "1")).await.unwrap();
    chat.send(ALICE, text(BOB, "2")).await.unwrap();
    match chat.send(ALICE, text(BOB, "3")).await {
        Err(Error::RateLimited { retry_after, limit }) => {
            assert_eq!(limit, 2);
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    // Every attempt counts, also an invalid one, and the status reports what is left.
    let chat = ChatService::in_memory().with_send_limiter(Arc::new(
        GovernorRateLimiter::per_minute(NonZeroU32::new(60).unwrap(), NonZeroU32::new(3).unwrap()),
    ));
    let attempt = |input| chat.attempt_send(ALICE, Ok::<_, ()>(input));
    let SendAttempt {
        allowance: status,
        result,
    } = attempt(text(BOB, " ")).await;
    assert!(result.is_err());
    assert_eq!(
        status.map(|s| (s.limit, s.remaining, s.retry_after)),
        Some((3, 2, None))
    );
    let SendAttempt {
        allowance: status,
        result,
    } = attempt(text(BOB, "ok")).await;
    assert!(result.is_ok());
    assert_eq!(status.map(|s| s.remaining), Some(1));
    chat.send(ALICE, text(BOB, "ok")).await.unwrap();
    let SendAttempt {
        allowance: status,
        result,
    } = attempt(text(BOB, "refused")).await;
    assert!(matches!(
        result,
        Err(SendFailure::Chat(Error::RateLimited { limit: 3, .. }))
    ));
    let status = status.unwrap();
    assert_eq!((status.remaining, status.retry_after.is_some()), (0, true));
    // A request the transport could not parse spends allowance too, and is refused
    // by the limit before its own error is reported.
    let limited = ChatService::in_memory().with_send_limiter(Arc::new(
        GovernorRateLimiter::per_minute(NonZeroU32::new(60).unwrap(), NonZeroU32::new(1).unwrap()),
    ));
    let first = limited
        .attempt_send(ALICE, Err::<SendMessage, _>("malformed"))
        .await;
    assert!(matches!(
        first.result,
        Err(SendFailure::Rejected("malformed"))
    ));
    assert_eq!(first.allowance.map(|s| s.remaining), Some(0));
    let second = limited
        .attempt_send(ALICE, Ok::<_, ()>(text(BOB, "valid")))
        .await;
    assert!(matches!(
        second.result,
        Err(SendFailure::Chat(Error::RateLimited { .. }))
    ));
    // Without a limiter there is no status.
    let none = ChatService::in_memory()
        .attempt_send(ALICE, Ok::<_, ()>(text(BOB, "x")))
        .await;
    assert_eq!(none.allowance, None);
}

#[tokio::test]
async fn refused_sends_store_nothing() {
    let limiter = Arc::new(GovernorRateLimiter::per_minute(
        NonZeroU32::new(60).unwrap(),
        NonZeroU32::new(2).unwrap(),
    ));
    let chat = ChatService::in_memory().with_send_limiter(limiter);
    chat.send(ALICE, text(BOB, "1")).await.unwrap();
    chat.send(ALICE, text(BOB, "2")).await.unwrap();
    assert!(chat.send(ALICE, text(BOB, "3")).await.is_err());
    // Bob has his own allowance, and the refused send stored nothing.
    chat.send(BOB, text(ALICE, "mine")).await.unwrap();
    assert_eq!(chat.unread_total(BOB).await.unwrap(), 2);
}

#[tokio::test]
async fn typing_reaches_the_receiver_only() {
    let chat = ChatService::in_memory();
    let mut bob = chat.subscribe(BOB).await.unwrap();
    let mut carol = chat.subscribe(CAROL).await.unwrap();
    chat.typing(ALICE, BOB).await.unwrap();
    match bob.next().await {
        Some(Notice::Event(Event::Typing(t))) => assert_eq!(t.user_id, ALICE),
        other => panic!("expected typing, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(50), carol.next())
            .await
            .is_err()
    );
    assert!(chat.typing(ALICE, ALICE).await.is_err());
}

#[tokio::test]
async fn backlog_calls_validate_their_bounds() {
    let chat = ChatService::in_memory();
    let sent = chat.send(ALICE, text(BOB, "queued")).await.unwrap().message;
    assert_eq!(
        chat.undelivered(BOB, MessageId::new(0), 1000)
            .await
            .unwrap(),
        vec![sent.clone()]
    );
    assert_eq!(
        chat.feed_after(ALICE, MessageId::new(0), 10).await.unwrap(),
        vec![FeedEntry::New(sent)]
    );
    let error = chat
        .undelivered(BOB, MessageId::new(0), 1001)
        .await
        .unwrap_err();
    assert_eq!(fields(&error), vec![("limit", ValidationCode::OutOfRange)]);
    let error = chat
        .feed_after(BOB, MessageId::new(-1), 10)
        .await
        .unwrap_err();
    assert_eq!(
        fields(&error),
        vec![("after_id", ValidationCode::OutOfRange)]
    );
}

/// A notifier that checks, at each publication, that the message is already in the store.
struct StoreCheckingNotifier {
    store: Arc<InMemoryRepository>,
    inner: InProcessNotifier,
    published: Mutex<Vec<MessageId>>,
}

#[async_trait]
impl Notifier for StoreCheckingNotifier {
    async fn publish(&self, user: UserId, event: Event) -> Result<(), Error> {
        if let Event::Message(m) = &event {
            assert!(
                self.store.get(m.id).await.unwrap().is_some(),
                "published before stored"
            );
            self.published.lock().unwrap().push(m.id);
        }
        self.inner.publish(user, event).await
    }

    async fn subscribe(&self, user: UserId) -> Result<EventStream, Error> {
        self.inner.subscribe(user).await
    }
}

#[tokio::test]
async fn events_are_published_only_after_the_store_committed() {
    let store = Arc::new(InMemoryRepository::new());
    let notifier = Arc::new(StoreCheckingNotifier {
        store: Arc::clone(&store),
        inner: InProcessNotifier::new(),
        published: Mutex::new(Vec::new()),
    });
    let chat = ChatService::new(store, notifier.clone());
    let sent = chat.send(ALICE, text(BOB, "hi")).await.unwrap().message;
    // Once for the receiver, once for the sender's other devices.
    assert_eq!(*notifier.published.lock().unwrap(), vec![sent.id, sent.id]);

    let store = Layered::new(Arc::new(InMemoryRepository::new()), Faults::default());
    store.layer().fail_all();
    let down = ChatService::new(Arc::new(store), notifier.clone());
    let mut events = down.subscribe(BOB).await.unwrap();
    assert!(matches!(
        down.send(ALICE, text(BOB, "lost?")).await,
        Err(Error::Unavailable { .. })
    ));
    let readiness = down.readiness().await;
    assert!(matches!(readiness.store, Err(Error::Unavailable { .. })));
    assert!(readiness.bus.is_ok() && !readiness.is_ready());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), events.next())
            .await
            .is_err()
    );
    assert_eq!(notifier.published.lock().unwrap().len(), 2);
}
