//! `rewind status`'s judgement of one backup, a pure function of its newest
//! snapshot, its last run record, its max-age and the time now; states and
//! exit codes follow the Nagios plugin convention.

use super::record::{self, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// The plugin exit code: 0, 1, 2, 3.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The newest snapshot of a backup: commit id and author time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tip {
    pub commit: String,
    pub time: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub state: State,
    /// Why, in a few words ("newest snapshot is 2d3h old (max-age 26h)").
    pub reason: String,
}

/// Judges a backup. In order: a last run that failed after the newest
/// snapshot, no snapshot at all, or a snapshot older than `max_age_secs`
/// is CRITICAL; a newest snapshot whose run had warnings is WARNING.
pub fn judge(tip: Option<&Tip>, last: Option<&Record>, max_age_secs: u64, now: i64) -> Health {
    let health = |state, reason: String| Health { state, reason };
    if let Some(r) = last.filter(|r| r.result == record::Result::Failed) {
        // A snapshot made since the failure (a manual save) supersedes it;
        // the snapshot the record carries over is the one from before.
        let before_failure =
            |t: &Tip| r.saved.as_ref().is_some_and(|s| s.commit == t.commit) || t.time < r.time;
        if tip.is_none_or(before_failure) {
            return health(
                State::Critical,
                format!(
                    "last run failed at {}: {}",
                    crate::time::listing_time(r.time),
                    r.error.as_deref().unwrap_or("no error recorded")
                ),
            );
        }
    }
    let Some(tip) = tip else {
        return health(State::Critical, "no snapshot yet".into());
    };
    let age = now.saturating_sub(tip.time).max(0) as u64;
    if age > max_age_secs {
        return health(
            State::Critical,
            format!(
                "newest snapshot is {} old (max-age {})",
                crate::config::format_duration(age),
                crate::config::format_duration(max_age_secs)
            ),
        );
    }
    if let Some(r) = last.filter(|r| {
        r.result == record::Result::Partial
            && r.saved.as_ref().is_some_and(|s| s.commit == tip.commit)
    }) {
        return health(
            State::Warning,
            format!(
                "newest snapshot was saved with {} warnings (some files are missing from it)",
                r.warnings
            ),
        );
    }
    health(State::Ok, "fresh".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::{Record, Result as R, Saved};

    fn rec(result: R, time: i64, commit: &str) -> Record {
        Record {
            time,
            result,
            error: (result == R::Failed).then(|| "boom".to_string()),
            warnings: u64::from(result == R::Partial) * 3,
            duration_seconds: 1.0,
            saved: Some(Saved {
                commit: commit.into(),
                time: 1000,
                files: 1,
                bytes_read: 1,
                bytes_added: 1,
            }),
        }
    }

    #[test]
    fn states_follow_failure_absence_age_and_warnings() {
        let tip = Tip {
            commit: "c1".into(),
            time: 1000,
        };
        let day = 86400;
        assert_eq!(judge(Some(&tip), None, day, 2000).state, State::Ok);
        assert_eq!(judge(None, None, day, 2000).state, State::Critical);
        let stale = judge(Some(&tip), None, 100, 2000);
        assert_eq!(stale.state, State::Critical);
        assert!(stale.reason.contains("16m40s old"), "{}", stale.reason);
        let failed = rec(R::Failed, 1500, "c1");
        assert_eq!(
            judge(Some(&tip), Some(&failed), day, 2000).state,
            State::Critical
        );
        // A save after the failure supersedes it.
        let later = Tip {
            commit: "c2".into(),
            time: 1600,
        };
        assert_eq!(
            judge(Some(&later), Some(&failed), day, 2000).state,
            State::Ok
        );
        let partial = rec(R::Partial, 990, "c1");
        assert_eq!(
            judge(Some(&tip), Some(&partial), day, 2000).state,
            State::Warning
        );
        // Warnings of an older snapshot do not taint a newer one.
        assert_eq!(
            judge(Some(&later), Some(&partial), day, 2000).state,
            State::Ok
        );
        assert_eq!(State::Critical.code(), 2);
        assert_eq!(State::Unknown.code(), 3);
    }
}
