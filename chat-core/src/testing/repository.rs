//! The `MessageRepository` conformance cases. Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;

use futures_util::future::join_all;

use super::{at, keyed_record, record};
use crate::ids::{MessageId, UserId};
use crate::message::{FeedEntry, Message, MessageStatus};
use crate::ports::MessageRepository;

fn u(id: i64) -> UserId {
    UserId::new(id)
}

fn m(id: i64) -> MessageId {
    MessageId::new(id)
}

fn id_list(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

/// The positions of a feed page of new messages only.
fn positions(entries: &[FeedEntry]) -> Vec<MessageId> {
    entries
        .iter()
        .map(|entry| {
            assert!(matches!(entry, FeedEntry::New(_)), "{entry:?}");
            entry.position()
        })
        .collect()
}

/// Inserts `count` messages alternating between `a → b` and `b → a`; returns their ids.
async fn conversation(
    repo: &dyn MessageRepository,
    a: i64,
    b: i64,
    count: usize,
) -> Vec<MessageId> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let inserted = repo
            .insert(record(from, to, &format!("message {i} of {a}-{b}")))
            .await
            .unwrap();
        out.push(inserted.message.id);
    }
    out
}

pub async fn insert_then_get_round_trip(repo: &dyn MessageRepository) {
    let new = keyed_record(1, 2, "hello", "client-1");
    let inserted = repo.insert(new.clone()).await.unwrap();
    assert!(inserted.created);
    let stored = inserted.message;
    assert!(stored.id.get() >= 1);
    assert_eq!(stored.sender_id, u(1));
    assert_eq!(stored.receiver_id, u(2));
    assert_eq!(stored.message, "hello");
    assert_eq!(stored.status, MessageStatus::Sent);
    assert_eq!(stored.client_message_id.as_deref(), Some("client-1"));
    assert_eq!(stored.created_at, new.created_at);
    assert_eq!(stored.updated_at, new.created_at);
    assert_eq!(stored.delivered_at, None);
    assert_eq!(stored.read_at, None);
    assert_eq!(stored.edited_at, None);
    assert_eq!(stored.deleted_at, None);
    assert_eq!(repo.get(stored.id).await.unwrap(), Some(stored));
}

pub async fn get_unknown_is_none(repo: &dyn MessageRepository) {
    assert_eq!(repo.get(m(1)).await.unwrap(), None);
    let id = repo.insert(record(1, 2, "x")).await.unwrap().message.id;
    assert_eq!(repo.get(m(id.get() + 1)).await.unwrap(), None);
    assert_eq!(repo.get(m(i64::MAX)).await.unwrap(), None);
}

pub async fn ids_ascend_in_insert_order(repo: &dyn MessageRepository) {
    let ids = conversation(repo, 1, 2, 20).await;
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not ascending: {ids:?}"
    );
}

pub async fn idempotent_insert_returns_original(repo: &dyn MessageRepository) {
    let first = repo
        .insert(keyed_record(1, 2, "once", "k-1"))
        .await
        .unwrap();
    assert!(first.created);
    // Same key, other content: the store returns the original and changes nothing; the
    // service decides whether that is a replay or a conflict.
    for text in ["once", "something else"] {
        let again = repo.insert(keyed_record(1, 2, text, "k-1")).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.message, first.message);
    }
    let history = repo.history_page(u(1), u(2), 0, 100).await.unwrap();
    assert_eq!(history.total, 1);
    // Without a key, equal content makes a new message each time.
    let a = repo.insert(record(1, 2, "plain")).await.unwrap();
    let b = repo.insert(record(1, 2, "plain")).await.unwrap();
    assert!(a.created && b.created && a.message.id != b.message.id);
}

pub async fn idempotency_key_is_per_sender(repo: &dyn MessageRepository) {
    let a = repo
        .insert(keyed_record(1, 2, "hi", "same-key"))
        .await
        .unwrap();
    let b = repo
        .insert(keyed_record(2, 1, "hi", "same-key"))
        .await
        .unwrap();
    let c = repo
        .insert(keyed_record(3, 1, "hi", "same-key"))
        .await
        .unwrap();
    assert!(a.created && b.created && c.created);
    let distinct: HashSet<_> = [a.message.id, b.message.id, c.message.id].into();
    assert_eq!(distinct.len(), 3);
}

