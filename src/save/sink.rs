//! Where a save's objects go: dedup, then compression on worker threads and
//! appending to a pack on one more thread.
//!
//! The walker (the caller) reads, chunks and hashes, and needs each id at
//! once to build chunk trees, so `put` hashes inline, decides whether the
//! object is new (this save's own ids, then the repository's
//! [`KnownObjects`]), copies a new object into the batch being filled and,
//! when the batch is full, hands it to the compression workers. Workers
//! deflate (or store, when incompressible) each object of the batch and
//! pass it to the appender, which owns the [`PackWriter`] and writes
//! entries in whatever order they come (a pack's order is free; the idx is
//! built from the offsets actually written). The appender returns each
//! batch to the free list.
//!
//! Memory is bounded by the fixed number of batches (of bounded size, plus
//! at most one object): when all are in flight, `put` waits for one, so a
//! slow disk slows the walker instead of filling memory. Batch buffers are
//! reused and shrunk after an unusually large object.
//!
//! An error in the appender (ENOSPC, EIO) stops the pipeline: the next
//! `put` or `publish` returns it, and the unfinished pack, a temporary file,
//! is deleted when the writer drops. Packs already published by a size
//! rollover stay: they are complete, verified packs that nothing references.

use super::{SaveError, SaveStats};
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::writer::Compressor;
use crate::pack::PackWriter;
use crate::repo::known::KnownObjects;
use crate::repo::{Error, Repository};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Batches per worker: enough to keep workers busy while the appender
/// writes and the walker fills the next one.
const SLOTS_PER_WORKER: usize = 4;
/// A batch is queued once it holds this many bytes or objects.
const BATCH_BYTES: usize = 256 << 10;
const BATCH_OBJECTS: usize = 64;
/// A batch buffer larger than this (after an unusually large object) is
/// shrunk back after use.
const SLOT_KEEP: usize = 1 << 20;

/// Writes objects into packs, skipping those the repository or this save
/// already holds.
pub(crate) struct ObjectSink<'r> {
    repo: &'r Repository,
    known: KnownObjects,
    /// Every id this save has sent to the pipeline.
    queued: HashSet<ObjectId>,
    pipeline: Option<Pipeline>,
    pub stats: SaveStats,
}

impl<'r> ObjectSink<'r> {
    pub fn new(repo: &'r Repository) -> Result<ObjectSink<'r>, SaveError> {
        let known = KnownObjects::open(repo.objects(), &repo.path().join("rewind"));
        Ok(ObjectSink {
            repo,
            known,
            queued: HashSet::new(),
            pipeline: None,
            stats: SaveStats::default(),
        })
    }

    /// Hashes `data` and, if the object is new, queues it for writing.
    /// Returns its id at once; the write itself happens later (its errors
    /// come out of a later `put` or `publish`).
    pub fn put(&mut self, kind: Kind, data: &[u8]) -> Result<ObjectId, SaveError> {
        let id = hash_object(kind, data);
        if self.queued.contains(&id) || self.known.contains(&id) {
            return Ok(id);
        }
        if self.pipeline.is_none() {
            let pack_dir = self.repo.path().join("objects").join("pack");
            self.pipeline = Some(Pipeline::start(self.repo.pack_writer()?, pack_dir));
        }
        let pipeline = self.pipeline.as_mut().expect("just started");
        if let Err(e) = pipeline.send(id, kind, data) {
            // The pipeline is dead; collect its error and stop it for good.
            let pipeline = self.pipeline.take().expect("present");
            return Err(pipeline.finish().err().unwrap_or(e).into());
        }
        self.queued.insert(id);
        self.stats.objects_written += 1;
        self.stats.bytes_written += data.len() as u64;
        Ok(id)
    }

    /// Waits for every queued object to be written, publishes the pack(s)
    /// and makes them visible to the object store.
    pub(crate) fn publish(mut self) -> Result<SaveStats, SaveError> {
        if let Some(pipeline) = self.pipeline.take() {
            let writer = pipeline.finish()?;
            writer.finish()?;
            self.repo.objects().refresh()?;
        }
        Ok(std::mem::take(&mut self.stats))
    }
}

/// One object of a batch: where its bytes and its zlib stream lie in the
/// batch's buffers.
struct Item {
    id: ObjectId,
    kind: Kind,
    data: std::ops::Range<usize>,
    zdata: std::ops::Range<usize>,
    stored: bool,
}

/// Objects travel between threads in batches, not one by one: with ~8 KiB
/// chunks a handoff per object cost more CPU in futex wakeups and context
/// switches (profiled: ~13% of a first save) than it saved.
struct Batch {
    items: Vec<Item>,
    /// The objects' bytes, back to back.
    data: Vec<u8>,
    /// Their zlib streams, back to back (filled by a worker).
    zdata: Vec<u8>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            items: Vec::new(),
            data: Vec::new(),
            zdata: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.data.len() >= BATCH_BYTES || self.items.len() >= BATCH_OBJECTS
    }
}

struct Pipeline {
    /// `None` once closed (finish or drop).
    jobs: Option<SyncSender<Batch>>,
    free: Receiver<Batch>,
    /// The batch `send` is filling; queued when full or at `finish`.
    filling: Option<Batch>,
    failed: Arc<AtomicBool>,
    /// Named in errors about the pipeline itself.
    pack_dir: PathBuf,
    workers: Vec<JoinHandle<()>>,
    appender: Option<JoinHandle<Result<PackWriter, Error>>>,
}

