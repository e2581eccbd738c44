//! Dates as users type them (`--date`) and as snapshots are named: whole
//! epoch seconds in, local-time `YYYY-MM-DD-HHMMSS` out, using the reader's
//! time zone (`TZ`) as bup does.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid date {0:?}: use epoch seconds (1700000000) or ISO-8601 (2026-11-21T23:30, 2026-11-21 23:30:05+01:00)")]
pub struct DateError(pub String);

extern "C" {
    // In POSIX libc but not exported by the libc crate.
    fn tzset();
}

fn local_tm(epoch: i64) -> libc::tm {
    // SAFETY: all-zero bytes are a valid libc::tm (integers and a null
    // tm_zone); localtime_r reads one time_t from &t and writes one tm into
    // &mut tm, both live locals. tzset (so a TZ set after start-up counts)
    // and localtime_r read TZ with getenv, which races only with setenv on
    // another thread: rewind never changes its environment (only the unit
    // test local_dates_follow_tz calls set_var, racing its neighbours).
    unsafe {
        tzset();
        let t: libc::time_t = epoch as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    }
}

/// The calendar year of `tm`, in i64: a commit time read from a
/// repository may be any i64, and glibc fills `tm_year` up to `i32::MAX`,
/// where `tm_year + 1900` would overflow.
fn year(tm: &libc::tm) -> i64 {
    i64::from(tm.tm_year) + 1900
}

/// Seconds since the epoch now (0 if the clock is before 1970).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The local UTC offset in minutes at `epoch`, for commit signatures.
pub fn utc_offset_minutes(epoch: i64) -> i32 {
    (local_tm(epoch).tm_gmtoff / 60) as i32
}

/// The day of the week at `epoch` in local time: 0 for Monday to 6 for
/// Sunday (ISO order; `tm_wday` counts from Sunday).
pub fn local_weekday(epoch: i64) -> u32 {
    (local_tm(epoch).tm_wday + 6).rem_euclid(7) as u32
}

