//! The conformance cases of what a store keeps about users rather than messages:
//! blocks (and the sends they refuse), acquaintance and last-seen times. Panics are
//! the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use super::{at, keyed_record, record};
use crate::error::Error;
use crate::ids::UserId;
use crate::ports::MessageRepository;

fn u(id: i64) -> UserId {
    UserId::new(id)
}

fn sorted(mut users: Vec<UserId>) -> Vec<UserId> {
    users.sort_unstable();
    users
}

pub async fn a_block_refuses_sends_both_ways_until_lifted(repo: &dyn MessageRepository) {
    let before = repo
        .insert(keyed_record(1, 2, "before", "k-1"))
        .await
        .unwrap()
        .message;
    let blocked = repo.block(u(1), u(2), at(10)).await.unwrap();
    assert!(blocked.created);
    for (from, to) in [(1, 2), (2, 1)] {
        let refused = repo.insert(record(from, to, "refused")).await;
        assert!(
            matches!(refused, Err(Error::Forbidden { .. })),
            "{from} -> {to}: {refused:?}"
        );
    }
    // Nothing of the refused sends was stored.
    let page = repo.history_page(u(1), u(2), 0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.messages, vec![before.clone()]);
    // A key used before the block still answers its message.
    let replay = repo
        .insert(keyed_record(1, 2, "before", "k-1"))
        .await
        .unwrap();
    assert!(!replay.created);
    assert_eq!(replay.message, before);
    // Other pairs are untouched.
    assert!(repo.insert(record(1, 3, "fine")).await.unwrap().created);
    assert!(repo.insert(record(3, 2, "fine")).await.unwrap().created);
    assert!(repo.unblock(u(1), u(2)).await.unwrap());
    assert!(!repo.unblock(u(1), u(2)).await.unwrap());
    assert!(repo.insert(record(2, 1, "again")).await.unwrap().created);
}

pub async fn blocks_are_idempotent_and_listed_newest_first(repo: &dyn MessageRepository) {
    let first = repo.block(u(1), u(2), at(10)).await.unwrap();
    assert!(first.created);
    assert_eq!(first.block.user_id, u(2));
    assert_eq!(first.block.created_at, at(10));
    let again = repo.block(u(1), u(2), at(20)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.block, first.block, "the first block's time stays");
    repo.block(u(1), u(3), at(30)).await.unwrap();
    repo.block(u(2), u(1), at(40)).await.unwrap();
    let listed = repo.blocks(u(1)).await.unwrap();
    let users: Vec<(UserId, _)> = listed.iter().map(|b| (b.user_id, b.created_at)).collect();
    assert_eq!(users, vec![(u(3), at(30)), (u(2), at(10))]);
    assert_eq!(repo.blocks(u(9)).await.unwrap(), vec![]);
    // Lifting one side leaves the other's.
    repo.unblock(u(1), u(2)).await.unwrap();
    assert_eq!(repo.blocked_among(u(1), &[u(2)]).await.unwrap(), vec![u(2)]);
}

pub async fn blocked_and_acquainted_among_answer_subsets(repo: &dyn MessageRepository) {
    repo.insert(record(1, 2, "x")).await.unwrap();
    repo.insert(record(3, 1, "x")).await.unwrap();
    repo.insert(record(4, 5, "x")).await.unwrap();
    repo.block(u(4), u(1), at(1)).await.unwrap();
    repo.block(u(1), u(3), at(2)).await.unwrap();
    let asked = [u(2), u(3), u(4), u(5), u(4), u(1)];
    assert_eq!(
        sorted(repo.blocked_among(u(1), &asked).await.unwrap()),
        vec![u(3), u(4)]
    );
    assert_eq!(
        sorted(repo.acquainted_among(u(1), &asked).await.unwrap()),
        vec![u(2), u(3)]
    );
    assert!(repo.blocked_among(u(1), &[]).await.unwrap().is_empty());
    assert!(
        repo.acquainted_among(u(6), &asked)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn last_seen_never_moves_back(repo: &dyn MessageRepository) {
    assert!(repo.last_seen(&[u(1)]).await.unwrap().is_empty());
    repo.set_last_seen(u(1), at(20)).await.unwrap();
    repo.set_last_seen(u(1), at(10)).await.unwrap();
    repo.set_last_seen(u(2), at(5)).await.unwrap();
    let mut seen = repo.last_seen(&[u(1), u(3), u(2), u(1)]).await.unwrap();
    seen.sort_unstable();
    assert_eq!(seen, vec![(u(1), at(20)), (u(2), at(5))]);
    repo.set_last_seen(u(1), at(30)).await.unwrap();
    assert_eq!(repo.last_seen(&[u(1)]).await.unwrap(), vec![(u(1), at(30))]);
}