impl Pipeline {
    fn start(writer: PackWriter, pack_dir: PathBuf) -> Pipeline {
        let workers_n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 16);
        let slots = workers_n * SLOTS_PER_WORKER;
        let level = writer.compression_level();
        let (jobs_tx, jobs_rx) = sync_channel::<Batch>(slots);
        let (done_tx, done_rx) = sync_channel::<Batch>(slots);
        let (free_tx, free_rx) = sync_channel::<Batch>(slots);
        for _ in 0..slots {
            free_tx
                .send(Batch::new())
                .expect("the channel has room for every slot");
        }
        let failed = Arc::new(AtomicBool::new(false));
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let workers = (0..workers_n)
            .map(|_| {
                let jobs = jobs_rx.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || compress_worker(level, &jobs, &done))
            })
            .collect();
        drop(done_tx);
        let appender = {
            let failed = failed.clone();
            std::thread::spawn(move || append(writer, done_rx, free_tx, &failed))
        };
        Pipeline {
            jobs: Some(jobs_tx),
            free: free_rx,
            filling: None,
            failed,
            pack_dir,
            workers,
            appender: Some(appender),
        }
    }

    /// Copies the object into the batch being filled (waiting for a free
    /// batch if there is none), queueing the batch when it is full.
    /// An error means the pipeline has stopped; `finish` tells why.
    fn send(&mut self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(self.stopped());
        }
        let mut batch = match self.filling.take() {
            Some(batch) => batch,
            // All senders of free batches gone means the appender has exited.
            None => self.free.recv().map_err(|_| self.stopped())?,
        };
        let start = batch.data.len();
        batch.data.extend_from_slice(data);
        batch.items.push(Item {
            id,
            kind,
            data: start..batch.data.len(),
            zdata: 0..0,
            stored: false,
        });
        if batch.is_full() {
            self.queue(batch)
        } else {
            self.filling = Some(batch);
            Ok(())
        }
    }

    fn queue(&mut self, batch: Batch) -> Result<(), Error> {
        let Some(jobs) = self.jobs.as_ref() else {
            return Err(self.stopped());
        };
        jobs.send(batch).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> Error {
        Error::Io {
            action: "writing objects (the pack writer stopped) into",
            path: self.pack_dir.clone(),
            source: std::io::Error::other("pipeline stopped"),
        }
    }

    /// Drains the queue and returns the writer with every object appended,
    /// or the first error of the appender.
    fn finish(mut self) -> Result<PackWriter, Error> {
        if let Some(batch) = self.filling.take() {
            // On failure the appender's own error, returned by `stop`,
            // says why.
            let _ = self.queue(batch);
        }
        self.stop()
    }

    fn stop(&mut self) -> Result<PackWriter, Error> {
        // Closing the job queue lets workers finish what is queued and exit;
        // then the appender sees its input end.
        self.jobs = None;
        let mut panicked = false;
        for w in self.workers.drain(..) {
            panicked |= w.join().is_err();
        }
        let result = match self.appender.take() {
            Some(a) => a
                .join()
                .unwrap_or_else(|_| Err(thread_panicked("appender", &self.pack_dir))),
            None => Err(thread_panicked(
                "appender (already stopped)",
                &self.pack_dir,
            )),
        };
        if panicked {
            return Err(thread_panicked("compression worker", &self.pack_dir));
        }
        result
    }
}

impl Drop for Pipeline {
    /// An abandoned pipeline (an error elsewhere in the save) still stops its
    /// threads; the writer they return is dropped, deleting its temp files.
    fn drop(&mut self) {
        if self.appender.is_some() {
            let _ = self.stop();
        }
    }
}

fn thread_panicked(which: &str, pack_dir: &Path) -> Error {
    Error::Io {
        action: "writing objects into",
        path: pack_dir.to_path_buf(),
        source: std::io::Error::other(format!("the {which} thread panicked")),
    }
}

fn compress_worker(level: u32, jobs: &Mutex<Receiver<Batch>>, done: &SyncSender<Batch>) {
    let mut compressor = Compressor::new(level);
    loop {
        // Hold the lock only to take one job.
        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(mut batch) = job else {
            return; // queue closed and empty
        };
        batch.zdata.clear();
        for item in &mut batch.items {
            let (zdata, stored) = compressor.compress(&batch.data[item.data.clone()]);
            item.stored = stored;
            let start = batch.zdata.len();
            batch.zdata.extend_from_slice(zdata);
            item.zdata = start..batch.zdata.len();
        }
        if done.send(batch).is_err() {
            return; // the appender stopped
        }
    }
}

fn append(
    mut writer: PackWriter,
    done: Receiver<Batch>,
    free: SyncSender<Batch>,
    failed: &AtomicBool,
) -> Result<PackWriter, Error> {
    for mut batch in done {
        for item in &batch.items {
            if let Err(e) = writer.append_compressed(
                item.id,
                item.kind,
                item.data.len() as u64,
                &batch.zdata[item.zdata.clone()],
                item.stored,
            ) {
                // Dropping `free` and `done` unblocks the caller and the
                // workers.
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        batch.items.clear();
        batch.data.clear();
        batch.zdata.clear();
        if batch.data.capacity() > SLOT_KEEP {
            batch.data = Vec::new();
        }
        if batch.zdata.capacity() > SLOT_KEEP {
            batch.zdata = Vec::new();
        }
        // The caller may be gone (dropped without publishing); keep draining.
        let _ = free.send(batch);
    }
    Ok(writer)
}
