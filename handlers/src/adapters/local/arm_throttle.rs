//! ARM's throttling, for the local ARM server: token buckets for reads, writes and deletes, as
//! Azure Resource Manager documents them ("Request limits and throttling",
//! learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling:
//! per subscription, reads bucket 250 refilled 25/s, deletes 200 refilled 10/s, writes 200
//! refilled 10/s). A request that finds its bucket empty is answered 429 with `Retry-After`
//! (whole seconds until a token is back); every answer carries
//! `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}`, the tokens left.
//!
//! What it is for: the benchmark's throttled-delete scenario and tests of the production
//! adapter's pacing ([`crate::adapters::azure::throttle_gate`]); off unless configured.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub capacity: f64,
    pub per_sec: f64,
}

/// The three buckets ARM keeps per subscription (and principal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleOptions {
    pub reads: Bucket,
    pub writes: Bucket,
    pub deletes: Bucket,
}

impl ThrottleOptions {
    /// The documented subscription limits (see the module doc).
    pub fn arm_documented() -> Self {
        Self {
            reads: Bucket {
                capacity: 250.0,
                per_sec: 25.0,
            },
            writes: Bucket {
                capacity: 200.0,
                per_sec: 10.0,
            },
            deletes: Bucket {
                capacity: 200.0,
                per_sec: 10.0,
            },
        }
    }
}

/// Which bucket a request draws from: GET/HEAD read, DELETE deletes, anything else writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    Read,
    Write,
    Delete,
}

impl OpClass {
    pub fn of(method: &str) -> Self {
        match method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" => OpClass::Read,
            "DELETE" => OpClass::Delete,
            _ => OpClass::Write,
        }
    }

    /// The response header naming the tokens left in this class's bucket.
    pub fn remaining_header(self) -> &'static str {
        match self {
            OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Delete => "delete",
        }
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
}

/// The buckets with their current fill; 429s counted.
#[derive(Debug)]
pub struct ArmThrottle {
    opts: ThrottleOptions,
    state: Mutex<[State; 3]>,
    refused: std::sync::atomic::AtomicU64,
}

/// The answer to one request: admitted with `remaining` tokens left, or refused until
/// `retry_after` (whole seconds, at least 1).
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted { remaining: u64 },
    Refused { retry_after_secs: u64 },
}

impl ArmThrottle {
    pub fn new(opts: ThrottleOptions) -> Self {
        let now = Instant::now();
        let full = |b: Bucket| State {
            tokens: b.capacity,
            at: now,
        };
        Self {
            state: Mutex::new([full(opts.reads), full(opts.writes), full(opts.deletes)]),
            opts,
            refused: Default::default(),
        }
    }

    /// 429s answered so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn admit(&self, class: OpClass) -> Admission {
        let (i, b) = match class {
            OpClass::Read => (0, self.opts.reads),
            OpClass::Write => (1, self.opts.writes),
            OpClass::Delete => (2, self.opts.deletes),
        };
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut g[i];
        let now = Instant::now();
        s.tokens = (s.tokens + now.duration_since(s.at).as_secs_f64() * b.per_sec).min(b.capacity);
        s.at = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Admission::Admitted {
                remaining: s.tokens.floor() as u64,
            }
        } else {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let wait = Duration::from_secs_f64((1.0 - s.tokens) / b.per_sec.max(1e-9));
            Admission::Refused {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        }
    }

    /// The 429 body ARM sends (error code and message as in the documented
    /// `SubscriptionRequestsThrottled` answers).
    pub fn refusal_body(class: OpClass, retry_after_secs: u64) -> serde_json::Value {
        serde_json::json!({"error": {
            "code": "SubscriptionRequestsThrottled",
            "message": format!(
                "Number of {} requests for subscription exceeded the limit. Please try again after '{retry_after_secs}' seconds.",
                class.noun()
            ),
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refuses_with_whole_seconds() {
        let t = ArmThrottle::new(ThrottleOptions {
            reads: Bucket {
                capacity: 2.0,
                per_sec: 0.5,
            },
            ..ThrottleOptions::arm_documented()
        });
        assert_eq!(t.admit(OpClass::Read), Admission::Admitted { remaining: 1 });
        assert_eq!(t.admit(OpClass::Read), Admission::Admitted { remaining: 0 });
        // One token takes 2 s at 0.5/s.
        assert_eq!(
            t.admit(OpClass::Read),
            Admission::Refused {
                retry_after_secs: 2
            }
        );
        assert_eq!(t.refused(), 1);
        // Other classes have their own buckets.
        assert!(matches!(
            t.admit(OpClass::Delete),
            Admission::Admitted { remaining: 199 }
        ));
        assert_eq!(OpClass::of("delete"), OpClass::Delete);
        assert_eq!(OpClass::of("PUT"), OpClass::Write);
    }
}
