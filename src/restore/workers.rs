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
//! A large file stored as a chunk tree (at least [`SPLIT_MIN`] bytes) is
//! written by several workers at once: the worker that takes it sizes the
//! file and cuts it along its chunk tree into parts (whole subtrees or
//! chunks, about [`PARTS_PER_WORKER`] per worker, see
//! [`split_content`]), which any worker writes at its offset; whoever
//! finishes the last part applies the file's metadata. Parts come before
//! new files, so a large file is done soon. Otherwise a restore's largest
//! file (a disk image, a database dump) was written by one thread while
//! the others had nothing left to do: the benchmark's local restore took
//! 2.06 s instead of 2.39 s (medians of 5) once they shared it.
//!
//! Memory and descriptors stay bounded: the queue holds at most
//! [`QUEUE_PER_WORKER`] jobs per worker, each with two descriptors.

use super::{sparse, RestoreError};
use crate::locks::{lock, wait};
use crate::meta::{Applier, ApplyOptions, FsError, Metadata};
use crate::repo::Repo;
use crate::view::{split_content, ContentReader, Node, Piece};
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// Jobs waiting per worker: enough that a worker never waits for the walk
/// (which only creates entries), few enough to bound open descriptors.
const QUEUE_PER_WORKER: usize = 16;

/// Files at least this large, stored as a chunk tree, are written in
/// parts by several workers.
const SPLIT_MIN: u64 = 16 << 20;

/// Parts a split file is cut into per worker, where its chunk tree allows
/// (parts are whole subtrees or chunks, of uneven sizes).
const PARTS_PER_WORKER: usize = 8;

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

/// A large file being written in parts.
struct SplitFile {
    job: FileJob,
    /// Parts not finished yet; the worker that takes it to zero applies
    /// the metadata.
    left: AtomicUsize,
}

/// One part of a [`SplitFile`].
struct Part {
    file: Arc<SplitFile>,
    piece: Piece,
}

/// Work waiting for a worker.
#[derive(Default)]
struct Queue {
    files: VecDeque<FileJob>,
    parts: VecDeque<Part>,
    /// No more files will come (the walk is over).
    closed: bool,
    /// Files taken by workers and not done with ([`InHand`]).
    in_hand: usize,
}

/// What the workers share with the walk.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Files the queue holds at most. A walk waiting for room is woken
    /// once it is down to half: then it queues a run of files, rather
    /// than being woken and put to sleep again for each file a worker
    /// takes.
    capacity: usize,
    /// Signalled when work is queued or the queue is closed.
    work: Condvar,
    /// Signalled when a file leaves the queue.
    room: Condvar,
    /// The first error (the restore stops there) and whether there is one.
    error: Mutex<Option<RestoreError>>,
    failed: AtomicBool,
    warnings: Mutex<Vec<String>>,
    bytes: AtomicU64,
}

impl Shared {
    fn fail(&self, e: RestoreError) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::Release);
        drop(slot);
        // A walk waiting for room must see the error: taking the queue's
        // lock first, the walk is either before its check or waiting.
        let _queue = lock(&self.queue);
        self.room.notify_all();
    }

    /// The next part, or else the next file; `None` once the queue is
    /// closed and empty and no file that may still be cut into parts is
    /// in another worker's hands. (Stopping at an empty queue left the
    /// restore's last file, often its largest, to one worker: the walk
    /// had closed the queue before that worker cut it into parts.)
    fn next(&self) -> Option<Work> {
        let mut queue = lock(&self.queue);
        loop {
            if let Some(part) = queue.parts.pop_front() {
                return Some(Work::Part(part));
            }
            if let Some(file) = queue.files.pop_front() {
                queue.in_hand += 1;
                if queue.files.len() <= self.capacity / 2 {
                    self.room.notify_one();
                }
                return Some(Work::File(file));
            }
            if queue.closed && queue.in_hand == 0 {
                return None;
            }
            queue = wait(&self.work, queue);
        }
    }
}

// One at a time per worker, moved out of the queue: boxing the file would
// only add an allocation per file.
#[allow(clippy::large_enum_variant)]
enum Work {
    File(FileJob),
    Part(Part),
}

