//! The retention policy: from one backup name's snapshots (oldest first, in
//! the order of the branch's history) and a set of [`Rules`] to a
//! [`Decision`] per snapshot, with every reason that keeps it.
//!
//! The semantics are those of restic's `forget`, written out in
//! rewind-prune(1):
//! - the newest snapshot (the branch tip, `latest`) is always kept;
//! - `last N` keeps the N snapshots nearest the tip;
//! - `hourly`, `daily`, `weekly` (ISO 8601 weeks, Monday to Sunday),
//!   `monthly` and `yearly N` cut time into periods of the saving host's
//!   calendar ([`super::calendar`]), and keep the newest snapshot of each
//!   of the N most recent periods that have a snapshot (empty periods are
//!   not counted); when the history holds fewer than N such periods, the
//!   oldest snapshot is kept as well (restic 0.17 does the same), so that
//!   a new policy keeps the oldest data it can until the history is long
//!   enough;
//! - `within SPAN` keeps every snapshot strictly newer than the newest
//!   snapshot's time minus SPAN (calendar months and years), so that
//!   saves that stopped do not make their last snapshots expire.
//!
//! "Newest" means nearest the tip, not largest author time: two snapshots
//! of one second (bup and hand-made repositories have them) are told apart
//! by their place in the history, and a period is counted once however
//! its snapshots are ordered in time.

use super::calendar::{civil, days_in_month, iso_week_start};
use std::collections::HashSet;
use std::fmt;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RetentionError {
    /// An empty policy would keep only the newest snapshot: refused, so
    /// that a forgotten option is an error and not a wipe.
    #[error("no retention rule: give at least one of keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly or keep-within (keeping nothing is refused, not a wipe)")]
    NoRules,
    #[error("invalid keep-within duration {0:?}: use numbers with units y, m (months), w, d or h, e.g. 30d, 12h, 2w, 6m, 1y6m")]
    BadSpan(String),
}

/// A calendar duration for `keep-within`: years and months are calendar
/// months (from March 31st, one month back is February 28th or 29th),
/// weeks and days calendar days, hours 3600 seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    /// Parses `30d`, `12h`, `2w`, `6m`, `1y`, and sums of them (`1y6m`).
    /// A bare number is refused: is `30` days or hours? So is a zero span,
    /// which would keep nothing.
    pub fn parse(text: &str) -> Result<Span, RetentionError> {
        let bad = || RetentionError::BadSpan(text.to_string());
        let mut span = Span::default();
        let mut digits = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let field = match c {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'w' => &mut span.weeks,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => return Err(bad()),
            };
            *field = field.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() || span == Span::default() {
            return Err(bad());
        }
        Ok(span)
    }

    /// The earliest time still "within" this span of `time`, a snapshot's
    /// author time at UTC offset `offset_minutes`: the same local
    /// wall-clock time so many calendar months and days before (the day
    /// clamped to the month's length), minus the hours. Saturates instead
    /// of overflowing on times read from a repository.
    pub fn cutoff(&self, time: i64, offset_minutes: i32) -> i64 {
        let c = civil(time, offset_minutes);
        let month_index = (c.year * 12 + i64::from(c.month) - 1)
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = month_index.div_euclid(12);
        let month = month_index.rem_euclid(12) as u32 + 1;
        let day = c.day.min(days_in_month(year, month));
        let days = crate::time::days_from_civil(year, i64::from(month), i64::from(day))
            - 7 * i64::from(self.weeks)
            - i64::from(self.days);
        days.saturating_mul(86400)
            .saturating_add(c.second_of_day)
            .saturating_sub(i64::from(self.hours) * 3600)
            .saturating_sub(i64::from(offset_minutes) * 60)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The periods of the calendar rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Period::Hourly => "hours",
            Period::Daily => "days",
            Period::Weekly => "weeks",
            Period::Monthly => "months",
            Period::Yearly => "years",
        }
    }

    /// A number naming the period of `time` at `offset_minutes`: equal for
    /// two times exactly when they fall in the same period.
    fn key(self, time: i64, offset_minutes: i32) -> i64 {
        let c = civil(time, offset_minutes);
        match self {
            Period::Hourly => c.days.saturating_mul(24).saturating_add(i64::from(c.hour)),
            Period::Daily => c.days,
            Period::Weekly => iso_week_start(c.days),
            Period::Monthly => c.year.saturating_mul(12).saturating_add(i64::from(c.month)),
            Period::Yearly => c.year,
        }
    }
}

