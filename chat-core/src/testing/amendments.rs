//! The conformance cases of edits and deletions (`MessageRepository::amend`) and of the
//! feed they take their place in (`feed_after`). Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use futures_util::future::join_all;

use super::{at, record};
use crate::ids::{MessageId, UserId};
use crate::message::{Amendment, FeedEntry, MessageStatus};
use crate::ports::MessageRepository;

fn u(id: i64) -> UserId {
    UserId::new(id)
}

fn m(id: i64) -> MessageId {
    MessageId::new(id)
}

fn edit(text: &str) -> Amendment {
    Amendment::Edit(text.to_owned())
}

/// Each entry as (position, message id, whether it is a change).
fn shape(entries: &[FeedEntry]) -> Vec<(MessageId, MessageId, bool)> {
    entries
        .iter()
        .map(|e| {
            (
                e.position(),
                e.message().id,
                matches!(e, FeedEntry::Changed(_)),
            )
        })
        .collect()
}

async fn send(repo: &dyn MessageRepository, from: i64, to: i64, text: &str) -> MessageId {
    repo.insert(record(from, to, text))
        .await
        .unwrap()
        .message
        .id
}

pub async fn an_edit_replaces_the_text_under_a_new_revision(repo: &dyn MessageRepository) {
    let first = send(repo, 1, 2, "helo").await;
    let second = send(repo, 2, 1, "hi").await;
    let when = at(100);
    let change = repo
        .amend(u(1), first, edit("hello"), when)
        .await
        .unwrap()
        .expect("the sender edits their message");
    assert!(
        change.revision > second,
        "a revision is above every id before it"
    );
    assert!(!change.is_deletion());
    let edited = change.message.clone();
    assert_eq!(edited.id, first);
    assert_eq!(edited.message, "hello");
    assert_eq!(edited.edited_at, Some(when));
    assert_eq!(edited.updated_at, when);
    assert_eq!(edited.deleted_at, None);
    assert_eq!(edited.status, MessageStatus::Sent);
    assert_eq!(repo.get(first).await.unwrap(), Some(edited));
    let third = send(repo, 1, 2, "after").await;
    assert!(
        third > change.revision,
        "an id is above every revision before it"
    );
    // A second edit takes another revision; the message keeps its id.
    let again = repo
        .amend(u(1), first, edit("hello!"), when)
        .await
        .unwrap()
        .unwrap();
    assert!(again.revision > third);
    assert_eq!(again.message.message, "hello!");
}

pub async fn a_deletion_leaves_a_tombstone_in_history_and_counts(repo: &dyn MessageRepository) {
    let kept = send(repo, 1, 2, "kept").await;
    let gone = send(repo, 1, 2, "secret").await;
    let when = at(200);
    let change = repo
        .amend(u(1), gone, Amendment::Delete, when)
        .await
        .unwrap()
        .unwrap();
    assert!(change.is_deletion());
    let tombstone = change.message;
    assert_eq!(tombstone.message, "");
    assert_eq!(tombstone.deleted_at, Some(when));
    assert_eq!(tombstone.updated_at, when);
    assert_eq!(repo.get(gone).await.unwrap().unwrap(), tombstone);
    // History keeps its place and its count.
    let page = repo.history_page(u(2), u(1), 0, 10).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.messages[0], tombstone);
    assert_eq!(page.messages[1].id, kept);
    // The conversation list shows the tombstone, never the old text, and the counts
    // still match the history: the tombstone is unread until read.
    let list = repo.conversations(u(2), None, 10).await.unwrap();
    assert_eq!(list[0].last_message, tombstone);
    assert_eq!(list[0].unread_count, 2);
    assert_eq!(repo.unread_total(u(2)).await.unwrap(), 2);
    let read = repo
        .set_status(u(2), &[gone], MessageStatus::Read, when, &[])
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].deleted_at, Some(when));
    assert_eq!(read[0].message, "");
    assert_eq!(repo.unread_total(u(2)).await.unwrap(), 1);
    let list = repo.conversations(u(1), None, 10).await.unwrap();
    assert_eq!(list[0].last_message.id, gone);
    assert_eq!(list[0].last_message.message, "");
}

