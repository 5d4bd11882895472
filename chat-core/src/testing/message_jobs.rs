//! Conformance cases of a store that keeps messages and their jobs together.
//! Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::ports::{JobState, JobStore, MessageRepository};
use crate::testing::{keyed_record, record, with_jobs};

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
