//! The `JobStore` conformance cases. Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use time::OffsetDateTime;

use crate::ids::{JobId, MessageId};
use crate::ports::{JobState, JobStore, NewJob, Outcome};

const LEASE: Duration = Duration::from_secs(30);

fn t(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

fn job(name: &str, due: i64) -> NewJob {
    NewJob {
        kind: "test".into(),
        subject: name.parse().ok().map(MessageId::new),
        payload: format!("{{\"name\":\"{name}\"}}"),
        due_at: t(due),
    }
}

fn failed(error: &str, retry_at: Option<OffsetDateTime>) -> Outcome {
    Outcome::Failed {
        error: error.into(),
        retry_at,
    }
}

pub async fn only_due_jobs_are_claimed_oldest_due_first(store: &dyn JobStore) {
    let ids = store
        .enqueue(vec![job("later", 20), job("b", 5), job("a", 0)], t(0))
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let claimed = store.claim(t(10), LEASE, 10).await.unwrap();
    let names: Vec<&str> = claimed.iter().map(|c| c.job.payload.as_str()).collect();
    assert_eq!(names, ["{\"name\":\"a\"}", "{\"name\":\"b\"}"]);
    assert!(
        claimed
            .iter()
            .all(|c| c.job.attempts == 1 && c.job.state == JobState::Running)
    );
    assert_eq!(claimed[0].lease_until, t(10) + LEASE);
    assert_eq!(
        (claimed[0].job.kind.as_str(), claimed[0].job.subject),
        ("test", None)
    );
    assert!(store.claim(t(10), LEASE, 10).await.unwrap().is_empty());
    let later = store.claim(t(20), LEASE, 10).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].job.id, ids[0]);
}

pub async fn the_limit_bounds_a_claim(store: &dyn JobStore) {
    store
        .enqueue((1..=5).map(|n| job(&n.to_string(), 0)).collect(), t(0))
        .await
        .unwrap();
    let first = store.claim(t(1), LEASE, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    // A job's subject is kept.
    assert!(
        first
            .iter()
            .all(|c| c.job.subject.is_some_and(|id| (1..=5).contains(&id.get())))
    );
    assert_eq!(store.claim(t(1), LEASE, 10).await.unwrap().len(), 3);
}

pub async fn success_removes_the_job(store: &dyn JobStore) {
    store.enqueue(vec![job("a", 0)], t(0)).await.unwrap();
    let claimed = store.claim(t(0), LEASE, 1).await.unwrap().remove(0);
    assert!(
        store
            .finish(claimed.job.id, claimed.lease, Outcome::Succeeded)
            .await
            .unwrap()
    );
    for state in [JobState::Pending, JobState::Running, JobState::Dead] {
        assert!(store.list(state, 10).await.unwrap().is_empty());
    }
    assert!(store.claim(t(1000), LEASE, 1).await.unwrap().is_empty());
    assert!(
        !store
            .finish(claimed.job.id, claimed.lease, Outcome::Succeeded)
            .await
            .unwrap()
    );
}

pub async fn a_failure_retries_at_its_time_and_the_last_one_is_dead(store: &dyn JobStore) {
    let id = store.enqueue(vec![job("a", 0)], t(0)).await.unwrap()[0];
    let first = store.claim(t(0), LEASE, 1).await.unwrap().remove(0);
    assert!(
        store
            .finish(id, first.lease, failed("500", Some(t(60))))
            .await
            .unwrap()
    );
    let pending = store.list(JobState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].due_at, pending[0].last_error.as_deref()),
        (t(60), Some("500"))
    );
    assert!(store.claim(t(59), LEASE, 1).await.unwrap().is_empty());
    let second = store.claim(t(60), LEASE, 1).await.unwrap().remove(0);
    assert_eq!((second.job.id, second.job.attempts), (id, 2));
    assert!(
        store
            .finish(id, second.lease, failed("timeout", None))
            .await
            .unwrap()
    );
    let dead = store.list(JobState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subject, None);
    assert_eq!(
        (dead[0].id, dead[0].attempts, dead[0].last_error.as_deref()),
        (id, 2, Some("timeout"))
    );
    assert!(store.claim(t(100_000), LEASE, 1).await.unwrap().is_empty());
}

