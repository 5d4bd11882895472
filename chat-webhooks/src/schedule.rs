//! When a failed delivery is tried again.

use std::time::Duration;

/// The waits between attempts: after the first failure the first wait, and so on; after
/// the last, the delivery is dead. Each wait is spread by up to a tenth either way so
/// that deliveries failed together are not all retried together, and a receiver's
/// `Retry-After` is honoured when it asks for longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    waits: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// Standard Webhooks' example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
    /// (ten attempts in all, over about three days).
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        Self {
            waits: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                hours(2),
                hours(5),
                hours(10),
                hours(14),
                hours(20),
                hours(24),
            ],
        }
    }
}

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl RetrySchedule {
    /// A schedule with these waits (none: one attempt only).
    pub fn new(waits: Vec<Duration>) -> Self {
        Self { waits }
    }

    /// Attempts in all.
    pub fn attempts(&self) -> usize {
        self.waits.len() + 1
    }

    /// The wait before the next attempt after `attempts` failed ones (1 after the first),
    /// or `None` when that was the last. `retry_after` is the receiver's ask; `spread`
    /// in `[-1, 1]` picks where in the jitter band the wait lands.
    pub fn next_wait(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        spread: f64,
    ) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let base = *self.waits.get(index)?;
        let jittered = base.mul_f64(0.1_f64.mul_add(spread.clamp(-1.0, 1.0), 1.0));
        Some(match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        })
    }

    /// [`next_wait`](Self::next_wait) with a random spread.
    pub fn next_wait_jittered(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let spread = getrandom::u32().map_or(0.0, |r| {
            (f64::from(r) / f64::from(u32::MAX)).mul_add(2.0, -1.0)
        });
        self.next_wait(attempts, retry_after, spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_schedule_with_jitter_and_retry_after() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 10);
        assert_eq!(
            schedule.next_wait(1, None, 0.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            schedule.next_wait(2, None, 0.0),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            schedule.next_wait(9, None, 0.0),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            schedule.next_wait(10, None, 0.0),
            None,
            "the tenth failure is the last"
        );
        assert_eq!(schedule.next_wait(0, None, 0.0), None);
        // Jitter: a tenth either way, never more.
        assert_eq!(
            schedule.next_wait(2, None, 1.0),
            Some(Duration::from_secs(330))
        );
        assert_eq!(
            schedule.next_wait(2, None, -5.0),
            Some(Duration::from_secs(270))
        );
        for _ in 0..100 {
            let wait = schedule.next_wait_jittered(2, None).unwrap();
            assert!((270..=330).contains(&wait.as_secs()), "{wait:?}");
        }
        // Retry-After when it asks for longer, capped at a day.
        let asked = Some(Duration::from_secs(60));
        assert_eq!(
            schedule.next_wait(1, asked, 0.0),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            schedule.next_wait(2, asked, 0.0),
            Some(Duration::from_secs(300))
        );
        let huge = Some(Duration::from_secs(365 * 24 * 3600));
        assert_eq!(
            schedule.next_wait(1, huge, 0.0),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(RetrySchedule::new(Vec::new()).next_wait(1, None, 0.0), None);
    }
}
