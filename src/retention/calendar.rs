//! The calendar of a snapshot as the host that saved it saw it: its author
//! time shifted by the UTC offset recorded beside it in the commit. Pure
//! arithmetic on the proleptic Gregorian calendar, with no time zone
//! database and no libc, so that a plan is the same wherever `prune` runs
//! and tests need no `TZ`.
//!
//! Commit times and offsets are read from repositories and may be any
//! value: every step saturates or uses Euclidean division, never
//! overflows or panics.

use crate::time::days_from_civil;

/// A local date and hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    /// 0..=23
    pub hour: u32,
    /// Days since 1970-01-01 of this local date.
    pub days: i64,
    /// Seconds since local midnight.
    pub second_of_day: i64,
}

/// The local wall-clock time of `time` (epoch seconds) at a UTC offset of
/// `offset_minutes`.
pub fn civil(time: i64, offset_minutes: i32) -> Civil {
    let local = time.saturating_add(i64::from(offset_minutes) * 60);
    let days = local.div_euclid(86400);
    let second_of_day = local.rem_euclid(86400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: (second_of_day / 3600) as u32,
        days,
        second_of_day,
    }
}

/// Year, month, day of a day number (days since 1970-01-01); Howard
/// Hinnant's `civil_from_days`, the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shifted so that eras start on 0000-03-01; i64 day numbers of any
    // i64 time (at most ~1.1e14) keep every product here far from overflow.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days in `month` of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day number of the Monday that starts the ISO 8601 week of day `days`.
/// ISO weeks run Monday to Sunday; the week belongs to the year of its
/// Thursday, so 2026-01-01 (a Thursday) and 2025-12-29 share one.
pub fn iso_week_start(days: i64) -> i64 {
    // 1970-01-01 was a Thursday: weekday 3 counting Monday as 0.
    days - (days + 3).rem_euclid(7)
}

/// ISO 8601 week-numbering year and week (1..=53) of day `days`.
pub fn iso_week(days: i64) -> (i64, u32) {
    let thursday = iso_week_start(days) + 3;
    let (year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    (year, week as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_days_across_centuries_and_leap_days() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
            assert!((1..=days_in_month(y, m)).contains(&d));
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(2024, 2, 29) + 1),
            (2024, 3, 1)
        );
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
    }

    #[test]
    fn offsets_move_the_local_date() {
        // 2026-03-01T23:30Z is already March 2nd in Paris (+0100) and
        // still March 1st in New York (-0500).
        let t = days_from_civil(2026, 3, 1) * 86400 + 23 * 3600 + 1800;
        let paris = civil(t, 60);
        assert_eq!(
            (paris.year, paris.month, paris.day, paris.hour),
            (2026, 3, 2, 0)
        );
        let ny = civil(t, -300);
        assert_eq!((ny.year, ny.month, ny.day, ny.hour), (2026, 3, 1, 18));
    }

    #[test]
    fn iso_weeks_straddle_new_year() {
        let day = |y, m, d| days_from_civil(y, m, d);
        assert_eq!(iso_week(day(2026, 1, 1)), (2026, 1));
        assert_eq!(iso_week(day(2025, 12, 29)), (2026, 1));
        assert_eq!(iso_week(day(2025, 12, 28)), (2025, 52));
        assert_eq!(iso_week(day(2021, 1, 3)), (2020, 53));
        assert_eq!(iso_week(day(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week_start(day(2026, 1, 1)), day(2025, 12, 29));
    }

    #[test]
    fn extreme_commit_times_and_offsets_do_not_overflow() {
        for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            for off in [i32::MIN, -5999, 0, 5999, i32::MAX] {
                let c = civil(t, off);
                assert!((1..=12).contains(&c.month) && c.hour < 24);
                let _ = iso_week(c.days);
            }
        }
    }
}
