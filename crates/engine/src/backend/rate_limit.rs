//! A client-side token bucket: [`RateLimit`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::settings::types::RequestRate;

/// The jitter [`RateLimit::within`] absorbs: requests arriving this much closer together than
/// they left.
const PROVIDER_JITTER: Duration = Duration::from_millis(50);

/// A client-side token bucket: the policy that keeps a backend within its provider's request
/// rate, beside the mechanism that sends.
///
/// A [`RateLimit`] holds up to `burst` tokens and gains `rate` tokens per second; every request
/// takes one (or, for a bucket of items, as many as it carries) and waits while the bucket
/// is empty. Waiting is by reservation: each caller takes its tokens at once, possibly into
/// debt, and sleeps until that debt is paid back by the refill, so concurrent callers are
/// served in the order they asked and the bucket never lets more through than `burst` plus
/// `rate` per second since it was full, which is exactly what a provider enforcing the same
/// bucket accepts without a 429.
///
/// A bucket on this side and the provider's cannot run in lockstep: requests take varying
/// time on the way, and while the provider's bucket is full the refill it would have given is
/// lost, so two requests that left a token's interval apart may arrive closer than that.
/// [`RateLimit::within`] therefore keeps a reserve: the provider's bucket less one token and
/// 50 ms worth of refill, which absorbs that much jitter and costs a few requests of the
/// first burst only.
///
/// When a provider answers 429 anyway (another client shares the account's budget),
/// [`RateLimit::pause`] empties the bucket for the `Retry-After` it gave, so that the calls in
/// flight wait too instead of each drawing its own 429.
///
/// ```
/// use std::time::Duration;
/// use cache_purge_hooks_engine::backend::RateLimit;
/// use cache_purge_hooks_engine::settings::types::RequestRate;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limit = RateLimit::new(RequestRate::per_second_of(100.0).unwrap(), 5);
/// let start = std::time::Instant::now();
/// for _ in 0..10 {
///     limit.acquire(1).await; // 5 at once, then one every 10 ms
/// }
/// assert!(start.elapsed() >= Duration::from_millis(45));
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens at `at` (negative: reserved by callers still waiting).
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// A full bucket of `burst` tokens (at least 1) refilled at `rate`.
    pub fn new(rate: RequestRate, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: rate.per_second(),
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// A bucket that stays within a provider's bucket of `burst` tokens refilled at `rate`:
    /// the same rate, and `burst` less a reserve of one token and 50 ms of refill (see the
    /// type's documentation); never less than one token.
    ///
    /// ```
    /// use cache_purge_hooks_engine::backend::RateLimit;
    /// use cache_purge_hooks_engine::settings::types::RequestRate;
    ///
    /// let pro = RateLimit::within(RequestRate::per_second_of(5.0).unwrap(), 25);
    /// assert_eq!(pro.burst(), 23); // 25 - 1 - ceil(5/s * 50ms)
    /// let enterprise = RateLimit::within(RequestRate::per_second_of(50.0).unwrap(), 500);
    /// assert_eq!(enterprise.burst(), 496);
    /// ```
    pub fn within(rate: RequestRate, burst: u32) -> Self {
        let reserve = 1 + (rate.per_second() * PROVIDER_JITTER.as_secs_f64()).ceil() as u32;
        Self::new(rate, burst.saturating_sub(reserve).max(1))
    }

    /// Tokens per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `n` tokens (at least 1; more than `burst` counts as `burst`), waiting until the
    /// refill has paid for them.
    pub async fn acquire(&self, n: u32) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Reserves `n` tokens at `now` and says how long the caller must wait for them.
    fn reserve(&self, n: u32, now: Instant) -> Duration {
        let n = f64::from(n.max(1)).min(self.burst);
        let mut bucket = self.lock();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = bucket.at.max(now);
        bucket.tokens -= n;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.per_second)
        }
    }

    /// Empties the bucket for `wait`: nothing more goes out before then (a provider's
    /// `Retry-After`), and the refill starts again afterwards.
    pub fn pause(&self, wait: Duration) {
        let now = Instant::now();
        let mut bucket = self.lock();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        // A debt worth `wait` of refill, unless callers already reserved more.
        let debt = -(wait.as_secs_f64() * self.per_second);
        bucket.tokens = tokens.min(0.0).min(debt);
        bucket.at = bucket.at.max(now);
    }
}

