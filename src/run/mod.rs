//! Configured backups, run unattended: `rewind run` makes each backup of
//! the configuration in order under the run lock (`lock`), records how each
//! went (`record`), and `rewind status` judges each backup from its newest
//! snapshot and that record (`health`). Printing is left to the commands.

pub mod health;
pub mod lock;
pub mod record;

use crate::config::Backup;
use crate::repo::Repo;
use crate::save::{save, Identity, SaveOptions, SaveOutcome};
use crate::source::filter::Filter;
use crate::source::paths::Rerooting;
use std::sync::Arc;
use std::time::Instant;

/// The save options of a configured backup. Paths are stored as they are
/// (no rerooting), as `rewind save` stores absolute paths.
pub fn save_options(
    backup: &Backup,
    progress: Option<Arc<crate::progress::Progress>>,
) -> Result<SaveOptions, crate::source::filter::FilterError> {
    Ok(SaveOptions {
        name: backup.name.clone(),
        sources: backup.paths.clone(),
        date: None,
        rerooting: Rerooting::None,
        filter: Filter::new(&backup.excludes, &backup.exclude_from)?,
        one_file_system: backup.one_file_system,
        commands: backup.dumps.clone(),
        progress,
    })
}

/// What a run checks of a backup before saving it, and a dry run too (so
/// that both fail alike): its excludes, name, paths and dump paths. The
/// warnings the save would begin with (missing paths), or its error.
pub fn check_backup(backup: &Backup) -> Result<Vec<String>, String> {
    let opts = save_options(backup, None).map_err(|e| e.to_string())?;
    crate::save::check(&opts).map_err(|e| one_line(&e))
}

/// How one backup of a run went.
#[derive(Debug)]
pub struct BackupRun {
    pub name: String,
    pub started: i64,
    pub elapsed: f64,
    /// The snapshot, or the error (on one line) that stopped it.
    pub outcome: Result<SaveOutcome, String>,
}

impl BackupRun {
    pub fn result(&self) -> record::Result {
        match &self.outcome {
            Ok(o) if o.warnings.is_empty() => record::Result::Ok,
            Ok(_) => record::Result::Partial,
            Err(_) => record::Result::Failed,
        }
    }

    /// The record of this run; `previous` supplies the last good snapshot's
    /// figures when this one failed.
    pub fn record(&self, previous: Option<&record::Record>) -> record::Record {
        let saved = match &self.outcome {
            Ok(o) => Some(record::Saved {
                commit: o.commit.to_string(),
                time: o.time,
                files: o.stats.files,
                bytes_read: o.stats.bytes_read,
                bytes_added: o.stats.bytes_written,
            }),
            Err(_) => previous.and_then(|p| p.saved.clone()),
        };
        record::Record {
            time: self.started,
            result: self.result(),
            error: self
                .outcome
                .as_ref()
                .err()
                .map(|e| shorten(&e.split_whitespace().collect::<Vec<_>>().join(" "))),
            warnings: self.outcome.as_ref().map_or(0, |o| o.warnings.len() as u64),
            duration_seconds: (self.elapsed * 1000.0).round() / 1000.0,
            saved,
        }
    }
}

/// Makes one configured backup. Errors do not escape: a failed backup is
/// an outcome, so that the run goes on with the next.
pub fn run_backup(
    repo: &dyn Repo,
    backup: &Backup,
    progress: Option<Arc<crate::progress::Progress>>,
) -> BackupRun {
    let started_at = Instant::now();
    let started = crate::time::now();
    let outcome = save_options(backup, progress)
        .map_err(|e| e.to_string())
        .and_then(|opts| save(repo, &opts, &Identity::current()).map_err(|e| one_line(&e)));
    BackupRun {
        name: backup.name.clone(),
        started,
        elapsed: started_at.elapsed().as_secs_f64(),
        outcome,
    }
}

/// An error followed by those of its causes it does not already quote (a
/// dump's stderr may span lines; the record keeps it on one).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// Most of a long error for the record: its start (what failed) and its
/// end (the last lines a dump wrote to stderr), at most about 2 KiB.
fn shorten(text: &str) -> String {
    const KEEP: usize = 1000;
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 2 * KEEP + 5 {
        return text.to_string();
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{head} ... {tail}")
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn long_errors_keep_their_start_and_end() {
        assert_eq!(shorten("short"), "short");
        let long = format!("dump failed: {}END", "é".repeat(5000));
        let short = shorten(&long);
        assert!(short.starts_with("dump failed: é"));
        assert!(short.ends_with("éEND"));
        assert!(short.contains(" ... "));
        assert_eq!(short.chars().count(), 2005);
    }
}
