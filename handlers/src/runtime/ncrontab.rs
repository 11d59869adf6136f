//! NCRONTAB schedules as the Functions timer trigger reads them: six fields with seconds first
//! (`sec min hour day month day-of-week`) or the classic five (seconds = 0). Supports `*`, lists,
//! ranges and steps; month and day names are not needed by this product. Evaluated in UTC.
//!
//! Like NCrontab (and unlike Vixie cron), a restricted day-of-month and a restricted day-of-week
//! must BOTH match.

use std::fmt;

use time::{Date, Duration, Month, OffsetDateTime, Time};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid NCRONTAB expression {expr:?}: {reason}")]
pub struct CronError {
    pub expr: String,
    pub reason: String,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_field(field: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step {s:?}"))?;
                if step == 0 {
                    return Err("step 0".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a: u32 = a.parse().map_err(|_| format!("bad value {a:?}"))?;
            let b: u32 = b.parse().map_err(|_| format!("bad value {b:?}"))?;
            (a, b)
        } else {
            let v: u32 = range.parse().map_err(|_| format!("bad value {range:?}"))?;
            // `5/10` means "from 5 to the end, every 10" (as in NCrontab).
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{range:?} outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let err = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let fields: Vec<&str> = match fields.len() {
            6 => fields,
            5 => std::iter::once("0").chain(fields).collect(),
            n => return Err(err(format!("expected 5 or 6 fields, found {n}"))),
        };
        let ranges = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
        let mut bits = [0u64; 6];
        for (i, (f, (lo, hi))) in fields.iter().zip(ranges).enumerate() {
            bits[i] = parse_field(f, lo, hi).map_err(err)?;
        }
        Ok(Self {
            seconds: bits[0],
            minutes: bits[1],
            hours: bits[2],
            days: bits[3],
            months: bits[4],
            weekdays: bits[5],
            source: expr.to_string(),
        })
    }

    /// The first occurrence strictly after `after` (UTC), or None if the expression can never
    /// match (e.g. 30 February) within the search horizon.
    pub(crate) fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut t = after.replace_nanosecond(0).ok()? + Duration::seconds(1);
        // Five years covers every satisfiable day/month/weekday combination (leap days included).
        let horizon = t.year() + 5;
        let has = |bits: u64, v: u8| bits & (1 << v) != 0;
        while t.year() <= horizon {
            if !has(self.months, t.month() as u8) {
                let (y, m) = if t.month() == Month::December {
                    (t.year() + 1, Month::January)
                } else {
                    (t.year(), t.month().next())
                };
                t = Date::from_calendar_date(y, m, 1)
                    .ok()?
                    .with_time(Time::MIDNIGHT)
                    .assume_utc();
                continue;
            }
            if !has(self.days, t.day())
                || !has(self.weekdays, t.weekday().number_days_from_sunday())
            {
                t = (t.date().next_day()?)
                    .with_time(Time::MIDNIGHT)
                    .assume_utc();
                continue;
            }
            if !has(self.hours, t.hour()) {
                t = t.replace_minute(0).ok()?.replace_second(0).ok()? + Duration::hours(1);
                continue;
            }
            if !has(self.minutes, t.minute()) {
                t = t.replace_second(0).ok()? + Duration::minutes(1);
                continue;
            }
            if !has(self.seconds, t.second()) {
                t += Duration::seconds(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        Schedule::parse(expr).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn every_five_minutes() {
        assert_eq!(
            next("0 */5 * * * *", datetime!(2025-01-02 03:04:05 UTC)),
            datetime!(2025-01-02 03:05:00 UTC)
        );
        // Strictly after: an exact occurrence yields the following one.
        assert_eq!(
            next("0 */5 * * * *", datetime!(2025-01-02 03:05:00 UTC)),
            datetime!(2025-01-02 03:10:00 UTC)
        );
        assert_eq!(
            next("0 */5 * * * *", datetime!(2025-12-31 23:59:59.5 UTC)),
            datetime!(2026-01-01 00:00:00 UTC)
        );
    }

    #[test]
    fn daily_at_three() {
        assert_eq!(
            next("0 0 3 * * *", datetime!(2025-01-02 03:00:00 UTC)),
            datetime!(2025-01-03 03:00:00 UTC)
        );
        assert_eq!(
            next("0 0 3 * * *", datetime!(2025-01-02 02:59:59 UTC)),
            datetime!(2025-01-02 03:00:00 UTC)
        );
        // Non-UTC input is converted, not reinterpreted.
        assert_eq!(
            next("0 0 3 * * *", datetime!(2025-01-02 04:30:00 +02:00)),
            datetime!(2025-01-02 03:00:00 UTC)
        );
    }

    #[test]
    fn weekdays_half_past_nine() {
        // 2025-01-03 is a Friday.
        assert_eq!(
            next("0 30 9 * * 1-5", datetime!(2025-01-03 09:30:00 UTC)),
            datetime!(2025-01-06 09:30:00 UTC)
        );
        assert_eq!(
            next("0 30 9 * * 1-5", datetime!(2025-01-03 09:29:00 UTC)),
            datetime!(2025-01-03 09:30:00 UTC)
        );
    }

    #[test]
    fn five_fields_lists_ranges_and_steps() {
        assert_eq!(
            next("15,45 * * * *", datetime!(2025-01-02 03:16:00 UTC)),
            datetime!(2025-01-02 03:45:00 UTC)
        );
        assert_eq!(
            next("*/20 * * * * *", datetime!(2025-01-02 03:04:41 UTC)),
            datetime!(2025-01-02 03:05:00 UTC)
        );
        assert_eq!(
            next("10-20/5 * * * * *", datetime!(2025-01-02 03:04:16 UTC)),
            datetime!(2025-01-02 03:04:20 UTC)
        );
        assert_eq!(
            next("5/20 * * * * *", datetime!(2025-01-02 03:04:26 UTC)),
            datetime!(2025-01-02 03:04:45 UTC)
        );
        assert_eq!(
            next("0 0 0 29 2 *", datetime!(2025-01-01 00:00:00 UTC)),
            datetime!(2028-02-29 00:00:00 UTC)
        );
        // Day of month AND day of week: the first Friday the 13th after 2025-01-01.
        assert_eq!(
            next("0 0 0 13 * 5", datetime!(2025-01-01 00:00:00 UTC)),
            datetime!(2025-06-13 00:00:00 UTC)
        );
    }

    #[test]
    fn impossible_and_invalid() {
        assert_eq!(
            Schedule::parse("0 0 0 30 2 *")
                .unwrap()
                .next_after(datetime!(2025-01-01 00:00:00 UTC)),
            None
        );
        for bad in [
            "",
            "* * * *",
            "60 * * * * *",
            "0 0 24 * * *",
            "0 0 0 0 * *",
            "*/0 * * * * *",
            "a * * * * *",
            "0 0 0 * * 7",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