pub async fn concurrent_duplicate_inserts_make_one_row(repo: &dyn MessageRepository) {
    let attempts = join_all((0..32).map(|_| repo.insert(keyed_record(7, 8, "dup", "race")))).await;
    let attempts: Vec<_> = attempts.into_iter().map(Result::unwrap).collect();
    assert_eq!(attempts.iter().filter(|i| i.created).count(), 1);
    let first = &attempts[0].message;
    assert!(attempts.iter().all(|i| i.message.id == first.id));
    let history = repo.history_page(u(7), u(8), 0, 100).await.unwrap();
    assert_eq!(history.total, 1);
    assert_eq!(history.messages.len(), 1);
}

pub async fn concurrent_inserts_are_all_stored(repo: &dyn MessageRepository) {
    let inserted =
        join_all((0..200).map(|i| repo.insert(record(1 + i % 4, 10, &format!("c{i}"))))).await;
    let ids: HashSet<MessageId> = inserted
        .into_iter()
        .map(|r| r.unwrap().message.id)
        .collect();
    assert_eq!(ids.len(), 200);
    for id in &ids {
        assert!(repo.get(*id).await.unwrap().is_some());
    }
}

pub async fn history_page_is_newest_first_with_total(repo: &dyn MessageRepository) {
    let ids = conversation(repo, 1, 2, 7).await;
    let page = repo.history_page(u(2), u(1), 0, 3).await.unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(id_list(&page.messages), vec![ids[6], ids[5], ids[4]]);
    let last = repo.history_page(u(1), u(2), 6, 3).await.unwrap();
    assert_eq!(id_list(&last.messages), vec![ids[0]]);
    assert_eq!(last.total, 7);
    let beyond = repo.history_page(u(1), u(2), 30, 3).await.unwrap();
    assert!(beyond.messages.is_empty());
    assert_eq!(beyond.total, 7);
    let empty = repo.history_page(u(1), u(3), 0, 3).await.unwrap();
    assert_eq!((empty.messages.len(), empty.total), (0, 0));
}

/// Other conversations interleaved with the one under test.
async fn noisy_conversation(repo: &dyn MessageRepository, count: usize) -> Vec<MessageId> {
    let mut wanted = Vec::new();
    for i in 0..count {
        let (from, to) = if i % 3 == 0 { (2, 1) } else { (1, 2) };
        wanted.push(
            repo.insert(record(from, to, &format!("w{i}")))
                .await
                .unwrap()
                .message
                .id,
        );
        repo.insert(record(1, 3, "noise")).await.unwrap();
        repo.insert(record(4, 2, "noise")).await.unwrap();
    }
    wanted
}

pub async fn history_pages_cover_every_message_once(repo: &dyn MessageRepository) {
    let mut wanted = noisy_conversation(repo, 23).await;
    wanted.reverse();
    for per_page in [1u32, 5, 7, 23, 100] {
        let mut seen = Vec::new();
        let mut offset = 0u64;
        loop {
            let page = repo
                .history_page(u(1), u(2), offset, per_page)
                .await
                .unwrap();
            assert_eq!(page.total, 23);
            if page.messages.is_empty() {
                break;
            }
            seen.extend(id_list(&page.messages));
            offset += u64::from(per_page);
        }
        assert_eq!(seen, wanted, "per_page {per_page}");
    }
}

pub async fn history_before_covers_every_message_once(repo: &dyn MessageRepository) {
    let mut wanted = noisy_conversation(repo, 23).await;
    wanted.reverse();
    for limit in [1u32, 4, 23, 100] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = repo
                .history_before(u(2), u(1), before, limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize);
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            seen.extend(id_list(&page));
        }
        assert_eq!(seen, wanted, "limit {limit}");
    }
}

