//! Retries, in two layers that never multiply.
//!
//! - **Transport** ([`RetryConfig::to_options`]): one request is retried by the `azure_core`
//!   pipeline's exponential policy and by nothing else — the blob SDK clients, the Blob Batch
//!   pipeline and the REST adapters ([`super::rest::RestClient`]) all send through such a
//!   pipeline. It retries 408/429/500/502/503/504 and dropped connections, adds jitter, and for
//!   429/503 waits at least what `Retry-After` says. One request is sent at most
//!   `1 + max_retries` times: [`TRANSPORT_ATTEMPTS`] (7) with the default configuration.
//! - **Whole operation** ([`with_retries`]): for faults the pipeline never saw — a batch
//!   response missing an item, an injected fault in the reliability suite. It retries only
//!   [`StoreError::Transient`]; a transient failure the pipeline already retried comes back as
//!   [`StoreError::RetriesSpent`] and is not retried again (the message is redelivered later
//!   instead), so a request that keeps failing is still sent at most [`TRANSPORT_ATTEMPTS`]
//!   times, however the calls are nested.

use std::future::Future;
use std::time::Duration as StdDuration;

use azure_core::http::{ExponentialRetryOptions, RetryOptions};
use rand::Rng;
use time::{Duration, OffsetDateTime};

use crate::ports::blob::{StoreError, StoreResult};

/// Retries after the first attempt, by default (transport layer, per request).
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 6;

/// The attempt budget: with the default [`RetryConfig`] one request (a blob call or a REST call)
/// is sent at most this many times in total (1 + [`DEFAULT_MAX_RETRIES`]), and a failure that
/// spent it is never retried by an outer layer. Proved against an always-503 server by
/// `tests/it/azure_blob/retries.rs::retry_budget` and `tests/it/azure_control_plane/retry_budget.rs::rest_retry_budget`.
pub const TRANSPORT_ATTEMPTS: u32 = DEFAULT_MAX_RETRIES + 1;

/// Bounds for both retry layers.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt: a request is sent at most `1 + max_retries` times.
    pub max_retries: u32,
    pub initial_delay: StdDuration,
    pub max_delay: StdDuration,
    /// Give up retrying once this much time has passed since the first failure.
    pub max_total: StdDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            initial_delay: StdDuration::from_millis(300),
            max_delay: StdDuration::from_secs(30),
            max_total: StdDuration::from_secs(120),
        }
    }
}

impl RetryConfig {
    /// Pipeline retry options for the SDK clients.
    pub(crate) fn to_options(&self) -> RetryOptions {
        RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: to_time(self.initial_delay),
            max_retries: self.max_retries,
            max_total_elapsed: to_time(self.max_total),
            max_delay: to_time(self.max_delay),
        })
    }

    /// Delay before retry number `attempt` (1-based): full jitter over an exponential ceiling.
    pub fn backoff(&self, attempt: u32) -> StdDuration {
        let ceiling = self
            .initial_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let millis = ceiling.as_millis().max(1) as u64;
        StdDuration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis))
    }
}

fn to_time(d: StdDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::MAX)
}

/// Parse a `Retry-After` value: delta-seconds or an HTTP date (relative to `now`).
/// For callers that see raw responses outside the SDK pipeline (batch sub-responses).
pub(crate) fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<StdDuration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(StdDuration::from_secs(secs));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let when = time::PrimitiveDateTime::parse(value, &fmt)
        .ok()?
        .assume_utc();
    Some(StdDuration::try_from(when - now).unwrap_or(StdDuration::ZERO))
}

/// Run `op` until it succeeds, fails with anything but [`StoreError::Transient`] (including
/// [`StoreError::RetriesSpent`]: the transport already retried that), or the bounds are reached.
pub(crate) async fn with_retries<T, F, Fut>(
    cfg: &RetryConfig,
    what: &str,
    mut op: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let start = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(StoreError::Transient(msg))
                if attempt < cfg.max_retries && start.elapsed() < cfg.max_total =>
            {
                attempt += 1;
                let delay = cfg.backoff(attempt);
                tracing::debug!(what, attempt, ?delay, error = %msg, "transient storage error, retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn retry_after_seconds_and_date() {
        let now = time::macros::datetime!(2026-11-28 20:00:00 UTC);
        assert_eq!(parse_retry_after("3", now), Some(StdDuration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 20:00:07 GMT", now),
            Some(StdDuration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 19:00:00 GMT", now),
            Some(StdDuration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let cfg = RetryConfig::default();
        for attempt in 1..40 {
            assert!(cfg.backoff(attempt) <= cfg.max_delay);
        }
        assert!(cfg.backoff(1) <= cfg.initial_delay);
    }

    #[tokio::test]
    async fn retries_transient_only_and_stops() {
        let cfg = RetryConfig {
            max_retries: 3,
            initial_delay: StdDuration::from_millis(1),
            max_delay: StdDuration::from_millis(2),
            max_total: StdDuration::from_secs(5),
        };
        let n = AtomicU32::new(0);
        let r: StoreResult<()> = with_retries(&cfg, "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Transient("x".into()))
        })
        .await;
        assert!(r.unwrap_err().is_transient());
        assert_eq!(n.load(Ordering::SeqCst), 4);

        let n = AtomicU32::new(0);
        let r: StoreResult<()> = with_retries(&cfg, "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::ConditionFailed("x".into()))
        })
        .await;
        assert!(matches!(r, Err(StoreError::ConditionFailed(_))));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_whose_retries_are_spent_is_not_retried_again() {
        let cfg = RetryConfig {
            max_retries: 3,
            initial_delay: StdDuration::from_millis(1),
            max_delay: StdDuration::from_millis(2),
            max_total: StdDuration::from_secs(5),
        };
        let n = AtomicU32::new(0);
        let r: StoreResult<()> = with_retries(&cfg, "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::RetriesSpent {
                what: "x".into(),
                source: "503".into(),
            })
        })
        .await;
        assert!(r.unwrap_err().is_transient());
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_stated_budget_is_the_default() {
        assert_eq!(RetryConfig::default().max_retries + 1, TRANSPORT_ATTEMPTS);
    }
}
