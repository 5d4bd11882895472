//! Conformance suites every adapter runs (feature `testing`; not a stable API).
//!
//! Each case is a plain `pub async fn case(store: &dyn Port)`. The macros
//! [`message_repository_suite!`](crate::message_repository_suite) and
//! [`notifier_suite!`](crate::notifier_suite) expand to one `#[tokio::test]` per case,
//! each with a fresh store from the factory expression. The factory evaluates to a
//! future of `Option<F>`, where `F` dereferences to the store; `None` skips the case
//! (see [`service_url`]). Adapter crates need `tokio` (with `macros`) as a
//! dev-dependency.
//!
//! ```
//! mod conformance {
//!     chat_core::message_repository_suite!(async {
//!         Some(std::sync::Arc::new(chat_core::InMemoryRepository::new()))
//!     });
//! }
//! ```

pub mod amendments;
pub mod broadcast;
mod faults;
pub mod jobs;
pub mod message_jobs;
pub mod notifier;
pub mod presence;
pub mod rate_limiter;
pub mod relations;
pub mod repository;

pub use faults::Faults;

use time::OffsetDateTime;

use crate::ids::UserId;
use crate::message::NewMessageRecord;

/// The URL of a test service from the environment variable `var`.
///
/// When it is unset or empty, prints why the test is skipped and returns `None`; with
/// `CHAT_REQUIRE_SERVICES=1` it panics instead, so CI cannot skip silently.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CHAT_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set and CHAT_REQUIRE_SERVICES=1 requires the service"
            );
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// What a reader following `user`'s feed 7 entries at a time sees while writers are
/// busy: it stops after 200 reads in a row find nothing, then takes what is left.
pub(crate) async fn follow_feed(
    repo: &dyn crate::ports::MessageRepository,
    user: UserId,
) -> Vec<crate::message::FeedEntry> {
    let mut seen: Vec<crate::message::FeedEntry> = Vec::new();
    let mut after = crate::ids::MessageId::new(0);
    let mut idle_rounds = 0;
    while idle_rounds < 200 {
        let page = match repo.feed_after(user, after, 7).await {
            Ok(page) => page,
            Err(error) => panic!("feed_after failed: {error}"),
        };
        match page.last() {
            Some(last) => {
                after = last.position();
                seen.extend(page);
                idle_rounds = 0;
            }
            None => {
                idle_rounds += 1;
                tokio::task::yield_now().await;
            }
        }
    }
    seen
}

/// A record for `sender` → `receiver` with `text`, created now.
pub fn record(sender: i64, receiver: i64, text: &str) -> NewMessageRecord {
    NewMessageRecord {
        sender_id: UserId::new(sender),
        receiver_id: UserId::new(receiver),
        message: text.to_owned(),
        client_message_id: None,
        created_at: crate::timestamp::now(),
        jobs: Vec::new(),
    }
}

/// The same with a client message id.
pub fn keyed_record(sender: i64, receiver: i64, text: &str, key: &str) -> NewMessageRecord {
    NewMessageRecord {
        client_message_id: Some(key.to_owned()),
        ..record(sender, receiver, text)
    }
}

/// `record` carrying one job of each of `kinds`, due when the message is created.
pub fn with_jobs(mut record: NewMessageRecord, kinds: &[&str]) -> NewMessageRecord {
    record.jobs = kinds
        .iter()
        .map(|kind| crate::ports::NewJob {
            kind: (*kind).to_owned(),
            subject: None,
            payload: "{}".to_owned(),
            due_at: record.created_at,
        })
        .collect();
    record
}

