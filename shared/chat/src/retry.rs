//! One retry policy for every call to a chat platform: a total time budget per call, the
//! platform's `Retry-After` honoured (clamped, so an absurd value cannot overflow or park a
//! call), and otherwise exponential backoff with full jitter, so many clicks failing at once do
//! not retry in step (AWS Architecture Blog, "Exponential Backoff And Jitter").

use std::time::{Duration, Instant};

use regate_core::ports::ChatError;

/// The first backoff's ceiling; each retry doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A longer `Retry-After` is read as this: any wait past the budget gives up at once anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The shortest timeout an attempt gets, however little of the budget is left.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);

/// The retries of one call, within its time budget.
pub struct Retries {
    started: Instant,
    budget: Duration,
    /// Retries so far.
    retries: u32,
}

impl Retries {
    pub fn start(budget: Duration) -> Self {
        Self {
            started: Instant::now(),
            budget,
            retries: 0,
        }
    }

    /// The next attempt's timeout: what is left of the budget, at least 100 ms and at most
    /// `max`.
    pub fn attempt_timeout(&self, max: Duration) -> Duration {
        let remaining = self.budget.saturating_sub(self.started.elapsed());
        remaining.clamp(MIN_ATTEMPT_TIMEOUT, max.max(MIN_ATTEMPT_TIMEOUT))
    }

    /// Waits before the next attempt after `error`: as long as `retry_after` asks when the
    /// platform said (clamped to [`MAX_RETRY_AFTER`]), otherwise a jittered backoff. Gives the
    /// error back instead when the wait would end past the budget; `call` names the call in
    /// that log line.
    pub async fn wait(
        &mut self,
        retry_after: Option<Duration>,
        error: ChatError,
        call: &str,
    ) -> Result<(), ChatError> {
        let delay = match retry_after {
            Some(asked) => asked.min(MAX_RETRY_AFTER),
            None => full_jitter(self.retries, fastrand::f64()),
        };
        if self.started.elapsed().saturating_add(delay) >= self.budget {
            tracing::warn!(call, error = %error, "chat call gave up within its time budget");
            return Err(error);
        }
        tokio::time::sleep(delay).await;
        self.retries = self.retries.saturating_add(1);
        Ok(())
    }
}

/// Full jitter: a uniform share (`share` in [0, 1)) of the exponential ceiling of retry
/// number `retries`.
fn full_jitter(retries: u32, share: f64) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(retries.min(16)))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(share.clamp(0.0, 1.0))
}

/// A `Retry-After` header in seconds (the form Slack and the Bot Connector send), clamped.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds.min(MAX_RETRY_AFTER.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_a_uniform_share_of_a_doubling_ceiling_capped_at_two_seconds() {
        assert_eq!(full_jitter(0, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(0, 0.5), Duration::from_millis(100));
        assert_eq!(full_jitter(1, 0.5), Duration::from_millis(200));
        assert_eq!(full_jitter(3, 0.5), Duration::from_millis(800));
        assert_eq!(full_jitter(4, 0.5), Duration::from_secs(1));
        assert_eq!(
            full_jitter(40, 0.999),
            Duration::from_secs(2).mul_f64(0.999)
        );
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| full_jitter(2, fastrand::f64())).collect();
        assert!(draws.len() > 10, "jittered delays differ: {draws:?}");
        assert!(draws.iter().all(|d| *d < Duration::from_millis(800)));
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_clamped() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after", "99999999999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test]
    async fn a_wait_past_the_budget_gives_the_error_back_at_once() {
        let mut retries = Retries::start(Duration::from_millis(500));
        let started = Instant::now();
        let error = ChatError::RateLimited("asked to wait 30 s".into());
        let result = retries
            .wait(Some(Duration::from_secs(30)), error.clone(), "test")
            .await;
        assert_eq!(result, Err(error));
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(retries
            .wait(
                Some(Duration::from_millis(10)),
                ChatError::Unavailable("x".into()),
                "test"
            )
            .await
            .is_ok());
        let timeout = retries.attempt_timeout(Duration::from_secs(5));
        assert!(
            (MIN_ATTEMPT_TIMEOUT..Duration::from_millis(500)).contains(&timeout),
            "an attempt gets at most what is left: {timeout:?}"
        );
        let fresh = Retries::start(Duration::from_secs(60));
        assert_eq!(
            fresh.attempt_timeout(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