/// What to keep. A count of 0 means the rule is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Span>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }

    fn periods(&self) -> [(Period, u32); 5] {
        [
            (Period::Hourly, self.hourly),
            (Period::Daily, self.daily),
            (Period::Weekly, self.weekly),
            (Period::Monthly, self.monthly),
            (Period::Yearly, self.yearly),
        ]
    }
}

impl fmt::Display for Rules {
    /// As options: `--keep-daily 7 --keep-within 30d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.last > 0 {
            parts.push(format!("--keep-last {}", self.last));
        }
        for (period, n) in self.periods() {
            if n > 0 {
                parts.push(format!("--keep-{} {n}", period.name()));
            }
        }
        if let Some(span) = self.within {
            parts.push(format!("--keep-within {span}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// A snapshot as the policy sees it: when, and in which calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotTime {
    /// Author time, epoch seconds.
    pub time: i64,
    /// The author's UTC offset, as recorded in the commit.
    pub utc_offset_minutes: i32,
}

/// Why a snapshot is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The branch tip.
    Newest,
    /// The `n`th snapshot from the tip, of `of` kept by `last`.
    Last { n: u32, of: u32 },
    /// The newest snapshot of the `n`th most recent period, of `of`.
    Period { period: Period, n: u32, of: u32 },
    /// Within `span` of the newest snapshot.
    Within(Span),
    /// The oldest snapshot, kept because the history holds only `found`
    /// of the `wanted` periods.
    Oldest {
        period: Period,
        found: u32,
        wanted: u32,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::Last { n, of } => write!(f, "last {n}/{of}"),
            Reason::Period { period, n, of } => write!(f, "{} {n}/{of}", period.name()),
            Reason::Within(span) => write!(f, "within {span}"),
            Reason::Oldest {
                period,
                found,
                wanted,
            } => write!(
                f,
                "oldest, for {} (only {found} of {wanted} {})",
                period.name(),
                period.unit()
            ),
        }
    }
}

/// The fate of one snapshot: kept for these reasons, removed if none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// The reasons, comma-separated.
    pub fn explain(&self) -> String {
        let words: Vec<String> = self.reasons.iter().map(Reason::to_string).collect();
        words.join(", ")
    }
}

