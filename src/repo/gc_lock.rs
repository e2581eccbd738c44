//! The writers' lock: `rewind/gc.lock`, which keeps a gc from deleting
//! what a save is about to reference.
//!
//! A save decides "already stored, reuse it" from the packs it saw when it
//! began, and references those objects when its ref moves, maybe an hour
//! later. A gc that deleted one of them in between would leave the new
//! snapshot pointing at nothing. So every writer (a local save, a server
//! session that may write) holds the lock *shared* from before it learns
//! which objects are stored until its ref has moved, and gc holds it
//! *exclusive* from before its mark until its last deletion. Writers do not
//! exclude each other (refs move by compare-and-swap).
//!
//! The lock is a [`LockFile`] (flock: no stale lock after a crash). Its
//! text (gc's pid and start time) only serves the messages of whoever
//! waits.

use super::lockfile::{LockFile, Mode};
use super::Error;
use std::path::Path;

/// File name under the repository's `rewind/` directory.
pub const GC_LOCK_NAME: &str = "gc.lock";

/// A writer's shared hold; released when dropped.
#[derive(Debug)]
pub struct WriteLock {
    _file: LockFile,
}

/// gc's exclusive hold; released (and its text emptied) when dropped.
#[derive(Debug)]
pub struct GcLock {
    _file: LockFile,
}

fn open(rewind_dir: &Path) -> Result<LockFile, Error> {
    let path = rewind_dir.join(GC_LOCK_NAME);
    LockFile::open(&path).map_err(Error::io("opening the gc lock", &path))
}

/// A writer's hold on `repo`'s lock, where the repository needs one
/// ([`super::Repo::lock_for_write`]), warning once if a gc runs: what a
/// save or a prune takes before it writes objects a ref will name.
pub fn hold_off_gc(repo: &dyn super::Repo) -> Result<Option<WriteLock>, Error> {
    repo.lock_for_write(&|holder| {
        tracing::warn!(
            "waiting for a gc of {} to finish ({holder})",
            repo.location()
        )
    })
}

/// How often a writer waiting for a gc looks again, and at SIGINT.
const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(100);

/// Takes the lock shared, waiting for a running gc to finish (a writer
/// that fails instead would turn every cron save during a long gc into a
/// failed backup). `waiting` is called once if it has to wait.
///
/// The wait is a `try_lock` every [`WAIT_STEP`], not a blocking flock:
/// the interrupt handler restarts system calls (`SA_RESTART`), so a
/// blocked flock would sleep through the first Ctrl-C, and the second
/// kills the process. Between tries a SIGINT or SIGTERM noted by
/// [`crate::interrupt`] ends the wait with [`Error::Interrupted`].
pub fn lock_for_write(rewind_dir: &Path, waiting: &dyn Fn(&str)) -> Result<WriteLock, Error> {
    let mut file = open(rewind_dir)?;
    let try_shared = |file: &LockFile| {
        file.try_lock(Mode::Shared)
            .map_err(Error::io("taking the gc lock", file.path()))
    };
    if !try_shared(&file)? {
        waiting(file.text().trim());
        loop {
            if let Some(signal) = crate::interrupt::pending() {
                return Err(Error::Interrupted { signal });
            }
            std::thread::sleep(WAIT_STEP);
            if try_shared(&file)? {
                break;
            }
        }
    }
    Ok(WriteLock { _file: file })
}

/// Takes the lock exclusive. With `wait`, waits for the writers that hold
/// it (calling `waiting` once first); without, `Ok(None)` if any does.
pub fn lock_for_gc(
    rewind_dir: &Path,
    wait: bool,
    waiting: &dyn Fn(),
) -> Result<Option<GcLock>, Error> {
    let mut file = open(rewind_dir)?;
    let taken = file
        .try_lock(Mode::Exclusive)
        .map_err(Error::io("taking the gc lock", file.path()))?;
    if !taken {
        if !wait {
            return Ok(None);
        }
        waiting();
        file.lock(Mode::Exclusive)
            .map_err(Error::io("waiting for the gc lock", file.path()))?;
    }
    let text = format!(
        "gc pid {}, started {}\n",
        std::process::id(),
        crate::time::listing_time(crate::time::now())
    );
    let path = file.path().to_path_buf();
    file.write_text(&text)
        .map_err(Error::io("writing", &path))?;
    Ok(Some(GcLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_share_the_lock_and_gc_excludes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock_for_write(dir.path(), &|_| panic!("no gc runs")).expect("write lock");
        let second = lock_for_write(dir.path(), &|_| panic!("writers share")).expect("again");
        // flock locks belong to the open file description: a second open in
        // this process conflicts as another process's would.
        assert!(lock_for_gc(dir.path(), false, &|| ())
            .expect("try")
            .is_none());
        drop((first, second));
        let gc = lock_for_gc(dir.path(), false, &|| ())
            .expect("gc lock")
            .expect("free");
        let text = std::fs::read_to_string(dir.path().join(GC_LOCK_NAME)).expect("read");
        assert!(text.starts_with(&format!("gc pid {}", std::process::id())));
        drop(gc);
        assert_eq!(
            std::fs::read(dir.path().join(GC_LOCK_NAME)).expect("read"),
            b""
        );
    }
}
