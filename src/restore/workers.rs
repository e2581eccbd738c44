//! Regular files restored on several threads.
//!
//! The restore's walk stays on one thread and creates every entry in
//! snapshot order (directories, links, specials, the files themselves), so
//! names, hardlink groups and error order are as with one thread. What
//! costs time, a file's content (read, inflate, hash, write) and then its
//! metadata, is handed to the workers as a [`FileJob`] holding the open
//! file. (Creating files on the workers too was measured slower: two
//! threads creating entries in one directory contend for it in the
//! kernel.)
//!
//! A directory's own metadata must come after its entries' (a read-only
//! mode would stop a non-root restore from reaching them), so each
//! directory counts its files still with the workers ([`Outstanding`]);
//! the walk defers a directory whose count is not zero and applies it once
//! it is. Nothing else orders directories: creating entries changes a
//! directory's times, but writing a file's content or setting its metadata
//! does not change its parent's.
//!
//! Memory and descriptors stay bounded: the queue holds at most
//! [`QUEUE_PER_WORKER`] jobs per worker, each with two descriptors.

use super::{sparse, RestoreError};
use crate::meta::{Applier, ApplyOptions, FsError, Metadata};
use crate::repo::Repo;
use crate::view::{ContentReader, Node};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// Jobs waiting per worker: enough that a worker never waits for the walk
/// (which only creates entries), few enough to bound open descriptors.
const QUEUE_PER_WORKER: usize = 16;

/// Files of one directory still with the workers.
pub(super) type Outstanding = Arc<AtomicUsize>;

/// One regular file whose content and metadata are still to be written.
pub(super) struct FileJob {
    /// Where the file is, for messages.
    pub shown: PathBuf,
    pub file: File,
    pub node: Node,
    pub outstanding: Outstanding,
}

/// What the workers share with the walk.
#[derive(Default)]
struct Shared {
    /// The first error (the restore stops there) and whether there is one.
    error: Mutex<Option<RestoreError>>,
    failed: AtomicBool,
    warnings: Mutex<Vec<String>>,
    bytes: AtomicU64,
}

/// The workers of one restore call, running in `scope`.
pub(super) struct Pool<'scope> {
    jobs: Option<SyncSender<FileJob>>,
    shared: Arc<Shared>,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Pool<'scope> {
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'env dyn Repo,
        workers: usize,
        opts: ApplyOptions,
    ) -> Pool<'scope> {
        let (tx, rx) = sync_channel::<FileJob>(workers * QUEUE_PER_WORKER);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared::default());
        let threads = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                let shared = shared.clone();
                scope.spawn(move || work(repo, &rx, &shared, Applier::new(opts)))
            })
            .collect();
        Pool {
            jobs: Some(tx),
            shared,
            threads,
        }
    }

    /// Queues `job`, waiting while the queue is full; the first worker
    /// error instead, once there is one.
    pub fn submit(&self, job: FileJob) -> Result<(), RestoreError> {
        self.check()?;
        job.outstanding.fetch_add(1, Ordering::AcqRel);
        let jobs = self.jobs.as_ref().expect("submit before finish");
        if jobs.send(job).is_err() {
            // Every worker is gone, which only an error (or a panic) does.
            self.check()?;
            return Err(worker_panicked());
        }
        Ok(())
    }

    /// The first error a worker met, if any.
    pub fn check(&self) -> Result<(), RestoreError> {
        if !self.shared.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut slot = lock(&self.shared.error);
        Err(slot.take().unwrap_or(RestoreError::Stopped))
    }

    /// Waits for every queued job; returns the bytes written, the workers'
    /// warnings, and their first error.
    pub fn finish(mut self) -> (u64, Vec<String>, Result<(), RestoreError>) {
        drop(self.jobs.take());
        let mut panicked = false;
        for t in self.threads.drain(..) {
            panicked |= t.join().is_err();
        }
        let result = match self.check() {
            Ok(()) if panicked => Err(worker_panicked()),
            other => other,
        };
        let warnings = std::mem::take(&mut *lock(&self.shared.warnings));
        (self.shared.bytes.load(Ordering::Acquire), warnings, result)
    }
}

fn work(repo: &dyn Repo, jobs: &Mutex<Receiver<FileJob>>, shared: &Shared, mut applier: Applier) {
    loop {
        // The lock is held only while taking a job, not while doing it.
        let Ok(job) = lock(jobs).recv() else {
            return;
        };
        if shared.failed.load(Ordering::Acquire) {
            // Drained without work: the restore is stopping.
            job.outstanding.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let reader = ContentReader::of_node(repo.objects(), &job.node);
        match sparse::write_sparse(&job.file, reader, &job.shown) {
            Ok(n) => {
                shared.bytes.fetch_add(n, Ordering::AcqRel);
                if let Some(meta) = &job.node.meta {
                    let problems =
                        apply_meta_open(&mut applier, job.file.as_fd(), &job.shown, meta);
                    if !problems.is_empty() {
                        lock(&shared.warnings).extend(problems);
                    }
                }
            }
            Err(e) => {
                let mut slot = lock(&shared.error);
                if slot.is_none() {
                    *slot = Some(e);
                }
                shared.failed.store(true, Ordering::Release);
            }
        }
        // After the metadata: the directory's may follow now.
        job.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Applies `meta` to the file or directory open as `fd` (no path lookup);
/// the problems as warnings naming `shown`.
pub(super) fn apply_meta_open(
    applier: &mut Applier,
    fd: BorrowedFd<'_>,
    shown: &Path,
    meta: &Metadata,
) -> Vec<String> {
    warnings(applier.apply_open(fd, shown, meta), shown)
}

/// `result`'s problems as warnings naming `shown` (each logged).
pub(super) fn warnings(result: Result<(), Vec<FsError>>, shown: &Path) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .map(|mut p| {
                p.path = shown.to_path_buf();
                let message = p.to_string();
                tracing::warn!("{message}");
                message
            })
            .collect(),
    }
}

fn worker_panicked() -> RestoreError {
    RestoreError::WorkerPanicked
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