pub async fn an_ended_lease_is_taken_over_and_the_old_claim_cannot_finish(store: &dyn JobStore) {
    let id = store.enqueue(vec![job("a", 0)], t(0)).await.unwrap()[0];
    let first = store.claim(t(0), LEASE, 1).await.unwrap().remove(0);
    assert_eq!(store.list(JobState::Running, 10).await.unwrap().len(), 1);
    // The lease runs: no one else gets it.
    assert!(store.claim(t(29), LEASE, 1).await.unwrap().is_empty());
    let second = store.claim(t(30), LEASE, 1).await.unwrap().remove(0);
    assert_eq!((second.job.id, second.job.attempts), (id, 2));
    assert_ne!(second.lease, first.lease);
    assert!(
        !store
            .finish(id, first.lease, Outcome::Succeeded)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish(id, first.lease, failed("late", None))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish(id, second.lease, Outcome::Succeeded)
            .await
            .unwrap()
    );
}

pub async fn concurrent_claims_are_disjoint(store: &dyn JobStore) {
    let total = 200;
    store
        .enqueue((0..total).map(|n| job(&n.to_string(), 0)).collect(), t(0))
        .await
        .unwrap();
    // Eight claimers at once, each claiming until nothing is left.
    let claimers = (0..8).map(|_| async move {
        let mut mine = Vec::new();
        loop {
            let claimed = store.claim(t(1), LEASE, 7).await.unwrap();
            if claimed.is_empty() {
                return mine;
            }
            mine.extend(claimed.into_iter().map(|c| c.job.id));
            tokio::task::yield_now().await;
        }
    });
    let mut seen: HashSet<JobId> = HashSet::new();
    for mine in futures_util::future::join_all(claimers).await {
        for id in mine {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), total);
}

pub async fn operators_retry_and_discard_dead_jobs(store: &dyn JobStore) {
    let ids = store
        .enqueue(vec![job("a", 0), job("b", 0), job("c", 0)], t(0))
        .await
        .unwrap();
    for claimed in store.claim(t(0), LEASE, 2).await.unwrap() {
        store
            .finish(claimed.job.id, claimed.lease, failed("gone", None))
            .await
            .unwrap();
    }
    let dead: Vec<JobId> = store
        .list(JobState::Dead, 10)
        .await
        .unwrap()
        .iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(dead, ids[..2]);
    assert!(store.retry(ids[0], t(50)).await.unwrap());
    assert!(
        !store.retry(ids[2], t(50)).await.unwrap(),
        "only a dead job is retried"
    );
    let again = store.claim(t(50), LEASE, 10).await.unwrap();
    let again: Vec<JobId> = again.iter().map(|c| c.job.id).collect();
    assert_eq!(again, [ids[2], ids[0]]);
    assert!(!store.discard(ids[0]).await.unwrap(), "a running job stays");
    assert!(store.discard(ids[1]).await.unwrap());
    assert!(!store.discard(ids[1]).await.unwrap());
    assert!(store.list(JobState::Dead, 10).await.unwrap().is_empty());
}

pub async fn many_attempts_finish_at_once_each_under_its_lease(store: &dyn JobStore) {
    store
        .enqueue((1..=3).map(|n| job(&n.to_string(), 0)).collect(), t(0))
        .await
        .unwrap();
    let claimed = store.claim(t(0), LEASE, 3).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let answers = store
        .finish_many(vec![
            (claimed[0].job.id, claimed[0].lease, Outcome::Succeeded),
            (
                claimed[1].job.id,
                claimed[1].lease,
                failed("500", Some(t(60))),
            ),
            // A stale lease changes nothing.
            (claimed[2].job.id, claimed[2].lease + 1, Outcome::Succeeded),
            // Nor does a second finish of a job already done.
            (claimed[0].job.id, claimed[0].lease, Outcome::Succeeded),
        ])
        .await
        .unwrap();
    assert_eq!(answers, [true, true, false, false]);
    let pending = store.list(JobState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, claimed[1].job.id);
    assert_eq!(pending[0].last_error.as_deref(), Some("500"));
    let running = store.list(JobState::Running, 10).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, claimed[2].job.id);
    assert!(store.finish_many(Vec::new()).await.unwrap().is_empty());
}
