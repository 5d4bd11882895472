//! Property tests of the rules: statuses never move back, unread counts match a simple
//! model, and paging in any mode yields every message exactly once.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use chat_core::{
    ChatService, HistoryPosition, HistoryQuery, MessageId, MessageStatus, SendMessage, UserId,
};
use proptest::prelude::*;

const USERS: i64 = 3;

#[derive(Clone, Debug)]
enum Op {
    Send {
        from: i64,
        to: i64,
    },
    Deliver {
        by: i64,
        pick: usize,
    },
    Read {
        by: i64,
        pick: usize,
    },
    ReadUpTo {
        by: i64,
        from: i64,
        pick: Option<usize>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 1..=USERS;
    prop_oneof![
        3 => (user.clone(), user.clone()).prop_map(|(from, to)| Op::Send { from, to }),
        2 => (user.clone(), any::<usize>()).prop_map(|(by, pick)| Op::Deliver { by, pick }),
        2 => (user.clone(), any::<usize>()).prop_map(|(by, pick)| Op::Read { by, pick }),
        1 => (user.clone(), user, proptest::option::of(any::<usize>()))
            .prop_map(|(by, from, pick)| Op::ReadUpTo { by, from, pick }),
    ]
}

struct Model {
    /// id → (sender, receiver, status)
    messages: Vec<(MessageId, i64, i64, MessageStatus)>,
}

impl Model {
    fn pick(&self, pick: usize) -> Option<MessageId> {
        (!self.messages.is_empty()).then(|| self.messages[pick % self.messages.len()].0)
    }

    fn advance(&mut self, id: MessageId, by: i64, to: MessageStatus) {
        for m in &mut self.messages {
            if m.0 == id && m.2 == by && m.3 < to {
                m.3 = to;
            }
        }
    }

    fn unread(&self, receiver: i64, sender: i64) -> u64 {
        self.messages
            .iter()
            .filter(|m| m.1 == sender && m.2 == receiver && m.3 != MessageStatus::Read)
            .count() as u64
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn statuses_are_monotonic_and_unread_counts_match_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        runtime().block_on(async {
            let chat = ChatService::in_memory();
            let mut model = Model { messages: Vec::new() };
            let mut last_seen: HashMap<MessageId, MessageStatus> = HashMap::new();
            for op in ops {
                match op {
                    Op::Send { from, to } => {
                        let result = chat.send(UserId::new(from), SendMessage {
                            receiver_id: UserId::new(to),
                            message: "m".into(),
                            client_message_id: None,
                        }).await;
                        if from == to {
                            prop_assert!(result.is_err());
                        } else {
                            model.messages.push((result.unwrap().message.id, from, to, MessageStatus::Sent));
                        }
                    }
                    Op::Deliver { by, pick } => {
                        if let Some(id) = model.pick(pick) {
                            chat.mark_messages_delivered(UserId::new(by), &[id]).await.unwrap();
                            model.advance(id, by, MessageStatus::Delivered);
                        }
                    }
                    Op::Read { by, pick } => {
                        if let Some(id) = model.pick(pick) {
                            let outcome = chat.mark_message_read(UserId::new(by), id).await;
                            let receiver = model.messages.iter().find(|m| m.0 == id).unwrap().2;
                            prop_assert_eq!(outcome.is_ok(), receiver == by);
                            model.advance(id, by, MessageStatus::Read);
                        }
                    }
                    Op::ReadUpTo { by, from, pick } => {
                        let up_to = pick.and_then(|p| model.pick(p));
                        let result = chat.mark_conversation_read(UserId::new(by), UserId::new(from), up_to).await;
                        if by == from {
                            prop_assert!(result.is_err());
                        } else {
                            let mut expected = 0;
                            for m in &mut model.messages {
                                if m.1 == from && m.2 == by && m.3 != MessageStatus::Read
                                    && up_to.is_none_or(|up| m.0 <= up)
                                {
                                    m.3 = MessageStatus::Read;
                                    expected += 1;
                                }
                            }
                            prop_assert_eq!(result.unwrap(), expected);
                        }
                    }
                }
                // Every stored status equals the model and never went back.
                for &(id, sender, _, status) in &model.messages {
                    let stored = chat.message(UserId::new(sender), id).await.unwrap();
                    prop_assert_eq!(stored.status, status);
                    prop_assert_eq!(stored.read_at.is_some(), status == MessageStatus::Read);
                    prop_assert_eq!(stored.delivered_at.is_some(), status >= MessageStatus::Delivered);
                    let previous = last_seen.insert(id, status).unwrap_or(MessageStatus::Sent);
                    prop_assert!(previous <= status);
                }
                for user in 1..=USERS {
                    let list = chat.conversations(UserId::new(user), None, 100).await.unwrap();
                    let mut total = 0;
                    for c in &list.items {
                        prop_assert_eq!(c.unread_count, model.unread(user, c.counterpart.get()));
                        total += c.unread_count;
                    }
                    prop_assert_eq!(list.total_unread, total);
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn paging_yields_every_message_exactly_once(
        plan in proptest::collection::vec(0u8..4, 0..150),
        size in 1u32..=100,
    ) {
        runtime().block_on(async {
            let chat = ChatService::in_memory();
            let (a, b) = (UserId::new(1), UserId::new(2));
            let mut wanted = Vec::new();
            for step in plan {
                // 0, 1: the pair in either direction; 2, 3: other conversations.
                let (from, to) = match step { 0 => (a, b), 1 => (b, a), 2 => (a, UserId::new(3)), _ => (UserId::new(3), b) };
                let id = chat.send(from, SendMessage { receiver_id: to, message: "p".into(), client_message_id: None })
                    .await.unwrap().message.id;
                if step < 2 { wanted.push(id); }
            }
            let mut newest_first = wanted.clone();
            newest_first.reverse();

            let mut paged = Vec::new();
            let mut page = 1;
            loop {
                let h = chat.history(a, b, HistoryQuery::Page { page, per_page: size }).await.unwrap();
                let HistoryPosition::Page { total, last_page, .. } = h.position else { unreachable!() };
                prop_assert_eq!(total, wanted.len() as u64);
                if h.messages.is_empty() { prop_assert!(u64::from(page) > last_page || total == 0); break; }
                paged.extend(h.messages.iter().map(|m| m.id));
                page += 1;
            }
            prop_assert_eq!(&paged, &newest_first);

            let mut before = Vec::new();
            let mut cursor = None;
            loop {
                let h = chat.history(b, a, HistoryQuery::Before { before_id: cursor, limit: size }).await.unwrap();
                let HistoryPosition::Cursor { has_more, .. } = h.position else { unreachable!() };
                before.extend(h.messages.iter().map(|m| m.id));
                if !has_more { break; }
                cursor = h.messages.last().map(|m| m.id);
            }
            prop_assert_eq!(&before, &newest_first);

            let mut after = Vec::new();
            let mut cursor = MessageId::new(0);
            loop {
                let h = chat.history(a, b, HistoryQuery::After { after_id: cursor, limit: size }).await.unwrap();
                let HistoryPosition::Cursor { has_more, .. } = h.position else { unreachable!() };
                after.extend(h.messages.iter().map(|m| m.id));
                match h.messages.last() { Some(m) if has_more => cursor = m.id, _ => break }
            }
            prop_assert_eq!(&after, &wanted);
            Ok(())
        })?;
    }
}