/// Decides every snapshot of one name. `snapshots` is the branch's history
/// oldest first (its last element is the tip); the decisions come back in
/// the same order. Empty rules are refused.
pub fn plan(snapshots: &[SnapshotTime], rules: &Rules) -> Result<Vec<Decision>, RetentionError> {
    if rules.is_empty() {
        return Err(RetentionError::NoRules);
    }
    let mut decisions = vec![Decision::default(); snapshots.len()];
    let Some(tip) = snapshots.last() else {
        return Ok(decisions);
    };
    let newest_first = (0..snapshots.len()).rev();
    if let Some(d) = decisions.last_mut() {
        d.reasons.push(Reason::Newest);
    }
    for (from_tip, i) in newest_first.clone().enumerate() {
        if (from_tip as u64) < u64::from(rules.last) {
            decisions[i].reasons.push(Reason::Last {
                n: from_tip as u32 + 1,
                of: rules.last,
            });
        }
    }
    for (period, wanted) in rules.periods() {
        if wanted == 0 {
            continue;
        }
        let mut seen = HashSet::new();
        for i in newest_first.clone() {
            if seen.len() as u64 >= u64::from(wanted) {
                break;
            }
            let s = snapshots[i];
            if seen.insert(period.key(s.time, s.utc_offset_minutes)) {
                decisions[i].reasons.push(Reason::Period {
                    period,
                    n: seen.len() as u32,
                    of: wanted,
                });
            }
        }
        let found = seen.len() as u32;
        let oldest = &mut decisions[0];
        let kept_by_this = oldest
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::Period { period: p, .. } if *p == period));
        if found < wanted && !kept_by_this {
            oldest.reasons.push(Reason::Oldest {
                period,
                found,
                wanted,
            });
        }
    }
    if let Some(span) = rules.within {
        let cutoff = span.cutoff(tip.time, tip.utc_offset_minutes);
        for (s, d) in snapshots.iter().zip(decisions.iter_mut()) {
            if s.time > cutoff {
                d.reasons.push(Reason::Within(span));
            }
        }
    }
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::days_from_civil;

    /// Epoch seconds of a local wall-clock time at `offset` minutes.
    fn at(y: i64, mo: i64, d: i64, h: i64, mi: i64, offset: i32) -> SnapshotTime {
        let local = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
        SnapshotTime {
            time: local - i64::from(offset) * 60,
            utc_offset_minutes: offset,
        }
    }

    fn utc(y: i64, mo: i64, d: i64, h: i64) -> SnapshotTime {
        at(y, mo, d, h, 0, 0)
    }

    /// Indices (oldest first) of the kept snapshots.
    fn kept(snapshots: &[SnapshotTime], rules: Rules) -> Vec<usize> {
        plan(snapshots, &rules)
            .expect("rules given")
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep())
            .map(|(i, _)| i)
            .collect()
    }

    /// One snapshot a day at 10:00 UTC from `y-mo-d`, `n` days.
    fn dailies(y: i64, mo: i64, d: i64, n: i64) -> Vec<SnapshotTime> {
        let first = days_from_civil(y, mo, d);
        (0..n)
            .map(|k| SnapshotTime {
                time: (first + k) * 86400 + 10 * 3600,
                utc_offset_minutes: 0,
            })
            .collect()
    }

    #[test]
    fn empty_rules_are_refused_not_a_wipe() {
        let snaps = dailies(2026, 1, 1, 3);
        assert_eq!(
            plan(&snaps, &Rules::default()),
            Err(RetentionError::NoRules)
        );
        assert_eq!(plan(&[], &Rules::default()), Err(RetentionError::NoRules));
        assert!(!RetentionError::NoRules.to_string().contains('\n'));
    }

    #[test]
    fn newest_is_always_kept_and_no_snapshots_is_no_decisions() {
        let snaps = dailies(2026, 1, 1, 5);
        // keep-within 1h of the newest: only the newest itself.
        let rules = Rules {
            within: Some(Span::parse("1h").expect("span")),
            ..Rules::default()
        };
        let d = plan(&snaps, &rules).expect("plan");
        assert_eq!(
            d[4].reasons,
            [Reason::Newest, Reason::Within(rules.within.unwrap())]
        );
        assert!(d[..4].iter().all(|d| !d.keep()));
        assert_eq!(plan(&[], &rules), Ok(vec![]));
    }

    #[test]
    fn last_counts_snapshots_from_the_tip() {
        let snaps = dailies(2026, 1, 1, 5);
        let rules = Rules {
            last: 2,
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, rules), [3, 4]);
        let d = plan(&snaps, &rules).expect("plan");
        assert_eq!(d[3].explain(), "last 2/2");
        assert_eq!(d[4].explain(), "newest, last 1/2");
    }

    #[test]
    fn daily_keeps_the_newest_of_each_of_the_last_days_that_have_one() {
        // Two saves a day for 10 days, then a gap of 5 days, then 3 more.
        let mut snaps = Vec::new();
        for day in (1..=10).chain(16..=18) {
            snaps.push(utc(2026, 1, day, 9));
            snaps.push(utc(2026, 1, day, 21));
        }
        let rules = Rules {
            daily: 5,
            ..Rules::default()
        };
        // Days 18, 17, 16, 10, 9: the gap is not counted; 21:00 wins.
        let expect: Vec<usize> = [8, 9, 10, 11, 12].iter().map(|k| k * 2 + 1).collect();
        assert_eq!(kept(&snaps, rules), expect);
    }

    #[test]
    fn month_boundaries_split_monthly_buckets() {
        // Daily from Jan 28 to Feb 3 2026, and one on Dec 31 2025.
        let mut snaps = vec![utc(2025, 12, 31, 23)];
        snaps.extend(dailies(2026, 1, 28, 7));
        let rules = Rules {
            monthly: 3,
            ..Rules::default()
        };
        // Feb 3 (newest of February), Jan 31, Dec 31.
        assert_eq!(kept(&snaps, rules), [0, 4, 7]);
        // Two months only: December goes.
        let rules = Rules {
            monthly: 2,
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, rules), [4, 7]);
    }

    #[test]
    fn year_boundaries_split_yearly_and_iso_weeks_do_not() {
        // Dec 27 2025 (Saturday) to Jan 4 2026 (Sunday), daily.
        let snaps = dailies(2025, 12, 27, 9);
        let yearly = Rules {
            yearly: 2,
            ..Rules::default()
        };
        // Jan 4 2026 and Dec 31 2025.
        assert_eq!(kept(&snaps, yearly), [4, 8]);
        let weekly = Rules {
            weekly: 2,
            ..Rules::default()
        };
        // ISO week 2026-W01 runs Dec 29 to Jan 4: its newest is Jan 4;
        // 2025-W52 ends on Sunday Dec 28.
        assert_eq!(kept(&snaps, weekly), [1, 8]);
    }

    /// Europe/Paris springs forward on 2026-03-29 (02:00 +0100 becomes
    /// 03:00 +0200) and falls back on 2026-10-25 (03:00 +0200 becomes
    /// 02:00 +0100). Days and hours are the saving host's wall clock.
    #[test]
    fn dst_changes_count_local_days_and_hours() {
        // 00:30 +0100 on March 29 is still March 28 in UTC: it belongs
        // to the 29th, whose newest is 23:00 +0200.
        let snaps = vec![
            at(2026, 3, 28, 12, 0, 60),
            at(2026, 3, 29, 0, 30, 60),
            at(2026, 3, 29, 3, 30, 120),
            at(2026, 3, 29, 23, 0, 120),
            at(2026, 3, 30, 0, 30, 120),
        ];
        assert_eq!(snaps[1].time / 86400, days_from_civil(2026, 3, 28));
        let daily = Rules {
            daily: 3,
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, daily), [0, 3, 4]);

        // 02:30 +0200 then 02:30 +0100 an hour later: one wall-clock hour,
        // one hourly bucket, and its newest is the later one.
        let fall = vec![
            at(2026, 10, 25, 1, 30, 120),
            at(2026, 10, 25, 2, 30, 120),
            at(2026, 10, 25, 2, 30, 60),
            at(2026, 10, 25, 3, 30, 60),
        ];
        assert_eq!(fall[2].time - fall[1].time, 3600);
        let hourly = Rules {
            hourly: 3,
            ..Rules::default()
        };
        assert_eq!(kept(&fall, hourly), [0, 2, 3]);
    }

    #[test]
    fn leap_day_is_its_own_day_and_months_back_clamp_to_it() {
        let snaps = vec![
            utc(2024, 2, 28, 12),
            utc(2024, 2, 29, 12),
            at(2024, 2, 29, 12, 1, 0),
            utc(2024, 3, 1, 12),
            utc(2024, 3, 31, 12),
        ];
        let daily = Rules {
            daily: 4,
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, daily), [0, 2, 3, 4]);
        // One month before March 31 is February 29 (clamped), same time:
        // strictly newer is kept, the same second is not.
        let within = Rules {
            within: Some(Span::parse("1m").expect("span")),
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, within), [2, 3, 4]);
        let span = Span::parse("1y").expect("span");
        assert_eq!(
            span.cutoff(utc(2024, 2, 29, 12).time, 0),
            utc(2023, 2, 28, 12).time
        );
    }

    /// bup's `prune-older` breaks on two saves in one second. Here they
    /// are told apart by their place in the history: a period keeps only
    /// the one nearest the tip, `last` counts each.
    #[test]
    fn same_second_duplicates_are_decided_one_by_one() {
        let t = utc(2026, 5, 1, 12);
        let snaps = vec![utc(2026, 4, 30, 12), t, t, t];
        let daily = Rules {
            daily: 7,
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, daily), [0, 3]);
        let last = Rules {
            last: 2,
            ..Rules::default()
        };
        assert_eq!(kept(&snaps, last), [2, 3]);
        let all_same = vec![t; 4];
        assert_eq!(kept(&all_same, daily), [0, 3], "the oldest, for daily");
    }

    #[test]
    fn a_short_history_keeps_its_oldest_snapshot_too() {
        let snaps = dailies(2026, 1, 1, 10);
        let rules = Rules {
            daily: 3,
            monthly: 6,
            ..Rules::default()
        };
        let d = plan(&snaps, &rules).expect("plan");
        assert_eq!(d[0].explain(), "oldest, for monthly (only 1 of 6 months)");
        assert_eq!(kept(&snaps, rules), [0, 7, 8, 9]);
    }

    #[test]
    fn spans_parse_and_print_back() {
        let s = Span::parse("1y6m").expect("span");
        assert_eq!((s.years, s.months), (1, 6));
        assert_eq!(s.to_string(), "1y6m");
        for ok in ["30d", "12h", "2w", "6m", "1y", "1y2m3w4d5h"] {
            assert_eq!(Span::parse(ok).expect(ok).to_string(), ok);
        }
        for bad in [
            "",
            "30",
            "0d",
            "d",
            "1x",
            "-1d",
            "1.5d",
            "1d2",
            "99999999999d",
        ] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extreme_times_never_panic() {
        let snaps: Vec<SnapshotTime> = [i64::MIN, -1, 0, i64::MAX]
            .iter()
            .map(|&time| SnapshotTime {
                time,
                utc_offset_minutes: -5999,
            })
            .collect();
        let rules = Rules {
            last: 1,
            hourly: 9,
            daily: 9,
            weekly: 9,
            monthly: 9,
            yearly: 9,
            within: Some(Span::parse("4294967295y4294967295m").expect("span")),
        };
        assert!(plan(&snaps, &rules).expect("plan")[3].keep());
    }
}
