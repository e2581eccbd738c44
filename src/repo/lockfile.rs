//! A lock file held with `flock(2)`, for rewind's own locks (the run lock,
//! the writers' lock against gc).
//!
//! The kernel releases a flock when its holder exits, however it exits
//! (kill -9, power loss): there is no stale lock to detect or break. The
//! file is never removed: unlinking a flock'd file would let two processes
//! lock two different files. Its text (who holds it, since when) only
//! serves the messages of whoever waits; a holder that wrote text empties
//! the file when it lets go, so text found by the next holder was left by
//! one that died. std's file locks are flock(2) on Linux, and files are
//! opened close-on-exec, so a child (a dump command) cannot inherit a lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Readers of the text never take more than this.
const MAX_TEXT: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// An open lock file, held or not; the lock goes with the value.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
    /// This holder wrote the text, and empties it when dropped.
    wrote: bool,
}

impl LockFile {
    /// Opens (creating it and its directory if needed) the lock file at
    /// `path`, not locked yet.
    pub fn open(path: &Path) -> io::Result<LockFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)?;
        Ok(LockFile {
            file,
            path: path.to_path_buf(),
            wrote: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock if nobody holds it in a conflicting mode: false if
    /// somebody does.
    pub fn try_lock(&self, mode: Mode) -> io::Result<bool> {
        let taken = match mode {
            Mode::Shared => self.file.try_lock_shared(),
            Mode::Exclusive => self.file.try_lock(),
        };
        match taken {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits for the lock.
    pub fn lock(&self, mode: Mode) -> io::Result<()> {
        match mode {
            Mode::Shared => self.file.lock_shared(),
            Mode::Exclusive => self.file.lock(),
        }
    }

    /// The file's text (bounded; the file is ours and tiny).
    pub fn text(&mut self) -> String {
        let mut text = String::new();
        let _ = self.file.seek(SeekFrom::Start(0));
        let _ = (&self.file).take(MAX_TEXT).read_to_string(&mut text);
        text
    }

    /// Replaces the text (the holder's pid and start); emptied on drop.
    pub fn write_text(&mut self, text: &str) -> io::Result<()> {
        self.wrote = true;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(text.as_bytes())
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Emptied while still held, so that the next holder (or a waiter)
        // is not told about a holder that is gone. The kernel drops the
        // flock when the file closes, just after.
        if self.wrote {
            if let Err(e) = self.file.set_len(0) {
                tracing::warn!("cannot clear {}: {e}", self.path.display());
            }
        }
    }
}
