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
//! The lock is `flock(2)`, so the kernel releases it when its holder exits,
//! however it exits (kill -9, power loss): there is no stale lock to detect
//! or break. The file is never removed: unlinking a flock'd file would let
//! two processes lock two different files. Its text (pid, start time, what
//! holds it) only serves the messages of whoever waits.

use super::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File name under the repository's `rewind/` directory.
pub const GC_LOCK_NAME: &str = "gc.lock";

/// A writer's shared hold; released when dropped.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

/// gc's exclusive hold; released when dropped.
#[derive(Debug)]
pub struct GcLock {
    file: File,
    path: PathBuf,
}

fn open(rewind_dir: &Path) -> Result<(File, PathBuf), Error> {
    let path = rewind_dir.join(GC_LOCK_NAME);
    std::fs::create_dir_all(rewind_dir).map_err(Error::io("creating directory", rewind_dir))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(Error::io("opening the gc lock", &path))?;
    Ok((file, path))
}

/// Takes the lock shared, waiting for a running gc to finish (a writer
/// that fails instead would turn every cron save during a long gc into a
/// failed backup). `waiting` is called once if it has to wait.
pub fn lock_for_write(rewind_dir: &Path, waiting: &dyn Fn(&str)) -> Result<WriteLock, Error> {
    let (mut file, path) = open(rewind_dir)?;
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting(&read_text(&mut file));
            file.lock_shared()
                .map_err(Error::io("waiting for the gc lock", &path))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io("taking the gc lock", &path)(e))
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
    let (mut file, path) = open(rewind_dir)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) if !wait => return Ok(None),
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting();
            file.lock()
                .map_err(Error::io("waiting for the gc lock", &path))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io("taking the gc lock", &path)(e))
        }
    }
    let text = format!(
        "gc pid {}, started {}\n",
        std::process::id(),
        crate::time::listing_time(crate::time::now())
    );
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(text.as_bytes()))
        .map_err(Error::io("writing", &path))?;
    Ok(Some(GcLock { file, path }))
}

impl Drop for GcLock {
    fn drop(&mut self) {
        // Emptied while still held, so a writer that waits later is not
        // told about a gc that is over. The kernel drops the flock on close.
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!("cannot clear {}: {e}", self.path.display());
        }
    }
}

fn read_text(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    // Bounded: the file is ours and tiny.
    let _ = file.take(256).read_to_string(&mut text);
    text.trim().to_string()
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
