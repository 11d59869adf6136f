//! A request's lifecycle as a ticketing system steers it: the states it passes through, which
//! changes are allowed, deadline extensions within the statutory limits, cancellation and the
//! deadline warnings the timer sends. Pure: the state account keeps one [`Lifecycle`] document
//! per request (`dsr-state/requests/<id>/lifecycle.json`), changed with optimistic concurrency.

use time::{Duration, OffsetDateTime};

use super::deadline::Regulation;
use super::report::FinalStatus;
use super::request::RequestId;

/// Where a request is. Serialised in snake_case: the values the results queue and `status` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Received,
    Planned,
    InProgress,
    NeedsReview,
    Completed,
    /// Completed, with a Log Analytics purge still running (ends completed or partially failed).
    CompletedPurgePending,
    PartiallyFailed,
    Rejected,
    Cancelled,
}

impl RequestState {
    pub const ALL: [RequestState; 9] = [
        RequestState::Received,
        RequestState::Planned,
        RequestState::InProgress,
        RequestState::NeedsReview,
        RequestState::Completed,
        RequestState::CompletedPurgePending,
        RequestState::PartiallyFailed,
        RequestState::Rejected,
        RequestState::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::Planned => "planned",
            RequestState::InProgress => "in_progress",
            RequestState::NeedsReview => "needs_review",
            RequestState::Completed => "completed",
            RequestState::CompletedPurgePending => "completed_purge_pending",
            RequestState::PartiallyFailed => "partially_failed",
            RequestState::Rejected => "rejected",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// Nothing more will happen to the request by itself.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RequestState::Completed
                | RequestState::PartiallyFailed
                | RequestState::Rejected
                | RequestState::Cancelled
        )
    }

    /// The request still owes the data subject an answer: its deadline matters (warnings,
    /// extensions). A pending purge is Log Analytics' work, not an open answer.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            RequestState::Received
                | RequestState::Planned
                | RequestState::InProgress
                | RequestState::NeedsReview
        )
    }

    /// Cancel applies while nothing irreversible is left to finish: before or during the work,
    /// or while it waits for a person. A pending purge cannot be called back.
    pub fn is_cancellable(&self) -> bool {
        self.is_open()
    }

    /// The state a finished report puts the request in.
    pub fn from_final(status: FinalStatus) -> RequestState {
        match status {
            FinalStatus::Completed => RequestState::Completed,
            FinalStatus::CompletedPurgePending => RequestState::CompletedPurgePending,
            FinalStatus::PartiallyFailed => RequestState::PartiallyFailed,
            FinalStatus::NeedsReview => RequestState::NeedsReview,
            FinalStatus::Rejected => RequestState::Rejected,
            FinalStatus::Cancelled => RequestState::Cancelled,
        }
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `from -> to` is a change the lifecycle allows (a state to itself is not a change).
pub fn allowed(from: RequestState, to: RequestState) -> bool {
    use RequestState::*;
    match from {
        Received => matches!(to, Planned | Rejected | Cancelled),
        Planned => matches!(to, InProgress | Cancelled),
        InProgress => matches!(
            to,
            NeedsReview | Completed | CompletedPurgePending | PartiallyFailed | Cancelled
        ),
        // A person's decisions finish the request (review: the attribution half of issue 17).
        NeedsReview => matches!(
            to,
            Completed | CompletedPurgePending | PartiallyFailed | Cancelled
        ),
        // The timer's purge poll revises the certificate when Log Analytics ends.
        CompletedPurgePending => matches!(to, Completed | PartiallyFailed),
        // A ticket sent again, corrected, after its rejection (no plan was ever made for it).
        Rejected => matches!(to, Received),
        Completed | PartiallyFailed | Cancelled => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    pub state: RequestState,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub days: u32,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline_after: OffsetDateTime,
    /// SHA-256 of the control message that asked for it: a redelivery does not extend twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cancel stopped nothing: it landed while the last part was finishing, and every part
    /// had done its work (see [`Lifecycle::cancel_overtaken`]). It no longer stops anything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overtaken: bool,
}

/// The two deadline warnings, each sent once per deadline (an extension makes a new deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    DeadlineApproaching,
    DeadlineMissed,
}

impl WarningKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            WarningKind::DeadlineApproaching => "deadline_approaching",
            WarningKind::DeadlineMissed => "deadline_missed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarningSent {
    pub kind: WarningKind,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The lifecycle document of one request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub request_id: RequestId,
    pub regulation: Regulation,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The statutory deadline (what extensions are measured from).
    #[serde(with = "time::serde::rfc3339")]
    pub original_deadline: OffsetDateTime,
    /// The deadline now in force.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub state: RequestState,
    pub history: Vec<StateChange>,
    #[serde(default)]
    pub extensions: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelRecord>,
    #[serde(default)]
    pub warnings: Vec<WarningSent>,
    /// W3C trace id (32 hex) of the request's one trace: every message about it carries it.
    #[serde(default)]
    pub trace_id: String,
}

