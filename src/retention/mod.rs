//! Retention: which snapshots of a backup name to keep, as a pure function
//! of their times ([`policy::plan`]). This module owns the rules (what
//! `--keep-*` and the `[retention]` section of the configuration mean),
//! the `keep-within` duration syntax and the calendar the rules count in;
//! rewriting a branch to drop snapshots is `crate::prune`'s.
//!
//! Days, weeks, months and years are those of the host that saved each
//! snapshot: its author time at the UTC offset recorded in the commit
//! ([`calendar`]). Users think in local-time days ("yesterday's backup"),
//! and the saving host's local time is the one they saw; it is also the
//! only zone the repository records, so a plan does not change with the
//! `TZ` of whoever runs `prune` (a backup server in UTC pruning a client's
//! pushes decides as the client would), and a DST change needs no zone
//! database: the offset before and after is in each commit.

pub mod calendar;
pub mod policy;

pub use policy::{plan, Decision, Period, Reason, RetentionError, Rules, SnapshotTime, Span};
