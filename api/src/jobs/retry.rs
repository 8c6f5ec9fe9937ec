//! When a failed job runs again: exponential backoff with jitter, so jobs that failed together
//! (an outage) do not all come back in the same instant, and a dead letter after the last
//! attempt.

use std::time::Duration;

use rand::Rng;

/// How often a queue's jobs are tried and how long they wait in between.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last failure the job is dead.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles with every further one…
    pub first_delay: Duration,
    /// …up to this.
    pub max_delay: Duration,
    /// Each wait is moved at random by up to this fraction, earlier or later.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60 * 60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Runs once; a failure is final (the next tick of a recurring schedule is the retry).
    pub fn once() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `failed + 1`, after `failed` failed attempts; `None` when that
    /// was the last.
    pub fn delay_after(&self, failed: u32) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let doublings = failed.saturating_sub(1).min(30);
        let base = self
            .first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let spread = rand::rng().random_range(-self.jitter..=self.jitter);
        Some(base.mul_f64((1.0 + spread).max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_jitter_up_to_the_cap_and_stop_at_the_last_attempt() {
        let policy = RetryPolicy {
            max_attempts: 6,
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            jitter: 0.2,
        };
        let expected = [10.0, 20.0, 40.0, 60.0, 60.0];
        for _ in 0..200 {
            for (failed, base) in (1..).zip(expected) {
                let delay = policy
                    .delay_after(failed)
                    .expect("attempts left")
                    .as_secs_f64();
                assert!(
                    (base * 0.8..=base * 1.2).contains(&delay),
                    "after {failed} failures: {delay}"
                );
            }
            assert_eq!(policy.delay_after(6), None);
        }
        let spread: std::collections::HashSet<u128> = (0..50)
            .filter_map(|_| policy.delay_after(1))
            .map(|delay| delay.as_millis())
            .collect();
        assert!(spread.len() > 10, "jitter spreads the waits: {spread:?}");
    }
}