pub async fn history_after_is_in_id_order(repo: &dyn MessageRepository) {
    let wanted = noisy_conversation(repo, 23).await;
    for limit in [1u32, 6, 100] {
        let mut seen = Vec::new();
        let mut after = m(0);
        loop {
            let page = repo.history_after(u(1), u(2), after, limit).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            seen.extend(id_list(&page));
        }
        assert_eq!(seen, wanted, "limit {limit}");
    }
    let from_middle = repo
        .history_after(u(1), u(2), wanted[10], 100)
        .await
        .unwrap();
    assert_eq!(id_list(&from_middle), wanted[11..].to_vec());
}

pub async fn history_holds_only_the_two_participants(repo: &dyn MessageRepository) {
    noisy_conversation(repo, 5).await;
    for page in [
        repo.history_page(u(1), u(2), 0, 100)
            .await
            .unwrap()
            .messages,
        repo.history_before(u(1), u(2), None, 100).await.unwrap(),
        repo.history_after(u(1), u(2), m(0), 100).await.unwrap(),
    ] {
        assert_eq!(page.len(), 5);
        assert!(page.iter().all(|msg| {
            (msg.sender_id, msg.receiver_id) == (u(1), u(2))
                || (msg.sender_id, msg.receiver_id) == (u(2), u(1))
        }));
    }
}

pub async fn status_only_moves_forward(repo: &dyn MessageRepository) {
    let id = repo.insert(record(1, 2, "x")).await.unwrap().message.id;
    let delivered = repo
        .set_status(u(2), &[id], MessageStatus::Delivered, at(1), &[])
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].status, MessageStatus::Delivered);
    assert_eq!(delivered[0].delivered_at, Some(at(1)));
    assert_eq!(delivered[0].updated_at, at(1));
    // Delivered again: nothing changes, the first time is kept.
    let again = repo
        .set_status(u(2), &[id], MessageStatus::Delivered, at(2), &[])
        .await
        .unwrap();
    assert!(again.is_empty());
    let read = repo
        .set_status(u(2), &[id], MessageStatus::Read, at(3), &[])
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].status, MessageStatus::Read);
    assert_eq!(read[0].delivered_at, Some(at(1)));
    assert_eq!(read[0].read_at, Some(at(3)));
    // Never backwards, and `Sent` is no target.
    for status in [
        MessageStatus::Delivered,
        MessageStatus::Sent,
        MessageStatus::Read,
    ] {
        assert!(
            repo.set_status(u(2), &[id], status, at(4), &[])
                .await
                .unwrap()
                .is_empty()
        );
    }
    let stored = repo.get(id).await.unwrap().unwrap();
    assert_eq!(stored, read[0]);
}

