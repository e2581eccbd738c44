//! How a command run on a damaged copy ended, judged from its exit code,
//! standard error and output, and the record kept of each run.

use crate::cases::Kind;
use crate::common::Out;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The bytes the undamaged repository gives.
    Right,
    /// A listing of renamed or missing refs, exactly as git lists them.
    AsGitSees,
    /// Exit 2, one line on standard error.
    CleanError,
    /// Exit 2, one error line after distinct warnings naming a damaged
    /// file.
    WarnedError,
    /// The mount answered a read with an error (EIO, ENOENT).
    ReadError,
    /// Exit 1 with warnings; everything not named in them is right.
    Partial,
    /// The new save reused an object the damage had already made
    /// unreadable; reading it back fails as reading the old snapshot does.
    SavedOntoDamage,
    /// `rewind status` reported what the damaged run records say.
    Reported,
    // Failures from here on.
    Panic,
    Signal,
    Hang,
    WrongBytes,
    UnclearError,
    /// Exit 0 from save, but the new snapshot does not read back while the
    /// old one does.
    SavedUnreadable,
    /// A cache was damaged and the command failed or kept it.
    CacheTrusted,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Right,
        Outcome::AsGitSees,
        Outcome::CleanError,
        Outcome::WarnedError,
        Outcome::ReadError,
        Outcome::Partial,
        Outcome::SavedOntoDamage,
        Outcome::Reported,
        Outcome::Panic,
        Outcome::Signal,
        Outcome::Hang,
        Outcome::WrongBytes,
        Outcome::UnclearError,
        Outcome::SavedUnreadable,
        Outcome::CacheTrusted,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Right => "right",
            Outcome::AsGitSees => "as-git",
            Outcome::CleanError => "error",
            Outcome::WarnedError => "warn+err",
            Outcome::ReadError => "EIO",
            Outcome::Partial => "partial",
            Outcome::SavedOntoDamage => "dedup",
            Outcome::Reported => "report",
            Outcome::Panic => "PANIC",
            Outcome::Signal => "SIGNAL",
            Outcome::Hang => "HANG",
            Outcome::WrongBytes => "WRONG",
            Outcome::UnclearError => "UNCLEAR",
            Outcome::SavedUnreadable => "UNREAD",
            Outcome::CacheTrusted => "CACHE",
        }
    }

    pub fn is_failure(self) -> bool {
        self >= Outcome::Panic
    }
}

/// How a command ended, before comparing its output.
pub fn ending(out: &Option<Out>) -> Option<Outcome> {
    let Some(out) = out else {
        return Some(Outcome::Hang);
    };
    if out.stderr.contains("panicked") || out.stderr.contains("RUST_BACKTRACE") || out.code == 101 {
        return Some(Outcome::Panic);
    }
    if out.code >= 128 {
        return Some(Outcome::Signal);
    }
    match out.code {
        0 => None,
        2 => Some(error_kind(&out.stderr)),
        _ => Some(Outcome::UnclearError),
    }
}

/// An error is clean when standard error is one line, `rewind: error:
/// ...`, saying something; warnings before it (a damaged pack index named
/// once) are counted apart. Repeated lines and terminal colour codes in a
/// pipe are not clean.
pub fn error_kind(stderr: &str) -> Outcome {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some((last, warnings)) = lines.split_last() else {
        return Outcome::UnclearError;
    };
    let distinct: BTreeSet<&&str> = warnings.iter().collect();
    let clean = last.starts_with("rewind: error: ")
        && last.len() > 24
        && !stderr.contains('\x1b')
        && distinct.len() == warnings.len()
        && warnings.iter().all(|w| w.trim_start().starts_with("WARN "));
    match (clean, warnings.is_empty()) {
        (false, _) => Outcome::UnclearError,
        (true, true) => Outcome::CleanError,
        (true, false) => Outcome::WarnedError,
    }
}

/// One probe's result.
pub struct Record {
    pub case: String,
    pub kind: Kind,
    pub command: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

pub fn excerpt(s: &str) -> String {
    let s = s.trim();
    let mut cut: String = s.chars().take(600).collect();
    if cut.len() < s.len() {
        cut.push_str(" ...");
    }
    cut
}
