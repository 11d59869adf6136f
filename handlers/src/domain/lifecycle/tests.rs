//! Unit tests of `domain::lifecycle`.

use super::*;
use time::macros::datetime;
use RequestState::*;

fn lc(regulation: Regulation) -> Lifecycle {
    let received = datetime!(2026-01-31 10:00 UTC);
    Lifecycle::received(
        RequestId::parse("T-1").unwrap(),
        regulation,
        received,
        super::super::deadline::deadline(regulation, received),
        received,
        "0af7651916cd43dd8448eb211c80319c".into(),
    )
}

#[test]
fn the_allowed_transitions_are_exactly_these() {
    let expected: &[(RequestState, RequestState)] = &[
        (Received, Planned),
        (Received, Rejected),
        (Received, Cancelled),
        (Planned, InProgress),
        (Planned, Cancelled),
        (InProgress, NeedsReview),
        (InProgress, Completed),
        (InProgress, CompletedPurgePending),
        (InProgress, PartiallyFailed),
        (InProgress, Cancelled),
        (NeedsReview, Completed),
        (NeedsReview, CompletedPurgePending),
        (NeedsReview, PartiallyFailed),
        (NeedsReview, Cancelled),
        (CompletedPurgePending, Completed),
        (CompletedPurgePending, PartiallyFailed),
        (Rejected, Received),
    ];
    for from in RequestState::ALL {
        for to in RequestState::ALL {
            assert_eq!(
                allowed(from, to),
                expected.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn terminal_states_allow_nothing_and_a_refused_change_changes_nothing() {
    let mut l = lc(Regulation::Gdpr);
    assert_eq!(l.transition(Planned, l.received_at, None), Ok(true));
    assert_eq!(l.transition(Planned, l.received_at, None), Ok(false));
    l.transition(InProgress, l.received_at, None).unwrap();
    l.transition(Completed, l.received_at, None).unwrap();
    let before = l.clone();
    let e = l.transition(InProgress, l.received_at, None).unwrap_err();
    assert_eq!(e.code, "invalid_transition");
    assert!(e.reason.contains("completed"), "{e}");
    assert_eq!(l, before);
    assert_eq!(
        l.history.iter().map(|h| h.state).collect::<Vec<_>>(),
        vec![Received, Planned, InProgress, Completed]
    );
    assert!(l.cancel(l.received_at, None).is_err());
}

#[test]
fn cancel_records_once_and_moves_to_cancelled() {
    let mut l = lc(Regulation::Gdpr);
    l.transition(Planned, l.received_at, None).unwrap();
    assert_eq!(l.cancel(l.received_at, Some("withdrawn".into())), Ok(true));
    assert_eq!(l.cancel(l.received_at, None), Ok(false));
    assert_eq!(l.state, Cancelled);
    assert!(l.cancel_requested());
}

#[test]
fn gdpr_extensions_stop_at_two_further_months() {
    let mut l = lc(Regulation::Gdpr);
    // Received 31 Jan: due 28 Feb; the law allows until 28 Apr.
    assert_eq!(l.original_deadline, datetime!(2026-02-28 10:00 UTC));
    assert_eq!(l.legal_limit(), datetime!(2026-04-28 10:00 UTC));
    let now = datetime!(2026-02-10 00:00 UTC);
    assert_eq!(
        l.extend(30, "complex request", now),
        Ok(datetime!(2026-03-30 10:00 UTC))
    );
    // A second extension within the total is allowed; beyond it refused, nothing changes.
    let e = l.extend(30, "more", now).unwrap_err();
    assert_eq!(e.code, "extension_beyond_legal_limit");
    assert!(e.reason.contains("2026-04-28"), "{e}");
    assert_eq!(l.deadline, datetime!(2026-03-30 10:00 UTC));
    assert_eq!(
        l.extend(29, "more", now),
        Ok(datetime!(2026-04-28 10:00 UTC))
    );
    assert_eq!(l.extensions.len(), 2);
    assert!(l.extend(1, "one more day", now).is_err());
}

#[test]
fn ccpa_allows_one_extension_of_45_days() {
    let mut l = lc(Regulation::Ccpa);
    let now = l.received_at + Duration::days(1);
    let e = l.extend(46, "x", now).unwrap_err();
    assert_eq!(e.code, "extension_beyond_legal_limit");
    assert_eq!(
        l.extend(20, "x", now),
        Ok(l.original_deadline + Duration::days(20))
    );
    let e = l.extend(10, "y", now).unwrap_err();
    assert_eq!(e.code, "extension_beyond_legal_limit");
}

#[test]
fn extensions_need_a_reason_an_open_request_and_the_original_period() {
    let mut l = lc(Regulation::Gdpr);
    assert_eq!(
        l.extend(5, "  ", l.received_at).unwrap_err().code,
        "invalid_extension"
    );
    assert_eq!(
        l.extend(0, "r", l.received_at).unwrap_err().code,
        "invalid_extension"
    );
    let late = l.original_deadline + Duration::seconds(1);
    assert_eq!(
        l.extend(5, "r", late).unwrap_err().code,
        "extension_too_late"
    );
    l.cancel(l.received_at, None).unwrap();
    assert_eq!(
        l.extend(5, "r", l.received_at).unwrap_err().code,
        "not_extendable"
    );
    assert!(l.extensions.is_empty());
}

#[test]
fn warnings_come_once_per_deadline() {
    let mut l = lc(Regulation::Gdpr);
    let d = l.deadline;
    assert!(l.due_warnings(d - Duration::days(8), 7).is_empty());
    let soon = d - Duration::days(6);
    assert_eq!(
        l.due_warnings(soon, 7),
        vec![WarningKind::DeadlineApproaching]
    );
    l.record_warning(WarningKind::DeadlineApproaching, soon);
    assert!(l.due_warnings(soon, 7).is_empty());
    assert_eq!(l.due_warnings(d, 7), vec![WarningKind::DeadlineMissed]);
    l.record_warning(WarningKind::DeadlineMissed, d);
    assert!(l.due_warnings(d + Duration::days(3), 7).is_empty());
    // A finished request is not warned about.
    let mut done = lc(Regulation::Gdpr);
    done.transition(Rejected, d, None).unwrap();
    assert!(done.due_warnings(d, 7).is_empty());
}

#[test]
fn an_extension_makes_new_warnings_for_the_new_deadline() {
    let mut l = lc(Regulation::Gdpr);
    let soon = l.deadline - Duration::days(3);
    l.record_warning(WarningKind::DeadlineApproaching, soon);
    l.extend(14, "complex", soon).unwrap();
    assert!(l.due_warnings(soon, 7).is_empty());
    let soon2 = l.deadline - Duration::days(2);
    assert_eq!(
        l.due_warnings(soon2, 7),
        vec![WarningKind::DeadlineApproaching]
    );
}

#[test]
fn months_follow_the_eu_reading() {
    assert_eq!(
        add_months(datetime!(2026-01-31 00:00 UTC), 1),
        datetime!(2026-02-28 00:00 UTC)
    );
    assert_eq!(
        add_months(datetime!(2026-11-30 00:00 UTC), 2),
        datetime!(2027-01-30 00:00 UTC)
    );
    assert_eq!(
        add_months(datetime!(2026-12-31 00:00 UTC), 2),
        datetime!(2027-02-28 00:00 UTC)
    );
}
