//! Statutory deadlines: GDPR Art. 12(3) one month, CCPA 45 days.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Regulation {
    #[default]
    Gdpr,
    Ccpa,
}

/// The date by which the response is due.
pub fn deadline(regulation: Regulation, received_at: OffsetDateTime) -> OffsetDateTime {
    match regulation {
        Regulation::Gdpr => add_one_month(received_at),
        Regulation::Ccpa => received_at + Duration::days(45),
    }
}

/// "One month" per the EU reading (Regulation 1182/71): same day next month, or the last day of
/// next month when that day does not exist (31 Jan -> 28/29 Feb).
fn add_one_month(t: OffsetDateTime) -> OffsetDateTime {
    let (y, m) = if t.month() == time::Month::December {
        (t.year() + 1, time::Month::January)
    } else {
        (t.year(), t.month().next())
    };
    let last = m.length(y);
    let day = t.day().min(last);
    let date = time::Date::from_calendar_date(y, m, day).unwrap_or(t.date());
    t.replace_date(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn gdpr_is_one_calendar_month() {
        assert_eq!(
            deadline(Regulation::Gdpr, datetime!(2026-01-31 10:00 UTC)),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            deadline(Regulation::Gdpr, datetime!(2026-12-15 00:00 UTC)),
            datetime!(2027-01-15 00:00 UTC)
        );
    }

    #[test]
    fn ccpa_is_45_days() {
        assert_eq!(
            deadline(Regulation::Ccpa, datetime!(2026-01-01 00:00 UTC)),
            datetime!(2026-02-15 00:00 UTC)
        );
    }
}
