//! The run lock: one `rewind run` at a time per repository.
//!
//! `<repo>/rewind/run.lock` is a [`LockFile`] (flock: released by the
//! kernel however the holder exits); its text (pid and start time) only
//! serves the messages. Text found by a process that got the lock was left
//! by a run that died, which is reported and taken over.
//!
//! Saves of one backup name are already safe against each other (the ref
//! moves by compare-and-swap); this lock keeps a slow run and the next
//! scheduled one from overlapping.

use crate::repo::lockfile::{LockFile, Mode};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another rewind run ({holder}) holds {}; wait for it to finish", path.display())]
    Held { path: PathBuf, holder: String },
    #[error("{action} run lock {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct RunLock {
    file: LockFile,
}

/// The lock file of the repository at `repo`.
pub fn lock_path(repo: &Path) -> PathBuf {
    repo.join("rewind").join("run.lock")
}

/// Takes the lock without waiting.
pub fn acquire(repo: &Path) -> Result<RunLock, LockError> {
    let path = lock_path(repo);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = LockFile::open(&path).map_err(io("opening", &path))?;
    if !file
        .try_lock(Mode::Exclusive)
        .map_err(io("locking", &path))?
    {
        let holder = describe(&file.text());
        return Err(LockError::Held { path, holder });
    }
    let left = file.text();
    if !left.trim().is_empty() {
        tracing::info!(
            "taking over run lock {} left by a run that ended without releasing it ({})",
            path.display(),
            describe(&left)
        );
    }
    let text = format!(
        "pid {}\nstarted {}\n",
        std::process::id(),
        crate::time::now()
    );
    file.write_text(&text).map_err(io("writing", &path))?;
    Ok(RunLock { file })
}

impl RunLock {
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// "pid 123, started 2026-11-22 01:00" from the lock file's text.
fn describe(text: &str) -> String {
    let mut pid = None;
    let mut started = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pid ") {
            pid = v.trim().parse::<u32>().ok();
        } else if let Some(v) = line.strip_prefix("started ") {
            started = v.trim().parse::<i64>().ok();
        }
    }
    match (pid, started) {
        (Some(pid), Some(t)) => format!("pid {pid}, started {}", crate::time::listing_time(t)),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "pid unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_released_locks_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        // flock locks belong to the open file description, so a second open
        // in the same process conflicts just as another process would.
        match acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert!(holder.starts_with(&format!("pid {}, started ", std::process::id())));
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert_eq!(std::fs::read(lock_path(dir.path())).unwrap(), b"");
        let _again = acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_lock_left_by_a_dead_run_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rewind")).unwrap();
        std::fs::write(lock_path(dir.path()), "pid 999999999\nstarted 1700000000\n").unwrap();
        let lock = acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert!(text.starts_with(&format!("pid {}\n", std::process::id())));
    }
}
