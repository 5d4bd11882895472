//! Conformance cases of a store that keeps messages and their jobs together.
//! Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::ids::{MessageId, UserId};
use crate::message::MessageStatus;
use crate::ports::{JobState, JobStore, MessageRepository, NewJob};
use crate::testing::{at, keyed_record, record, with_jobs};

pub async fn jobs_are_written_with_their_message_and_name_it<S>(store: &S)
where
    S: MessageRepository + JobStore + ?Sized,
{
    let plain = store.insert(record(1, 2, "no jobs")).await.unwrap();
    assert!(plain.created);
    assert!(store.list(JobState::Pending, 10).await.unwrap().is_empty());
    let inserted = store
        .insert(with_jobs(
            record(1, 2, "with jobs"),
            &["created", "undelivered"],
        ))
        .await
        .unwrap();
    let jobs = store.list(JobState::Pending, 10).await.unwrap();
    let mut kinds: Vec<&str> = jobs.iter().map(|job| job.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["created", "undelivered"]);
    assert!(
        jobs.iter()
            .all(|job| job.subject == Some(inserted.message.id))
    );
}

pub async fn a_replay_writes_no_jobs<S>(store: &S)
where
    S: MessageRepository + JobStore + ?Sized,
{
    let first = store
        .insert(with_jobs(keyed_record(1, 2, "once", "k1"), &["created"]))
        .await
        .unwrap();
    let replay = store
        .insert(with_jobs(keyed_record(1, 2, "once", "k1"), &["created"]))
        .await
        .unwrap();
    assert!(first.created && !replay.created);
    let jobs = store.list(JobState::Pending, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].subject, Some(first.message.id));
}

fn read_job(kind: &str) -> NewJob {
    NewJob {
        kind: kind.to_owned(),
        subject: None,
        payload: "{}".to_owned(),
        due_at: at(5),
    }
}

pub async fn reads_write_a_copy_of_their_jobs_for_each_message_they_change<S>(store: &S)
where
    S: MessageRepository + JobStore + ?Sized,
{
    let mut ids = Vec::new();
    for text in ["one", "two", "three", "four"] {
        ids.push(store.insert(record(1, 2, text)).await.unwrap().message.id);
    }
    // Read one by id; asking again changes nothing and writes no jobs.
    let jobs = [read_job("read")];
    let changed = store
        .set_status(UserId::new(2), &ids[..1], MessageStatus::Read, at(5), &jobs)
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    let again = store
        .set_status(UserId::new(2), &ids[..1], MessageStatus::Read, at(6), &jobs)
        .await
        .unwrap();
    assert!(again.is_empty());
    // Delivered without jobs, then the rest of the conversation read with two jobs each.
    store
        .set_status(
            UserId::new(2),
            &ids[1..2],
            MessageStatus::Delivered,
            at(6),
            &[],
        )
        .await
        .unwrap();
    let read = store
        .mark_conversation_read(
            UserId::new(2),
            UserId::new(1),
            None,
            at(7),
            &[read_job("read"), read_job("other")],
        )
        .await
        .unwrap();
    assert_eq!(read, ids[1..]);
    let pending = store.list(JobState::Pending, 20).await.unwrap();
    assert_eq!(pending.len(), 1 + 2 * 3);
    let mut subjects: Vec<(MessageId, &str)> = pending
        .iter()
        .map(|job| (job.subject.unwrap(), job.kind.as_str()))
        .collect();
    subjects.sort_unstable();
    let mut expected = vec![(ids[0], "read")];
    for &id in &ids[1..] {
        expected.extend([(id, "other"), (id, "read")]);
    }
    assert_eq!(subjects, expected);
    // A read that changes nothing writes nothing.
    let none = store
        .mark_conversation_read(UserId::new(2), UserId::new(1), None, at(8), &jobs)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(store.list(JobState::Pending, 20).await.unwrap().len(), 7);
}

/// A store's jobs are part of its changes: a job the database refuses takes its message,
/// or its read, with it. Needs a store that refuses jobs of kind `refused` (the store's
/// own test installs a trigger that stands for any failure); not in the suite for that.
pub async fn a_refused_job_rolls_its_change_back<S>(store: &S)
where
    S: MessageRepository + JobStore + ?Sized,
{
    // Concurrently, so a store that commits writes in groups keeps them apart.
    let (kept, refused) = tokio::join!(
        store.insert(with_jobs(record(1, 2, "kept"), &["webhook"])),
        store.insert(with_jobs(record(1, 2, "refused"), &["refused"])),
    );
    let kept = kept.unwrap().message;
    assert!(refused.is_err(), "the refused job's insert must fail");
    let history = store
        .history_before(UserId::new(1), UserId::new(2), None, 10)
        .await
        .unwrap();
    let texts: Vec<&str> = history.iter().map(|m| m.message.as_str()).collect();
    assert_eq!(
        texts,
        ["kept"],
        "the message of the refused job rolled back"
    );
    let jobs = store.list(JobState::Pending, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].subject),
        ("webhook", Some(kept.id))
    );

    // A read whose job is refused rolls back too: the message stays unread.
    let refused = NewJob {
        due_at: kept.created_at,
        ..read_job("refused")
    };
    let receiver = UserId::new(2);
    let read_at = kept.created_at;
    let one = std::slice::from_ref(&refused);
    assert!(
        store
            .set_status(receiver, &[kept.id], MessageStatus::Read, read_at, one)
            .await
            .is_err()
    );
    assert!(
        store
            .mark_conversation_read(receiver, UserId::new(1), None, read_at, one)
            .await
            .is_err()
    );
    assert_eq!(store.unread_total(receiver).await.unwrap(), 1);
    assert_eq!(store.list(JobState::Pending, 10).await.unwrap().len(), 1);
}