/// The workers of one restore call, running in `scope`.
pub(super) struct Pool<'scope> {
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
        let shared = Arc::new(Shared {
            capacity: workers * QUEUE_PER_WORKER,
            ..Shared::default()
        });
        // One worker gains nothing from parts.
        let split = if workers > 1 {
            workers * PARTS_PER_WORKER
        } else {
            0
        };
        let threads = (0..workers)
            .map(|_| {
                let shared = shared.clone();
                scope.spawn(move || work(repo, &shared, Applier::new(opts), split))
            })
            .collect();
        Pool { shared, threads }
    }

    /// Queues `job`, waiting while the queue is full; the first worker
    /// error instead, once there is one.
    pub fn submit(&self, job: FileJob) -> Result<(), RestoreError> {
        let mut queue = lock(&self.shared.queue);
        while queue.files.len() >= self.shared.capacity {
            self.check()?;
            queue = wait(&self.shared.room, queue);
        }
        self.check()?;
        job.outstanding.fetch_add(1, Ordering::AcqRel);
        queue.files.push_back(job);
        self.shared.work.notify_one();
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
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_all();
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

impl Drop for Pool<'_> {
    /// A walk that ends without [`Pool::finish`] (it panicked) still
    /// closes the queue: the workers finish what is queued and stop, and
    /// the scope joins them and re-raises the panic instead of waiting
    /// for ever.
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_all();
    }
}

/// Stops the restore if its worker panics: the walk may be waiting for
/// room in the queue, which only the workers make.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(worker_panicked());
        }
    }
}

/// `split`: cut large files into about this many parts (0: never).
fn work(repo: &dyn Repo, shared: &Shared, mut applier: Applier, split: usize) {
    let _guard = PanicGuard(shared);
    while let Some(work) = shared.next() {
        match work {
            Work::File(job) => {
                let _in_hand = InHand(shared);
                write_file(repo, shared, &mut applier, job, split);
            }
            Work::Part(part) => write_part(repo, shared, &mut applier, part),
        }
    }
}

/// A file a worker has taken: until it is done, it may still be cut into
/// parts, so the other workers wait for it rather than stop (see
/// [`Shared::next`]). Dropped when the worker is done with it, also by a
/// panic.
struct InHand<'a>(&'a Shared);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        let mut queue = lock(&self.0.queue);
        queue.in_hand -= 1;
        if queue.in_hand == 0 && queue.closed {
            self.0.work.notify_all();
        }
    }
}