/// Why a lifecycle change was refused (readable: it goes to the ticketing system).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

fn refuse(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// The reason a cancelled request's unreached items carry (`Skipped`), so the certificate says
/// exactly what was not done.
pub fn cancelled_item_reason(kind: super::request::RequestKind) -> String {
    match kind {
        super::request::RequestKind::Export => {
            format!("{CANCELLED_PREFIX} before this item was reached: not exported")
        }
        _ => format!("{CANCELLED_PREFIX} before this item was reached: not deleted"),
    }
}
pub const CANCELLED_PREFIX: &str = "request cancelled";
/// The note of a slice that a cancel stopped before it looked at anything.
pub const CANCELLED_BEFORE_START: &str =
    "request cancelled before this slice started: nothing in it was looked at or changed";

/// Why a cancelled request ended in another state ([`Lifecycle::cancel_overtaken`]).
pub const CANCEL_OVERTAKEN: &str = "the cancel arrived while the last part was finishing: every part had already done its work, so nothing was stopped and the request ends with its own outcome";

/// Whether `status` is a cancelled, unreached item.
pub fn is_cancelled_skip(status: &super::slice::ItemStatus) -> bool {
    matches!(status, super::slice::ItemStatus::Skipped { reason } if reason.starts_with(CANCELLED_PREFIX))
}

/// Longest extension reason kept (it goes to the audit trail and the ticketing system).
pub const MAX_REASON_CHARS: usize = 1000;

impl Lifecycle {
    /// A request just received (its deadline computed by intake's plan).
    pub fn received(
        request_id: RequestId,
        regulation: Regulation,
        received_at: OffsetDateTime,
        deadline: OffsetDateTime,
        now: OffsetDateTime,
        trace_id: String,
    ) -> Lifecycle {
        Lifecycle {
            request_id,
            regulation,
            received_at,
            original_deadline: deadline,
            deadline,
            state: RequestState::Received,
            history: vec![StateChange {
                state: RequestState::Received,
                at: now,
                reason: None,
            }],
            extensions: vec![],
            cancel: None,
            warnings: vec![],
            trace_id,
        }
    }

    /// Move to `to`. `Ok(false)` when already there (a redelivery); a change the lifecycle does
    /// not allow is refused and changes nothing.
    pub fn transition(
        &mut self,
        to: RequestState,
        at: OffsetDateTime,
        reason: Option<String>,
    ) -> Result<bool, Refusal> {
        if self.state == to {
            return Ok(false);
        }
        if !allowed(self.state, to) {
            return Err(refuse(
                "invalid_transition",
                format!(
                    "request {} is {}; it cannot become {}",
                    self.request_id, self.state, to
                ),
            ));
        }
        self.state = to;
        self.history.push(StateChange {
            state: to,
            at,
            reason,
        });
        Ok(true)
    }

    /// Whether a cancel was requested (slices stop between chunks when it was).
    pub fn cancel_requested(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| !c.overtaken)
    }

    /// Record a cancel and move to `cancelled`. `Ok(false)`: already cancelled.
    pub fn cancel(&mut self, at: OffsetDateTime, reason: Option<String>) -> Result<bool, Refusal> {
        if self.cancel_requested() {
            return Ok(false);
        }
        if !self.state.is_cancellable() {
            return Err(refuse(
                "not_cancellable",
                format!(
                    "request {} is {}: there is nothing left to cancel",
                    self.request_id, self.state
                ),
            ));
        }
        self.cancel = Some(CancelRecord {
            at,
            reason: reason.clone(),
            overtaken: false,
        });
        self.transition(RequestState::Cancelled, at, reason)
    }

    /// A cancel that stopped nothing: accepted while the last part of the work was finishing
    /// its last chunk, so every item had its outcome when the slices next looked (fan-in finds
    /// nothing cut short: `ReportBuilder::cancel_cut_short` in `domain::report`). Claiming
    /// `cancelled` would misstate what was done: the request ends in `to`, the state its work
    /// earned, and the history says why.
    /// `Ok(false)` when there is nothing to settle (not cancelled, or settled already).
    pub fn cancel_overtaken(
        &mut self,
        to: RequestState,
        at: OffsetDateTime,
    ) -> Result<bool, Refusal> {
        if self.state != RequestState::Cancelled
            || !self.cancel_requested()
            || to == RequestState::Cancelled
        {
            return Ok(false);
        }
        if !matches!(
            to,
            RequestState::NeedsReview
                | RequestState::Completed
                | RequestState::CompletedPurgePending
                | RequestState::PartiallyFailed
        ) {
            return Err(refuse(
                "invalid_transition",
                format!(
                    "request {} was cancelled; it cannot become {to}",
                    self.request_id
                ),
            ));
        }
        if let Some(c) = &mut self.cancel {
            c.overtaken = true;
        }
        self.state = to;
        self.history.push(StateChange {
            state: to,
            at,
            reason: Some(CANCEL_OVERTAKEN.to_string()),
        });
        Ok(true)
    }

    /// The latest deadline the law allows: GDPR Art. 12(3) "by two further months", CCPA
    /// (Cal. Civ. Code 1798.130(a)(2)) "once by an additional 45 days", both from the
    /// original deadline.
    pub fn legal_limit(&self) -> OffsetDateTime {
        match self.regulation {
            Regulation::Gdpr => add_months(self.original_deadline, 2),
            Regulation::Ccpa => self.original_deadline + Duration::days(45),
        }
    }

    /// Extend the deadline by `days` for `reason`; returns the new deadline. Refused (nothing
    /// changes) when the request is no longer open, the reason is empty, the extension would go
    /// beyond the legal limit, the original deadline has passed (both laws require the subject
    /// to be told within the original period), or, under the CCPA, a first extension exists
    /// (the statute allows it once).
    pub fn extend(
        &mut self,
        days: u32,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, Refusal> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(refuse(
                "invalid_extension",
                "an extension needs a reason (GDPR Art. 12(3): the subject must be told why)",
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(refuse(
                "invalid_extension",
                format!("the reason is longer than {MAX_REASON_CHARS} characters"),
            ));
        }
        if days == 0 {
            return Err(refuse("invalid_extension", "days must be at least 1"));
        }
        if !self.state.is_open() {
            return Err(refuse(
                "not_extendable",
                format!(
                    "request {} is {}: only an open request's deadline can be extended",
                    self.request_id, self.state
                ),
            ));
        }
        if now > self.original_deadline {
            return Err(refuse(
                "extension_too_late",
                format!(
                    "the original deadline ({}) has passed: an extension must be notified within the original period",
                    rfc3339(self.original_deadline)
                ),
            ));
        }
        if self.regulation == Regulation::Ccpa && !self.extensions.is_empty() {
            return Err(refuse(
                "extension_beyond_legal_limit",
                "the CCPA allows one extension of at most 45 days, and this request has had it",
            ));
        }
        let after = self.deadline + Duration::days(days as i64);
        let limit = self.legal_limit();
        if after > limit {
            let law = match self.regulation {
                Regulation::Gdpr => "GDPR Art. 12(3) allows at most two further months",
                Regulation::Ccpa => "the CCPA allows at most 45 further days",
            };
            return Err(refuse(
                "extension_beyond_legal_limit",
                format!(
                    "extending by {days} days would move the deadline to {}, beyond {} ({law} after the original deadline {})",
                    rfc3339(after),
                    rfc3339(limit),
                    rfc3339(self.original_deadline)
                ),
            ));
        }
        self.extensions.push(Extension {
            days,
            reason: reason.to_string(),
            at: now,
            deadline_before: self.deadline,
            deadline_after: after,
            message_sha256: None,
        });
        self.deadline = after;
        Ok(after)
    }

    /// The warnings due at `now` and not yet sent for the deadline in force: one `warn_days`
    /// before it, one once it has passed. Only open requests are warned about.
    pub fn due_warnings(&self, now: OffsetDateTime, warn_days: u32) -> Vec<WarningKind> {
        if !self.state.is_open() {
            return vec![];
        }
        let sent = |k: WarningKind| {
            self.warnings
                .iter()
                .any(|w| w.kind == k && w.deadline == self.deadline)
        };
        let mut out = Vec::new();
        if now >= self.deadline {
            if !sent(WarningKind::DeadlineMissed) {
                out.push(WarningKind::DeadlineMissed);
            }
        } else if now >= self.deadline - Duration::days(warn_days as i64)
            && !sent(WarningKind::DeadlineApproaching)
        {
            out.push(WarningKind::DeadlineApproaching);
        }
        out
    }

    pub fn record_warning(&mut self, kind: WarningKind, now: OffsetDateTime) {
        self.warnings.push(WarningSent {
            kind,
            deadline: self.deadline,
            at: now,
        });
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Calendar months per the EU reading (Regulation 1182/71): the same day `n` months later, or
/// that month's last day when the day does not exist.
pub fn add_months(t: OffsetDateTime, n: u32) -> OffsetDateTime {
    let total = t.year() * 12 + (t.month() as i32 - 1) + n as i32;
    let (y, m0) = (total.div_euclid(12), total.rem_euclid(12));
    let Ok(month) = time::Month::try_from((m0 + 1) as u8) else {
        return t;
    };
    let day = t.day().min(month.length(y));
    match time::Date::from_calendar_date(y, month, day) {
        Ok(d) => t.replace_date(d),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests;