/// A fixed time, at microsecond precision, a little after `base` seconds past the epoch.
pub fn at(base: i64) -> OffsetDateTime {
    crate::timestamp::from_unix_micros(1_700_000_000_000_000 + base * 1_000_000 + 123_456)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Unpadded base64url, for hand-made (forged) tokens in authentication tests.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Expands to one `#[tokio::test]` per `MessageRepository` conformance case.
#[macro_export]
macro_rules! message_repository_suite {
    ($factory:expr) => {
        $crate::__conformance_cases!(repository, $factory;
            insert_then_get_round_trip,
            get_unknown_is_none,
            ids_ascend_in_insert_order,
            idempotent_insert_returns_original,
            idempotency_key_is_per_sender,
            concurrent_duplicate_inserts_make_one_row,
            concurrent_inserts_are_all_stored,
            history_page_is_newest_first_with_total,
            history_pages_cover_every_message_once,
            history_before_covers_every_message_once,
            history_after_is_in_id_order,
            history_holds_only_the_two_participants,
            status_only_moves_forward,
            status_changes_only_for_the_receiver,
            read_implies_delivered,
            set_status_ignores_unknown_and_repeated_ids,
            mark_conversation_read_counts_and_stops_at_the_id,
            mark_conversation_read_without_id_reads_all,
            undelivered_lists_sent_messages_oldest_first,
            feed_after_catches_up_in_id_order,
            catch_up_during_concurrent_writes_is_gap_free,
            conversations_are_newest_first_with_unread_counts,
            conversations_page_by_cursor,
            unread_total_counts_every_conversation,
            counts_and_backlogs_follow_every_way_of_reading,
            unicode_and_long_bodies_are_stored_byte_for_byte,
            sql_metacharacters_are_stored_verbatim,
            timestamps_round_trip,
            ping_answers,
        );
        $crate::__conformance_cases!(amendments, $factory;
            an_edit_replaces_the_text_under_a_new_revision,
            a_deletion_leaves_a_tombstone_in_history_and_counts,
            only_the_sender_amends_a_message_not_deleted,
            the_feed_places_changes_at_their_revisions,
            the_feed_during_concurrent_sends_and_edits_is_gap_free,
        );
        $crate::__conformance_cases!(relations, $factory;
            a_block_refuses_sends_both_ways_until_lifted,
            blocks_are_idempotent_and_listed_newest_first,
            blocked_and_acquainted_among_answer_subsets,
            last_seen_never_moves_back,
        );
    };
}

/// Expands to one `#[tokio::test]` per `Notifier` conformance case.
#[macro_export]
macro_rules! notifier_suite {
    ($factory:expr) => {
        $crate::__conformance_cases!(notifier, $factory;
            publish_reaches_a_subscriber,
            every_stream_of_the_user_receives,
            other_users_receive_nothing,
            events_arrive_in_publish_order,
            publish_without_subscribers_succeeds,
            dropped_stream_does_not_disturb_others,
            slow_subscriber_never_blocks_publish,
        );
    };
}

/// Expands to one `#[tokio::test]` per `Broadcast` conformance case. The factory
/// evaluates to a future of `Option<(A, B)>`: two handles of one broadcast (the same
/// one twice on one node, or two nodes sharing a broker), each dereferencing to it.
#[macro_export]
macro_rules! broadcast_suite {
    ($factory:expr) => {
        $crate::__broadcast_cases!($factory;
            every_subscriber_on_every_node_receives,
            payloads_arrive_in_publish_order,
            nothing_is_kept_for_later_subscribers,
            a_dropped_stream_does_not_disturb_others,
            a_slow_subscriber_never_blocks_publish,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __broadcast_cases {
    ($factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((here, there)) = $factory.await else { return };
                $crate::testing::broadcast::$case(&*here, &*there).await;
            }
        )+
    };
}

/// Expands to one `#[tokio::test]` per `JobStore` conformance case, each with a fresh
/// store from the factory.
#[macro_export]
macro_rules! job_store_suite {
    ($factory:expr) => {
        $crate::__conformance_cases!(jobs, $factory;
            only_due_jobs_are_claimed_oldest_due_first,
            the_limit_bounds_a_claim,
            success_removes_the_job,
            a_failure_retries_at_its_time_and_the_last_one_is_dead,
            an_ended_lease_is_taken_over_and_the_old_claim_cannot_finish,
            concurrent_claims_are_disjoint,
            operators_retry_and_discard_dead_jobs,
            many_attempts_finish_at_once_each_under_its_lease,
        );
    };
}

/// Expands to one `#[tokio::test]` per conformance case of a store that is both a
/// `MessageRepository` and a `JobStore`: jobs written with their message.
#[macro_export]
macro_rules! message_jobs_suite {
    ($factory:expr) => {
        $crate::__conformance_cases!(message_jobs, $factory;
            jobs_are_written_with_their_message_and_name_it,
            a_replay_writes_no_jobs,
            reads_write_a_copy_of_their_jobs_for_each_message_they_change,
        );
    };
}

/// Expands to one `#[tokio::test]` per `Presence` conformance case.
#[macro_export]
macro_rules! presence_suite {
    ($factory:expr) => {
        $crate::__conformance_cases!(presence, $factory;
            a_user_never_seen_is_offline_without_last_seen,
            joining_puts_online_and_leaving_the_last_seat_offline,
            online_while_any_seat_is_held,
            the_limit_counts_every_seat_of_the_user,
            lookup_answers_in_order_with_repeats,
        );
    };
}

/// Expands to one `#[tokio::test]` per `RateLimiter` conformance case; the factory
/// makes a limiter of `testing::rate_limiter::PER_MINUTE` a minute with bursts of
/// `testing::rate_limiter::BURST`.
#[macro_export]
macro_rules! rate_limiter_suite {
    ($factory:expr) => {
        $crate::__conformance_cases!(rate_limiter, $factory;
            a_burst_passes_then_the_next_waits,
            keys_are_independent,
            a_cost_spends_that_many_units,
            a_cost_above_the_burst_never_passes,
            allowance_comes_back_with_time,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = ($factory).await else {
                    return;
                };
                $crate::testing::$suite::$case(&*fixture).await;
            }
        )*
    };
}