pub async fn only_the_sender_amends_a_message_not_deleted(repo: &dyn MessageRepository) {
    let id = send(repo, 1, 2, "mine").await;
    let when = at(300);
    assert_eq!(
        repo.amend(u(2), id, edit("theirs"), when).await.unwrap(),
        None
    );
    assert_eq!(
        repo.amend(u(2), id, Amendment::Delete, when).await.unwrap(),
        None
    );
    assert_eq!(
        repo.amend(u(3), id, Amendment::Delete, when).await.unwrap(),
        None
    );
    assert_eq!(
        repo.amend(u(1), m(id.get() + 1000), edit("x"), when)
            .await
            .unwrap(),
        None
    );
    let untouched = repo.get(id).await.unwrap().unwrap();
    assert_eq!(untouched.message, "mine");
    assert_eq!(untouched.edited_at, None);
    assert!(
        repo.amend(u(1), id, Amendment::Delete, when)
            .await
            .unwrap()
            .is_some()
    );
    // A tombstone is final.
    assert_eq!(
        repo.amend(u(1), id, edit("back"), when).await.unwrap(),
        None
    );
    assert_eq!(
        repo.amend(u(1), id, Amendment::Delete, when).await.unwrap(),
        None
    );
    assert_eq!(repo.get(id).await.unwrap().unwrap().message, "");
}

pub async fn the_feed_places_changes_at_their_revisions(repo: &dyn MessageRepository) {
    let a = send(repo, 1, 2, "a").await;
    let b = send(repo, 3, 1, "b").await;
    let other = send(repo, 2, 3, "not 1's").await;
    let when = at(400);
    let edited = repo
        .amend(u(1), a, edit("a2"), when)
        .await
        .unwrap()
        .unwrap();
    let c = send(repo, 1, 3, "c").await;
    let deleted = repo
        .amend(u(3), b, Amendment::Delete, when)
        .await
        .unwrap()
        .unwrap();
    repo.amend(u(2), other, edit("still not 1's"), when)
        .await
        .unwrap()
        .unwrap();
    let all = repo.feed_after(u(1), m(0), 100).await.unwrap();
    assert_eq!(
        shape(&all),
        vec![
            (a, a, false),
            (b, b, false),
            (edited.revision, a, true),
            (c, c, false),
            (deleted.revision, b, true),
        ]
    );
    // New entries show the message as it is now.
    assert_eq!(all[0].message().message, "a2");
    assert_eq!(all[1].message().deleted_at, Some(when));
    // A device that had everything up to `c` hears only of the deletion.
    let resumed = repo.feed_after(u(1), c, 100).await.unwrap();
    assert_eq!(shape(&resumed), vec![(deleted.revision, b, true)]);
    // Page by page, each position once, ascending.
    let mut walked = Vec::new();
    let mut after = m(0);
    loop {
        let page = repo.feed_after(u(1), after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position();
        walked.extend(shape(&page));
    }
    assert_eq!(walked, shape(&all));
    // Edited again: only the newest revision stands.
    let again = repo
        .amend(u(1), a, edit("a3"), when)
        .await
        .unwrap()
        .unwrap();
    let resumed = repo.feed_after(u(1), c, 100).await.unwrap();
    assert_eq!(
        shape(&resumed),
        vec![(deleted.revision, b, true), (again.revision, a, true)]
    );
    assert_eq!(resumed[1].message().message, "a3");
    assert!(repo.feed_after(u(9), m(0), 100).await.unwrap().is_empty());
}

/// Writers send and edit while a reader follows the feed's positions: every message
/// and every change must be seen, none skipped because it committed after a larger
/// position was read.
pub async fn the_feed_during_concurrent_sends_and_edits_is_gap_free(repo: &dyn MessageRepository) {
    const WRITERS: i64 = 6;
    const PER_WRITER: usize = 30;
    let writers = join_all((0..WRITERS).map(|w| async move {
        let sender = 100 + w;
        let mut sent = Vec::new();
        let mut revisions = Vec::new();
        for i in 0..PER_WRITER {
            let id = send(repo, sender, 1, "burst").await;
            sent.push(id);
            if i % 3 == 2 {
                let change = repo
                    .amend(u(sender), sent[i - 1], edit("edited"), at(500))
                    .await
                    .unwrap()
                    .unwrap();
                revisions.push(change.revision);
            }
            tokio::task::yield_now().await;
        }
        (sent, revisions)
    }));
    let reader = async {
        let seen = super::follow_feed(repo, u(1)).await;
        seen.iter().map(FeedEntry::position).collect::<Vec<_>>()
    };
    let (written, mut seen) = futures_util::future::join(writers, reader).await;
    let after = seen.last().copied().unwrap_or(m(0));
    seen.extend(
        repo.feed_after(u(1), after, 1000)
            .await
            .unwrap()
            .iter()
            .map(FeedEntry::position),
    );
    let mut expected: Vec<MessageId> = written
        .into_iter()
        .flat_map(|(sent, revisions)| sent.into_iter().chain(revisions))
        .collect();
    expected.sort_unstable();
    assert_eq!(
        seen, expected,
        "a reader following the feed saw a different set"
    );
}
