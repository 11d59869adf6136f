//! Host datetimes: .NET `DateTime` arrives naive (`2023-10-12T20:13:49`, UTC by convention),
//! `DateTimeOffset` with an offset; either may carry 0-7 fractional digits (.NET ticks) and may
//! itself be JSON-encoded (`"\"2025-...\""`).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parse a host datetime; `None` when it is not one.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let s = if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    };
    let b = s.as_bytes();
    if b.len() < 19
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T') | Some(b't') | Some(b' '))
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        let padded = format!("{digits:0<9}");
        nanos = padded.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset = match rest {
        "" | "Z" | "z" => UtcOffset::UTC,
        o if (o.starts_with('+') || o.starts_with('-'))
            && o.len() == 6
            && o.as_bytes()[3] == b':' =>
        {
            let sign: i8 = if o.starts_with('-') { -1 } else { 1 };
            let h: i8 = o.get(1..3)?.parse().ok()?;
            let m: i8 = o.get(4..6)?.parse().ok()?;
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
        _ => return None,
    };
    let date = Date::from_calendar_date(year as i32, Month::try_from(month as u8).ok()?, day as u8)
        .ok()?;
    let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .to_offset(UtcOffset::UTC),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn accepts_every_host_shape() {
        assert_eq!(
            parse("2023-10-12T20:13:49"),
            Some(datetime!(2023-10-12 20:13:49 UTC))
        );
        assert_eq!(
            parse("2025-01-02T03:04:05+00:00"),
            Some(datetime!(2025-01-02 03:04:05 UTC))
        );
        assert_eq!(
            parse("2025-01-02T03:04:05.1234567Z"),
            Some(datetime!(2025-01-02 03:04:05.1234567 UTC))
        );
        assert_eq!(
            parse("2025-01-02T03:04:05.1+02:00"),
            Some(datetime!(2025-01-02 01:04:05.1 UTC))
        );
        assert_eq!(
            parse("\"2019-10-16T17:58:31+00:00\""),
            Some(datetime!(2019-10-16 17:58:31 UTC))
        );
        assert_eq!(
            parse("0001-01-01T00:00:00+00:00"),
            Some(datetime!(0001-01-01 00:00:00 UTC))
        );
        assert_eq!(
            parse("9999-12-31T23:59:59"),
            Some(datetime!(9999-12-31 23:59:59 UTC))
        );
        for digits in 0..=7 {
            let frac = if digits == 0 {
                String::new()
            } else {
                format!(".{}", "1".repeat(digits))
            };
            assert!(
                parse(&format!("2025-01-02T03:04:05{frac}")).is_some(),
                "{digits}"
            );
            assert!(
                parse(&format!("2025-01-02T03:04:05{frac}-07:00")).is_some(),
                "{digits}"
            );
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for s in [
            "",
            "2025",
            "2025-13-01T00:00:00",
            "2025-01-02T03:04:05.",
            "2025-01-02T03:04:05+0",
            "ééééééééééééééééééééé",
            "2025-01-02T03:04:05.1234567890",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }
    }
}