impl RateLimit {
    /// Lowers the bucket to at most `tokens` now: what a provider says is left of its own
    /// bucket (Akamai's `X-Ratelimit-Remaining`), when another client of the account spends
    /// from it too. Never raises it, so reservations already made stay paid for.
    ///
    /// ```
    /// use cache_purge_hooks_engine::backend::RateLimit;
    /// use cache_purge_hooks_engine::settings::types::RequestRate;
    ///
    /// let limit = RateLimit::new(RequestRate::per_second_of(1.0).unwrap(), 100);
    /// limit.at_most(0);
    /// assert_eq!(limit.available(), 0);
    /// ```
    pub fn at_most(&self, tokens: u32) {
        let now = Instant::now();
        let mut bucket = self.lock();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let refilled = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.tokens = refilled.min(f64::from(tokens));
        bucket.at = bucket.at.max(now);
    }

    /// Whole tokens available now (0 while callers are in debt).
    pub fn available(&self) -> u32 {
        let now = Instant::now();
        let bucket = self.lock();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        tokens.max(0.0).floor() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit::new(RequestRate::per_second_of(per_second).unwrap(), burst)
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_one_token_per_interval() {
        let l = limit(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.reserve(1, t0), Duration::ZERO);
        }
        // Each next caller waits one more interval (100 ms) than the one before.
        assert_eq!(l.reserve(1, t0), Duration::from_millis(100));
        assert_eq!(l.reserve(1, t0), Duration::from_millis(200));
        // A second later, the refill has paid the debt and one token more... capped at burst.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(l.reserve(1, later), Duration::ZERO);
        }
        assert!(l.reserve(1, later) > Duration::ZERO);
    }

    #[test]
    fn items_take_as_many_tokens_as_they_are() {
        let l = limit(1000.0, 1000);
        let t0 = Instant::now();
        assert_eq!(l.reserve(600, t0), Duration::ZERO);
        let wait = l.reserve(600, t0);
        assert!(
            (wait.as_secs_f64() - 0.2).abs() < 1e-6,
            "200 tokens short at 1000/s: {wait:?}"
        );
        // More than the bucket holds counts as the whole bucket.
        let l = limit(10.0, 5);
        assert_eq!(l.reserve(50, t0), Duration::ZERO);
    }

    #[test]
    fn within_keeps_a_reserve_below_the_providers_bucket() {
        let rate = |r| RequestRate::per_second_of(r).unwrap();
        assert_eq!(RateLimit::within(rate(5.0 / 60.0), 25).burst(), 23);
        assert_eq!(RateLimit::within(rate(10.0), 50).burst(), 48);
        assert_eq!(RateLimit::within(rate(100.0), 500).burst(), 494);
        assert_eq!(RateLimit::within(rate(10.0), 1).burst(), 1);
        assert_eq!(RateLimit::within(rate(10.0), 1).per_second(), 10.0);
    }

    #[test]
    fn a_provider_reporting_fewer_tokens_lowers_the_bucket_but_never_raises_it() {
        let l = limit(10.0, 100);
        l.at_most(5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.reserve(1, t0), Duration::ZERO);
        }
        assert!(
            l.reserve(1, t0) > Duration::ZERO,
            "the sixth waits for the refill"
        );
        let l = limit(10.0, 3);
        l.at_most(50);
        assert_eq!(l.available(), 3);
    }

    #[test]
    fn a_pause_holds_every_caller_back() {
        let l = limit(10.0, 5);
        l.pause(Duration::from_secs(2));
        let wait = l.reserve(1, Instant::now());
        assert!(
            wait >= Duration::from_millis(2050) && wait <= Duration::from_millis(2150),
            "{wait:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_callers_never_exceed_burst_plus_rate() {
        let l = std::sync::Arc::new(limit(500.0, 10));
        let start = Instant::now();
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.acquire(1).await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap() - start);
        }
        times.sort();
        // The k-th request (from 0) goes no earlier than (k + 1 - burst) / rate.
        for (k, at) in times.iter().enumerate() {
            let earliest = (k as f64 + 1.0 - 10.0).max(0.0) / 500.0;
            assert!(at.as_secs_f64() + 1e-3 >= earliest, "request {k} at {at:?}");
        }
        // And the last one not much later than needed: 50 requests beyond the burst at 500/s.
        assert!(times[59] <= Duration::from_millis(300), "{:?}", times[59]);
    }
}