/// Writes one whole file, or cuts a large one into parts and writes the
/// first of them.
fn write_file(repo: &dyn Repo, shared: &Shared, applier: &mut Applier, job: FileJob, split: usize) {
    if shared.failed.load(Ordering::Acquire) {
        // Drained without work: the restore is stopping.
        job.outstanding.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    if split > 0 && job.node.recorded_size().unwrap_or(0) >= SPLIT_MIN {
        match split_content(repo.objects(), &job.node, split) {
            Ok(Some((size, pieces))) if pieces.len() > 1 => {
                split_file(repo, shared, applier, job, size, pieces);
                return;
            }
            // One entry, or a single blob: one piece.
            Ok(_) => {}
            Err(e) => {
                shared.fail(RestoreError::Read {
                    path: job.shown.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                });
                job.outstanding.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }
    let reader = ContentReader::of_node(repo.objects(), &job.node);
    let written = sparse::write_sparse(&job.file, reader, &job.shown);
    finish_file(shared, applier, &job, written);
}

/// Gives the file its size, queues all of its parts but the first for
/// the other workers, and writes the first.
fn split_file(
    repo: &dyn Repo,
    shared: &Shared,
    applier: &mut Applier,
    job: FileJob,
    size: u64,
    mut pieces: Vec<Piece>,
) {
    // The holes a sparse write leaves must exist, the last one too.
    if let Err(source) = job.file.set_len(size) {
        let path = job.shown.clone();
        finish_file(
            shared,
            applier,
            &job,
            Err(RestoreError::Write { path, source }),
        );
        return;
    }
    tracing::debug!(
        "{}: {size} bytes written in {} parts",
        job.shown.display(),
        pieces.len()
    );
    let file = Arc::new(SplitFile {
        job,
        left: AtomicUsize::new(pieces.len()),
    });
    let first = pieces.remove(0);
    {
        let mut queue = lock(&shared.queue);
        queue.parts.extend(pieces.into_iter().map(|piece| Part {
            file: file.clone(),
            piece,
        }));
    }
    shared.work.notify_all();
    write_part(repo, shared, applier, Part { file, piece: first });
}

/// Writes one part of a split file; the last part to finish applies the
/// file's metadata.
fn write_part(repo: &dyn Repo, shared: &Shared, applier: &mut Applier, part: Part) {
    let job = &part.file.job;
    if !shared.failed.load(Ordering::Acquire) {
        let (at, expected) = (part.piece.offset(), part.piece.size());
        let reader = ContentReader::part(repo.objects(), &part.piece);
        match sparse::write_part(&job.file, reader, &job.shown, at) {
            // The reader holds every chunk to its offsets: a part of
            // another length would be a bug, never a file restored short.
            Ok(n) if n == expected => {
                shared.bytes.fetch_add(n, Ordering::AcqRel);
            }
            Ok(n) => shared.fail(RestoreError::Read {
                path: job.shown.clone(),
                source: std::io::Error::other(format!(
                    "a part of {expected} bytes at offset {at} gave {n} (a bug)"
                )),
            }),
            Err(e) => shared.fail(e),
        }
    }
    if part.file.left.fetch_sub(1, Ordering::AcqRel) == 1 {
        // The last part: every byte is written (or the restore is
        // stopping, and the file keeps its restore-time metadata).
        if !shared.failed.load(Ordering::Acquire) {
            apply_job_meta(shared, applier, job);
        }
        job.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// After a whole file's content: its metadata, or the error.
fn finish_file(
    shared: &Shared,
    applier: &mut Applier,
    job: &FileJob,
    written: Result<u64, RestoreError>,
) {
    match written {
        Ok(n) => {
            shared.bytes.fetch_add(n, Ordering::AcqRel);
            apply_job_meta(shared, applier, job);
        }
        Err(e) => shared.fail(e),
    }
    // After the metadata: the directory's may follow now.
    job.outstanding.fetch_sub(1, Ordering::AcqRel);
}

fn apply_job_meta(shared: &Shared, applier: &mut Applier, job: &FileJob) {
    if let Some(meta) = &job.node.meta {
        let problems = apply_meta_open(applier, job.file.as_fd(), &job.shown, meta);
        if !problems.is_empty() {
            lock(&shared.warnings).extend(problems);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;
    use std::time::Duration;

    #[test]
    fn an_idle_worker_waits_for_a_file_that_may_still_be_cut_into_parts() {
        let shared = Arc::new(Shared::default());
        {
            // The walk is over; another worker holds the last file.
            let mut queue = lock(&shared.queue);
            queue.closed = true;
            queue.in_hand = 1;
        }
        let (sent, got) = std::sync::mpsc::channel();
        let waiting = shared.clone();
        std::thread::spawn(move || {
            let _ = sent.send(waiting.next().is_some());
        });
        assert!(
            got.recv_timeout(Duration::from_millis(300)).is_err(),
            "a worker stopped while the last file could still be cut into parts"
        );
        drop(InHand(&shared));
        assert_eq!(got.recv_timeout(Duration::from_secs(20)), Ok(false));
    }

    #[test]
    fn workers_stop_when_the_walk_ends_without_finishing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(&tmp.path().join("repo")).expect("init");
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            std::thread::scope(|scope| {
                let pool = Pool::start(scope, &repo, 2, ApplyOptions::default());
                // As a walk that panics drops it: no finish.
                drop(pool);
            });
            let _ = done.send(());
        });
        assert!(
            ended.recv_timeout(Duration::from_secs(20)).is_ok(),
            "the workers of a dropped pool never stopped"
        );
    }
}
