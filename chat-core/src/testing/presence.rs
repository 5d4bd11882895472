//! The `Presence` conformance cases. Panics are the failures.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::ids::UserId;
use crate::ports::{Presence, UserPresence};
use crate::timestamp;

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);

async fn one(presence: &dyn Presence, user: UserId) -> UserPresence {
    let answer = presence.lookup(&[user]).await.unwrap();
    assert_eq!(answer.len(), 1);
    answer[0]
}

pub async fn a_user_never_seen_is_offline_without_last_seen(presence: &dyn Presence) {
    let answer = one(presence, UserId::new(404)).await;
    assert_eq!(
        answer,
        UserPresence {
            user_id: UserId::new(404),
            online: false,
            last_seen_at: None
        }
    );
}

pub async fn joining_puts_online_and_leaving_the_last_seat_offline(presence: &dyn Presence) {
    let before = timestamp::now();
    let seat = presence.join(ALICE, 5).await.unwrap().unwrap();
    assert_eq!(seat.user, ALICE);
    assert!(one(presence, ALICE).await.online);
    presence.leave(seat).await.unwrap();
    let after = one(presence, ALICE).await;
    assert!(!after.online);
    let seen = after
        .last_seen_at
        .expect("a user who left has a last-seen time");
    // Clocks of nodes and Redis may differ a little from this process's.
    assert!(
        seen >= before - time::Duration::seconds(2),
        "{seen} before {before}"
    );
}

pub async fn online_while_any_seat_is_held(presence: &dyn Presence) {
    let phone = presence.join(ALICE, 5).await.unwrap().unwrap();
    let laptop = presence.join(ALICE, 5).await.unwrap().unwrap();
    assert_ne!(phone, laptop);
    presence.leave(phone).await.unwrap();
    assert!(one(presence, ALICE).await.online);
    // Leaving twice changes nothing.
    presence.leave(phone).await.unwrap();
    assert!(one(presence, ALICE).await.online);
    presence.leave(laptop).await.unwrap();
    assert!(!one(presence, ALICE).await.online);
}

pub async fn the_limit_counts_every_seat_of_the_user(presence: &dyn Presence) {
    let first = presence.join(ALICE, 2).await.unwrap().unwrap();
    let _second = presence.join(ALICE, 2).await.unwrap().unwrap();
    assert_eq!(presence.join(ALICE, 2).await.unwrap(), None);
    // Another user has seats of their own.
    assert!(presence.join(BOB, 2).await.unwrap().is_some());
    presence.leave(first).await.unwrap();
    assert!(presence.join(ALICE, 2).await.unwrap().is_some());
    assert_eq!(presence.join(ALICE, 2).await.unwrap(), None);
}

pub async fn lookup_answers_in_order_with_repeats(presence: &dyn Presence) {
    let _seat = presence.join(BOB, 5).await.unwrap().unwrap();
    let answer = presence.lookup(&[ALICE, BOB, ALICE]).await.unwrap();
    let users: Vec<_> = answer.iter().map(|p| (p.user_id, p.online)).collect();
    assert_eq!(users, [(ALICE, false), (BOB, true), (ALICE, false)]);
    assert!(presence.lookup(&[]).await.unwrap().is_empty());
}
