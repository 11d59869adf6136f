//! A throttling budget shared by every request of one [`super::rest::RestClient`] (and its
//! clones): when the service answers 429 with `Retry-After`, no request of this client is sent
//! again before that time — not only the one that was refused.
//!
//! Why: ARM (and Graph) throttle per principal and subscription with token buckets and answer
//! 429 + `Retry-After` ("If you send a request before the retry value has elapsed, your request
//! isn't processed, and a new retry value is returned" — learn.microsoft.com, Azure Resource
//! Manager "Request limits and throttling"). Concurrent slice invocations in one process share
//! the client: if each request waited out its own 429 alone, the others would keep spending the
//! bucket and collecting 429s, and a request could lose the race until its transport retries
//! were spent (a failed item). The gate makes the whole process pause together, for as long as
//! the service said, and then resume.
//!
//! A request refused with 429 is re-sent by the gate once the pause is over; this does not
//! spend the transport layer's attempt budget ([`super::retry`]), because the service asked for
//! exactly this wait. The gate gives up after `max_wait` (then the 429 goes up to the retry
//! policy and, past that, the message is redelivered later); a `Retry-After` longer than
//! `max_wait` is never imposed on the other requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::http::headers::HeaderName;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};

/// When the service gives a 429 without any retry header.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct ThrottleGate {
    /// No request is sent before this instant.
    resume_at: Mutex<Option<Instant>>,
    throttled: AtomicU64,
    max_wait: Duration,
}

impl ThrottleGate {
    pub fn new(max_wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            resume_at: Mutex::new(None),
            throttled: AtomicU64::new(0),
            max_wait,
        })
    }

    /// 429 answers seen so far (each was waited out, not retried blindly).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    fn resume_at(&self) -> Option<Instant> {
        *self.resume_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until the shared pause (if any) is over.
    async fn wait_turn(&self) {
        while let Some(at) = self.resume_at() {
            let now = Instant::now();
            if at <= now {
                return;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
    }

    /// The service said: nothing before `now + pause`. Only ever extends the pause.
    fn pause(&self, pause: Duration) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + pause;
        let mut g = self.resume_at.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none_or(|at| at < until) {
            *g = Some(until);
        }
    }
}

/// How long a 429 asks us to wait: `retry-after-ms`, `x-ms-retry-after-ms`, else `Retry-After`
/// (seconds or an HTTP date).
fn retry_after(headers: &azure_core::http::headers::Headers) -> Option<Duration> {
    for h in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = headers
            .get_optional_str(&HeaderName::from_static(h))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
    }
    headers
        .get_optional_str(&HeaderName::from_static("retry-after"))
        .and_then(|v| super::retry::parse_retry_after(v, time::OffsetDateTime::now_utc()))
}

#[async_trait::async_trait]
impl Policy for ThrottleGate {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let start = Instant::now();
        loop {
            self.wait_turn().await;
            let resp = next[0].send(ctx, request, &next[1..]).await?;
            if u16::from(resp.status()) != 429 {
                return Ok(resp);
            }
            let pause = retry_after(resp.headers()).unwrap_or(DEFAULT_PAUSE);
            if start.elapsed() + pause > self.max_wait {
                // Longer than this client waits (a purge budget spent for the hour, say): the
                // 429 goes to the caller (the message is retried later) and the other requests
                // of the client are not held for it.
                self.throttled.fetch_add(1, Ordering::Relaxed);
                return Ok(resp);
            }
            self.pause(pause);
            tracing::debug!(
                ?pause,
                "throttled (429): every request of this client waits"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_holds_every_caller_and_only_extends() {
        let g = ThrottleGate::new(Duration::from_secs(5));
        g.pause(Duration::from_millis(80));
        g.pause(Duration::from_millis(10)); // shorter: must not shorten the pause
        assert_eq!(g.throttled(), 2);
        let t = Instant::now();
        let (a, b) = tokio::join!(g.wait_turn(), g.wait_turn());
        let _ = (a, b);
        assert!(
            t.elapsed() >= Duration::from_millis(70),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = azure_core::http::headers::Headers::new();
        h.insert("retry-after", "2");
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150");
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
    }
}