pub async fn status_changes_only_for_the_receiver(repo: &dyn MessageRepository) {
    let id = repo.insert(record(1, 2, "x")).await.unwrap().message.id;
    for stranger in [1, 3] {
        for status in [MessageStatus::Delivered, MessageStatus::Read] {
            assert!(
                repo.set_status(u(stranger), &[id], status, at(1), &[])
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert!(
            repo.mark_conversation_read(u(stranger), u(1), None, at(1), &[])
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        repo.get(id).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
}

pub async fn read_implies_delivered(repo: &dyn MessageRepository) {
    let id = repo.insert(record(1, 2, "x")).await.unwrap().message.id;
    let read = repo
        .set_status(u(2), &[id], MessageStatus::Read, at(5), &[])
        .await
        .unwrap();
    assert_eq!(read[0].status, MessageStatus::Read);
    assert_eq!(read[0].delivered_at, Some(at(5)));
    assert_eq!(read[0].read_at, Some(at(5)));
    let id2 = repo.insert(record(1, 2, "y")).await.unwrap().message.id;
    repo.mark_conversation_read(u(2), u(1), None, at(6), &[])
        .await
        .unwrap();
    let stored = repo.get(id2).await.unwrap().unwrap();
    assert_eq!(
        (stored.delivered_at, stored.read_at),
        (Some(at(6)), Some(at(6)))
    );
}

pub async fn set_status_ignores_unknown_and_repeated_ids(repo: &dyn MessageRepository) {
    let a = repo.insert(record(1, 2, "a")).await.unwrap().message.id;
    let b = repo.insert(record(1, 2, "b")).await.unwrap().message.id;
    let other = repo.insert(record(3, 4, "c")).await.unwrap().message.id;
    let changed = repo
        .set_status(
            u(2),
            &[b, m(999_999), a, b, other, a],
            MessageStatus::Delivered,
            at(1),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(id_list(&changed), vec![a, b]);
}

pub async fn mark_conversation_read_counts_and_stops_at_the_id(repo: &dyn MessageRepository) {
    let ids = conversation(repo, 1, 2, 10).await; // 1→2 at even positions
    repo.insert(record(3, 2, "other conversation"))
        .await
        .unwrap();
    let changed = repo
        .mark_conversation_read(u(2), u(1), Some(ids[5]), at(1), &[])
        .await
        .unwrap();
    assert_eq!(changed, vec![ids[0], ids[2], ids[4]]);
    // Again: nothing more up to the same id.
    assert!(
        repo.mark_conversation_read(u(2), u(1), Some(ids[5]), at(2), &[])
            .await
            .unwrap()
            .is_empty()
    );
    let rest = repo
        .mark_conversation_read(u(2), u(1), Some(ids[9]), at(3), &[])
        .await
        .unwrap();
    assert_eq!(rest, vec![ids[6], ids[8]]);
    // Messages 2 → 1 were not touched, nor the other conversation.
    assert_eq!(
        repo.get(ids[1]).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
    assert_eq!(repo.unread_total(u(2)).await.unwrap(), 1);
}

pub async fn mark_conversation_read_without_id_reads_all(repo: &dyn MessageRepository) {
    let ids = conversation(repo, 1, 2, 6).await;
    repo.set_status(u(2), &[ids[2]], MessageStatus::Read, at(1), &[])
        .await
        .unwrap();
    let changed = repo
        .mark_conversation_read(u(2), u(1), None, at(2), &[])
        .await
        .unwrap();
    assert_eq!(changed, vec![ids[0], ids[4]]);
    assert_eq!(repo.unread_total(u(2)).await.unwrap(), 0);
    assert_eq!(repo.unread_total(u(1)).await.unwrap(), 3);
}

pub async fn undelivered_lists_sent_messages_oldest_first(repo: &dyn MessageRepository) {
    let mut to_two = Vec::new();
    for i in 0..6 {
        to_two.push(
            repo.insert(record(1 + i % 2 * 2, 2, "to two"))
                .await
                .unwrap()
                .message
                .id,
        );
        repo.insert(record(2, 1, "from two")).await.unwrap();
    }
    repo.set_status(u(2), &[to_two[1]], MessageStatus::Delivered, at(1), &[])
        .await
        .unwrap();
    repo.set_status(u(2), &[to_two[3]], MessageStatus::Read, at(1), &[])
        .await
        .unwrap();
    let pending = repo.undelivered(u(2), m(0), 100).await.unwrap();
    assert_eq!(
        id_list(&pending),
        vec![to_two[0], to_two[2], to_two[4], to_two[5]]
    );
    let first_two = repo.undelivered(u(2), m(0), 2).await.unwrap();
    assert_eq!(id_list(&first_two), vec![to_two[0], to_two[2]]);
    let rest = repo.undelivered(u(2), to_two[2], 100).await.unwrap();
    assert_eq!(id_list(&rest), vec![to_two[4], to_two[5]]);
    assert!(repo.undelivered(u(9), m(0), 100).await.unwrap().is_empty());
}

pub async fn feed_after_catches_up_in_id_order(repo: &dyn MessageRepository) {
    let mut mine = Vec::new();
    for i in 0..9 {
        let (from, to) = match i % 3 {
            0 => (1, 2),
            1 => (3, 1),
            _ => (2, 3),
        };
        let id = repo.insert(record(from, to, "x")).await.unwrap().message.id;
        if from == 1 || to == 1 {
            mine.push(id);
        }
    }
    let all = repo.feed_after(u(1), m(0), 100).await.unwrap();
    assert_eq!(positions(&all), mine);
    let mut walked = Vec::new();
    let mut after = m(0);
    loop {
        let page = repo.feed_after(u(1), after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position();
        walked.extend(positions(&page));
    }
    assert_eq!(walked, mine);
}

/// Writers commit while a reader follows `feed_after`: every message must be seen
/// exactly once, none skipped because it committed after a larger id was read.
pub async fn catch_up_during_concurrent_writes_is_gap_free(repo: &dyn MessageRepository) {
    const WRITERS: i64 = 8;
    const PER_WRITER: usize = 40;
    let writers = join_all((0..WRITERS).map(|w| async move {
        let mut ids = Vec::new();
        for i in 0..PER_WRITER {
            let sender = 100 + w;
            let receiver = if i % 2 == 0 { 1 } else { 200 + w };
            let (from, to) = if i % 4 == 1 {
                (1, sender)
            } else {
                (sender, receiver)
            };
            let inserted = repo.insert(record(from, to, "burst")).await.unwrap();
            if from == 1 || to == 1 {
                ids.push(inserted.message.id);
            }
            tokio::task::yield_now().await;
        }
        ids
    }));
    // Follow the cursor until the writers are done and nothing new shows up.
    let reader = async { positions(&super::follow_feed(repo, u(1)).await) };
    let (written, seen) = futures_util::future::join(writers, reader).await;
    let mut written: Vec<MessageId> = written.into_iter().flatten().collect();
    written.sort_unstable();
    // The reader may stop before the last commit; catch up on what is left.
    let mut seen = seen;
    let after = seen.last().copied().unwrap_or(m(0));
    seen.extend(positions(
        &repo.feed_after(u(1), after, 1000).await.unwrap(),
    ));
    assert_eq!(
        seen, written,
        "a reader following the cursor saw a different set"
    );
}

pub async fn conversations_are_newest_first_with_unread_counts(repo: &dyn MessageRepository) {
    // 1 talks with 2, 3 and 4; the newest activity decides the order.
    let with_two = conversation(repo, 1, 2, 3).await; // 1→2, 2→1, 1→2
    let with_three = conversation(repo, 3, 1, 2).await; // 3→1, 1→3
    let with_four = repo.insert(record(4, 1, "latest")).await.unwrap().message;
    repo.insert(record(5, 6, "not mine")).await.unwrap();
    let list = repo.conversations(u(1), None, 10).await.unwrap();
    let order: Vec<UserId> = list.iter().map(|c| c.counterpart).collect();
    assert_eq!(order, vec![u(4), u(3), u(2)]);
    assert_eq!(list[0].last_message, with_four);
    assert_eq!(list[1].last_message.id, with_three[1]);
    assert_eq!(list[2].last_message.id, with_two[2]);
    let unread: Vec<u64> = list.iter().map(|c| c.unread_count).collect();
    assert_eq!(unread, vec![1, 1, 1]);
    repo.mark_conversation_read(u(1), u(3), None, at(1), &[])
        .await
        .unwrap();
    let list = repo.conversations(u(1), None, 10).await.unwrap();
    assert_eq!(
        list.iter().map(|c| c.unread_count).collect::<Vec<_>>(),
        vec![1, 0, 1]
    );
    // The other side sees its own counts.
    let two = repo.conversations(u(2), None, 10).await.unwrap();
    assert_eq!(two.len(), 1);
    assert_eq!((two[0].counterpart, two[0].unread_count), (u(1), 2));
    assert!(
        repo.conversations(u(99), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn conversations_page_by_cursor(repo: &dyn MessageRepository) {
    for peer in 2..=8 {
        repo.insert(record(1, peer, "hi")).await.unwrap();
    }
    // Activity on an old conversation moves it to the front.
    repo.insert(record(3, 1, "back")).await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = repo.conversations(u(1), before, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.last_message.id);
        seen.extend(page.iter().map(|c| c.counterpart.get()));
    }
    assert_eq!(seen, vec![3, 8, 7, 6, 5, 4, 2]);
}

pub async fn unread_total_counts_every_conversation(repo: &dyn MessageRepository) {
    assert_eq!(repo.unread_total(u(1)).await.unwrap(), 0);
    let a = repo.insert(record(2, 1, "a")).await.unwrap().message.id;
    repo.insert(record(3, 1, "b")).await.unwrap();
    repo.insert(record(3, 1, "c")).await.unwrap();
    repo.insert(record(1, 3, "mine")).await.unwrap();
    assert_eq!(repo.unread_total(u(1)).await.unwrap(), 3);
    repo.set_status(u(1), &[a], MessageStatus::Delivered, at(1), &[])
        .await
        .unwrap();
    assert_eq!(
        repo.unread_total(u(1)).await.unwrap(),
        3,
        "delivered is still unread"
    );
    repo.set_status(u(1), &[a], MessageStatus::Read, at(2), &[])
        .await
        .unwrap();
    assert_eq!(repo.unread_total(u(1)).await.unwrap(), 2);
    assert_eq!(repo.unread_total(u(3)).await.unwrap(), 1);
}

/// A fixed pseudo-random walk of sends, reads by id, deliveries and reads up to an id
/// among four users; after every step each user's unread total, each conversation's
/// unread count, each user's undelivered backlog and the statuses agree with a model
/// of the messages.
/// A fixed xorshift sequence: the same walk on every run and every store.
struct Walk(u64);

impl Walk {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(bound).unwrap()).unwrap()
    }
}

pub async fn counts_and_backlogs_follow_every_way_of_reading(repo: &dyn MessageRepository) {
    // (sender, receiver, status) by id, as the store should hold them.
    let mut model: Vec<(MessageId, i64, i64, MessageStatus)> = Vec::new();
    let mut walk = Walk(0x9e37_79b9_7f4a_7c15);
    let users = [1_i64, 2, 3, 4];
    for step in 0..300_u64 {
        let me = users[walk.below(4)];
        let peer = users[walk.below(4)];
        let choice = walk.below(10);
        if me == peer || model.is_empty() || choice < 4 {
            if me != peer {
                let sent = repo
                    .insert(record(peer, me, &format!("step {step}")))
                    .await
                    .unwrap()
                    .message;
                model.push((sent.id, peer, me, MessageStatus::Sent));
            }
            continue;
        }
        // An id that may be unknown, another user's, or beyond the newest message.
        let ids_so_far = usize::try_from(model.last().unwrap().0.get()).unwrap();
        let mut pick = || m(1 + i64::try_from(walk.below(ids_so_far + 3)).unwrap());
        match choice {
            4..=6 => {
                let ids: Vec<MessageId> = (0..3).map(|_| pick()).collect();
                let status = if choice == 4 {
                    MessageStatus::Delivered
                } else {
                    MessageStatus::Read
                };
                repo.set_status(u(me), &ids, status, at(i64::try_from(step).unwrap()), &[])
                    .await
                    .unwrap();
                for (id, _, receiver, current) in &mut model {
                    if *receiver == me && ids.contains(id) && status > *current {
                        *current = status;
                    }
                }
            }
            _ => {
                let up_to = if choice == 9 { None } else { Some(pick()) };
                let read = repo
                    .mark_conversation_read(
                        u(me),
                        u(peer),
                        up_to,
                        at(i64::try_from(step).unwrap()),
                        &[],
                    )
                    .await
                    .unwrap();
                let mut expected = Vec::new();
                for (id, sender, receiver, current) in &mut model {
                    let in_range = up_to.is_none_or(|up_to| *id <= up_to);
                    if *sender == peer
                        && *receiver == me
                        && in_range
                        && *current != MessageStatus::Read
                    {
                        *current = MessageStatus::Read;
                        expected.push(*id);
                    }
                }
                assert_eq!(
                    read, expected,
                    "step {step}: mark_conversation_read({me}, {peer}, {up_to:?})"
                );
            }
        }
        for &user in &users {
            let unread = |from: Option<i64>| {
                let count = model
                    .iter()
                    .filter(|(_, sender, receiver, status)| {
                        *receiver == user
                            && *status != MessageStatus::Read
                            && from.is_none_or(|from| from == *sender)
                    })
                    .count();
                u64::try_from(count).unwrap()
            };
            assert_eq!(
                repo.unread_total(u(user)).await.unwrap(),
                unread(None),
                "step {step}: user {user}"
            );
            // The undelivered backlog, fetched in pages of 3.
            let expected: Vec<MessageId> = model
                .iter()
                .filter(|(_, _, receiver, status)| {
                    *receiver == user && *status == MessageStatus::Sent
                })
                .map(|(id, ..)| *id)
                .collect();
            let mut backlog = Vec::new();
            loop {
                let after = backlog.last().copied().unwrap_or(m(0));
                let page = repo.undelivered(u(user), after, 3).await.unwrap();
                assert!(page.len() <= 3);
                if page.is_empty() {
                    break;
                }
                backlog.extend(id_list(&page));
            }
            assert_eq!(backlog, expected, "step {step}: backlog of {user}");
            for summary in repo.conversations(u(user), None, 10).await.unwrap() {
                let peer = summary.counterpart.get();
                assert_eq!(
                    summary.unread_count,
                    unread(Some(peer)),
                    "step {step}: {user} with {peer}"
                );
            }
        }
    }
    for (id, _, _, status) in model {
        assert_eq!(
            repo.get(id).await.unwrap().unwrap().status,
            status,
            "message {id:?}"
        );
    }
}

pub async fn unicode_and_long_bodies_are_stored_byte_for_byte(repo: &dyn MessageRepository) {
    let bodies = [
        "héllo wörld — ñ".to_owned(),
        "日本語のメッセージ 🎉👩‍👩‍👧‍👦".to_owned(),
        "right-to-left: שלום עולם, مرحبا".to_owned(),
        "combining: e\u{301} and zero width\u{200d}joiner".to_owned(),
        "line one\nline two\r\n\ttabbed".to_owned(),
        "é".repeat(4000),
        "🎉".repeat(4000),
    ];
    for body in bodies {
        let id = repo.insert(record(1, 2, &body)).await.unwrap().message.id;
        let stored = repo.get(id).await.unwrap().unwrap();
        assert_eq!(stored.message.as_bytes(), body.as_bytes());
    }
    let page = repo.history_before(u(1), u(2), None, 100).await.unwrap();
    assert_eq!(page.len(), 7);
}

pub async fn sql_metacharacters_are_stored_verbatim(repo: &dyn MessageRepository) {
    let bodies = [
        "'; DROP TABLE messages; --",
        "\" OR 1=1 --",
        "100% of _wildcards_ \\ backslash",
        "$1 ?1 :name @p",
        "/* comment */ UNION SELECT * FROM sqlite_master",
    ];
    for body in bodies {
        let key = format!("k{}", body.len());
        let inserted = repo.insert(keyed_record(1, 2, body, &key)).await.unwrap();
        let stored = repo.get(inserted.message.id).await.unwrap().unwrap();
        assert_eq!(stored.message, body);
    }
    let key = "a.b_c:d-e";
    let inserted = repo
        .insert(keyed_record(1, 2, "key chars", key))
        .await
        .unwrap();
    assert_eq!(inserted.message.client_message_id.as_deref(), Some(key));
    assert_eq!(
        repo.history_page(u(1), u(2), 0, 100).await.unwrap().total,
        6
    );
}

pub async fn timestamps_round_trip(repo: &dyn MessageRepository) {
    let mut new = record(1, 2, "t");
    new.created_at = at(42);
    let id = repo.insert(new).await.unwrap().message.id;
    repo.set_status(u(2), &[id], MessageStatus::Delivered, at(43), &[])
        .await
        .unwrap();
    repo.set_status(u(2), &[id], MessageStatus::Read, at(44), &[])
        .await
        .unwrap();
    let stored = repo.get(id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, at(42));
    assert_eq!(stored.delivered_at, Some(at(43)));
    assert_eq!(stored.read_at, Some(at(44)));
    assert_eq!(stored.updated_at, at(44));
}

pub async fn ping_answers(repo: &dyn MessageRepository) {
    repo.ping().await.unwrap();
}