/// `YYYY-MM-DD-HHMMSS` in local time, bup's snapshot name format.
pub fn snapshot_name(epoch: i64) -> String {
    let tm = local_tm(epoch);
    format!(
        "{:04}-{:02}-{:02}-{:02}{:02}{:02}",
        year(&tm),
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The first instant after `after` at which the local clock reads
/// `hour:minute`: when a daily job at that time next runs. Across a change
/// of UTC offset (daylight saving) the offset of the day itself is used.
pub fn next_local(after: i64, hour: u8, minute: u8) -> i64 {
    const DAY: i64 = 86_400;
    let offset = |t: i64| i64::from(utc_offset_minutes(t)) * 60;
    let local = after + offset(after);
    let mut day = local - local.rem_euclid(DAY);
    loop {
        let wall = day + i64::from(hour) * 3600 + i64::from(minute) * 60;
        // The offset at the candidate, found from a guess a day off at most.
        let t = wall - offset(wall - offset(after));
        if t > after {
            return t;
        }
        day += DAY;
    }
}

/// `YYYY-MM-DD HH:MM` in local time, for `ls -l`.
pub fn listing_time(epoch: i64) -> String {
    let tm = local_tm(epoch);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        year(&tm),
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

/// `YYYY-MM-DD HH:MM:SS +hhmm` in local time (as `date '+%F %T %z'`), for
/// log lines.
pub fn log_stamp(epoch: i64) -> String {
    let tm = local_tm(epoch);
    let offset = tm.tm_gmtoff / 60;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}{:02}{:02}",
        year(&tm),
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 60,
        offset.abs() % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// civil-from-days inverse), so that explicit offsets need no time zone.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses `--date`: epoch seconds (fractions truncated, as bup does) or an
/// ISO-8601 date-time. Without an offset the time is local.
pub fn parse_date(text: &str) -> Result<i64, DateError> {
    let err = || DateError(text.to_string());
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if (0.0..1e15).contains(&secs) {
            return Ok(secs.trunc() as i64);
        }
        return Err(err());
    }
    let b = t.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, DateError> {
        let s = t.get(range).ok_or_else(err)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        s.parse().map_err(|_| err())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut pos = 10;
    if pos < b.len() {
        if b[pos] != b'T' && b[pos] != b' ' {
            return Err(err());
        }
        hour = num(pos + 1..pos + 3)?;
        if b.get(pos + 3) != Some(&b':') {
            return Err(err());
        }
        minute = num(pos + 4..pos + 6)?;
        pos += 6;
        if b.get(pos) == Some(&b':') {
            second = num(pos + 1..pos + 3)?;
            pos += 3;
            // Fractional seconds are accepted and truncated.
            if b.get(pos) == Some(&b'.') {
                pos += 1;
                while b.get(pos).is_some_and(u8::is_ascii_digit) {
                    pos += 1;
                }
            }
        }
    }
    // `pos` only ever moved over ASCII bytes, so it is a char boundary;
    // the offset itself is matched as bytes (slicing it as text once split
    // a multi-byte character and panicked).
    let offset_minutes = match &b[pos..] {
        b"" => None,
        b"Z" | b"z" => Some(0),
        &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [h1, h2, m1, m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(err());
            }
            let [h1, h2, m1, m2] = digits.map(|d| i64::from(d - b'0'));
            let (h, m) = (h1 * 10 + h2, m1 * 10 + m2);
            // Real offsets lie within -12:00..+14:00; allow any whole day.
            if h > 23 || m > 59 {
                return Err(err());
            }
            Some(if sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            })
        }
        _ => return Err(err()),
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(err());
    }
    let epoch = match offset_minutes {
        Some(off) => {
            days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
                - off * 60
        }
        None => {
            // SAFETY: all-zero bytes are a valid libc::tm (integers and a
            // null tm_zone pointer).
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (year - 1900) as i32;
            tm.tm_mon = (month - 1) as i32;
            tm.tm_mday = day as i32;
            tm.tm_hour = hour as i32;
            tm.tm_min = minute as i32;
            tm.tm_sec = second as i32;
            tm.tm_isdst = -1;
            // SAFETY: mktime reads and normalises one tm through &mut tm, a
            // live local; tzset and mktime read TZ, as in local_tm.
            let t = unsafe {
                tzset();
                libc::mktime(&mut tm)
            };
            if t == -1 {
                return Err(err());
            }
            t as i64
        }
    };
    if epoch < 0 {
        return Err(err());
    }
    Ok(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoch_and_iso_dates() {
        assert_eq!(parse_date("1401210344"), Ok(1401210344));
        assert_eq!(parse_date("1401210344.9"), Ok(1401210344));
        assert_eq!(parse_date("2014-05-27T17:05:44Z"), Ok(1401210344));
        assert_eq!(parse_date("2014-05-27 13:05:44-04:00"), Ok(1401210344));
        assert_eq!(parse_date("2014-05-27T17:05:44.123+00:00"), Ok(1401210344));
        assert_eq!(parse_date("2000-03-01T00:00Z"), Ok(951868800));
        for bad in [
            "",
            "yesterday",
            "2014-13-01",
            "2014-05-27T25:00",
            "-5",
            "2014-05-27T17:05:44+0100",
            "2014-05-27X",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    /// `--date 2026-11-21T23:30+0\u{e9}00`: the offset was sliced as text
    /// at byte positions inside the multi-byte character, and panicked.
    #[test]
    fn date_with_non_ascii_offset_is_an_error_not_a_panic() {
        for bad in [
            "2026-11-21T23:30+0\u{e9}00",
            "2026-11-21T23:30+01\u{e9}0",
            "2026-11-21T23:30\u{e9}01:00",
            "2026-11-21T23:30+\u{20ac}:00",
            "2026-11-21T23:30:05.\u{e9}",
            "2026-11-21T2\u{e9}",
            "2026-11-\u{e9}",
            "2026\u{e9}11-21",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert_eq!(parse_date(bad), Err(DateError(bad.to_string())), "{bad}");
        }
        // A sign inside the digits used to pass `str::parse`.
        for bad in [
            "2026-11-21T23:30+-1:00",
            "2026-11-21T23:30+01:+0",
            "2026-11-21T23:30+24:00",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_date("2014-05-27T22:35:44+05:30"),
            Ok(1401210344),
            "a half-hour offset still parses"
        );
    }

    /// Commit times come from repositories and may be any i64; naming a
    /// snapshot after one must not overflow (or panic in a debug build).
    #[test]
    fn extreme_commit_times_format_without_overflow() {
        std::env::set_var("TZ", "UTC");
        for t in [i64::MIN, i64::MIN + 1, -1, 67_768_036_191_676_799, i64::MAX] {
            let _ = snapshot_name(t);
            let _ = listing_time(t);
            let _ = log_stamp(t);
        }
        // The largest time whose year fits glibc's int tm_year.
        assert!(snapshot_name(67_768_036_191_676_799).starts_with("2147485547-"));
    }

    #[test]
    fn a_daily_time_next_falls_later_today_or_tomorrow() {
        std::env::set_var("TZ", "UTC");
        // 2014-05-27 17:05:44 UTC.
        let t = 1401210344;
        assert_eq!(listing_time(next_local(t, 22, 0)), "2014-05-27 22:00");
        assert_eq!(listing_time(next_local(t, 3, 30)), "2014-05-28 03:30");
        // Exactly at the time: the next day's.
        let at = next_local(t, 22, 0);
        assert_eq!(next_local(at, 22, 0), at + 86_400);
    }

    #[test]
    fn local_dates_follow_tz() {
        // Tests in this binary may run in parallel; they all use UTC.
        std::env::set_var("TZ", "UTC");
        assert_eq!(snapshot_name(1401210344), "2014-05-27-170544");
        assert_eq!(listing_time(1401210344), "2014-05-27 17:05");
        assert_eq!(log_stamp(1401210344), "2014-05-27 17:05:44 +0000");
        // 2014-05-27 was a Tuesday; 2014-06-01 a Sunday.
        assert_eq!(local_weekday(1401210344), 1);
        assert_eq!(local_weekday(1401210344 + 5 * 86400), 6);
        assert_eq!(
            parse_date("2026-11-21T23:30"),
            parse_date("2026-11-21T23:30Z")
        );
        assert_eq!(utc_offset_minutes(1401210344), 0);
    }
}
