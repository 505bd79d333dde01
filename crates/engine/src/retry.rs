//! Retries: how often and how long a failed purge is tried again, and the dead-letter list
//! for purges given up on.
//!
//! A target whose purge fails is tried again after an exponential backoff with jitter
//! (`initial_backoff`, doubling, capped at `max_backoff`), or after the server's
//! `Retry-After` if that is longer. It is given up on (moved to the dead-letter list) after
//! `max_attempts` attempts, once it has been failing for `max_age`, or at once when the
//! failure is permanent (a wrong secret, a refused ban): retrying those as they are would
//! never work. The dead-letter list is listed with
//! [`Purger::dead_letters`](crate::Purger::dead_letters) and re-queued with
//! [`Purger::retry_dead`](crate::Purger::retry_dead).
//!
//! ```toml
//! [retry]
//! max_attempts = 8
//! initial_backoff = "200ms"
//! max_backoff = "30s"
//! max_age = "1h"
//! dead_letter_capacity = 10000
//! ```

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::PurgeError;
use crate::target::Target;

/// When failed purges are tried again, and when they are given up on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before a target is dead (default 8; 1 = never
    /// retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait before the first retry (default `200ms`); it doubles with every attempt.
    #[serde(
        default = "default_initial_backoff",
        with = "crate::settings::types::duration"
    )]
    pub initial_backoff: Duration,
    /// The longest wait between two attempts (default `30s`).
    #[serde(
        default = "default_max_backoff",
        with = "crate::settings::types::duration"
    )]
    pub max_backoff: Duration,
    /// A target failing for longer than this is dead, whatever its attempts (default `1h`).
    #[serde(default = "default_max_age", with = "crate::settings::types::duration")]
    pub max_age: Duration,
    /// Dead targets kept per backend (default 10000); beyond it the oldest are forgotten,
    /// counted and logged.
    #[serde(default = "default_dead_letter_capacity")]
    pub dead_letter_capacity: usize,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_dead_letter_capacity() -> usize {
    10_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_age: default_max_age(),
            dead_letter_capacity: default_dead_letter_capacity(),
        }
    }
}

impl RetryPolicy {
    /// No retries: a failed purge is dead at once.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts (the first included).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first wait and the cap of the exponential backoff.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The wait after the `failures`-th failed attempt: `initial_backoff * 2^(failures-1)`,
    /// capped at `max_backoff`, then a random point in its upper half, so that many targets
    /// failing together do not come back together.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// What to do with a target whose `attempts`-th attempt (the first is 1) failed with
    /// `error`, failing since `failing_for`: the one place that decides to retry or to give up,
    /// for the in-memory queue and the outbox alike.
    ///
    /// Given up on when the cause is permanent ([`Cause::is_transient`] is false), after
    /// `max_attempts`, or once failing for `max_age`; else retried after the backoff, or after
    /// the server's `Retry-After` when that is longer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_purge_hooks_engine::backend::{Cause, PurgeError};
    /// use cache_purge_hooks_engine::retry::{GiveUp, RetryPolicy, Verdict};
    ///
    /// let policy = RetryPolicy::default();
    /// let timeout = PurgeError::new(Cause::Timeout, "timed out");
    /// assert!(matches!(policy.decide(&timeout, 1, Duration::ZERO), Verdict::Retry { .. }));
    /// assert_eq!(policy.decide(&timeout, 8, Duration::ZERO), Verdict::GiveUp(GiveUp::Attempts));
    /// let secret = PurgeError::new(Cause::Authentication, "wrong secret");
    /// assert_eq!(policy.decide(&secret, 1, Duration::ZERO), Verdict::GiveUp(GiveUp::Permanent));
    /// ```
    ///
    /// [`Cause::is_transient`]: crate::backend::Cause::is_transient
    pub fn decide(&self, error: &PurgeError, attempts: u32, failing_for: Duration) -> Verdict {
        if !error.is_transient() {
            return Verdict::GiveUp(GiveUp::Permanent);
        }
        if attempts >= self.max_attempts {
            return Verdict::GiveUp(GiveUp::Attempts);
        }
        if failing_for >= self.max_age {
            return Verdict::GiveUp(GiveUp::Age);
        }
        let mut wait = self.backoff(attempts);
        if let Some(after) = error.retry_after() {
            wait = wait.max(after);
        }
        Verdict::Retry { after: wait }
    }
}

/// What [`RetryPolicy::decide`] says of a failed target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Try again after this long.
    Retry {
        /// The wait.
        after: Duration,
    },
    /// Give up: the target goes to the dead-letter list.
    GiveUp(GiveUp),
}

/// Why a target was given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// The cause is permanent: retrying as it is would never work.
    Permanent,
    /// `max_attempts` attempts failed.
    Attempts,
    /// It has been failing for `max_age`.
    Age,
}

/// A target given up on, kept for listing and retrying.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The backend that could not purge it.
    pub backend: String,
    /// What was to be purged.
    pub target: Target,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: PurgeError,
    /// When its first attempt failed.
    pub first_failure: SystemTime,
    /// When it was given up on.
    pub died: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p =
            RetryPolicy::default().with_backoff(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = p.backoff(30);
            assert!(capped >= Duration::from_millis(500) && capped <= Duration::from_secs(1));
        }
        assert!(p.backoff(u32::MAX) <= Duration::from_secs(1));
    }
}
