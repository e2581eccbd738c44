//! Where a save's objects go: hashing and dedup, compression on worker
//! threads, and appending to a pack on one more thread.
//!
//! Two ways in:
//! - [`ObjectSink::put`] hashes on the caller's thread and returns the id at
//!   once: trees, commits, symlink targets, the empty blob.
//! - [`ObjectSink::put_deferred`] only copies the bytes into the batch being
//!   filled: a worker hashes them, so file chunks are hashed on the workers
//!   while the walker keeps reading and cutting. Their ids come back in the
//!   order they were put, from [`ObjectSink::next_id`]; the chunk tree
//!   builder takes them from there (`stream::store_stream` puts the first MiB
//!   of a file with `put`, since waiting for a worker at the end of a small
//!   file costs more than hashing it). When the caller waits for an id whose
//!   object is still in the batch being filled (the last chunks of a file),
//!   that batch's deferred objects are hashed on the caller's thread
//!   instead: a round trip to a worker would cost more than the hash, and
//!   the workers' queue is ahead of it anyway. An
//!   all-zero chunk (disk image holes) is named from the last one's id
//!   without being copied or hashed.
//!
//! Whoever hashes an object decides whether it is new: not in the repository
//! when the save began ([`KnownObjects`]), and not claimed before by this
//! save. The claim is one insertion into a set shared by the threads, so an
//! object is written exactly once however many threads see it at the same
//! time (zero chunks of a disk image, a file saved twice). Workers deflate
//! (or store, when incompressible) what they claimed and what the caller
//! claimed, then pass the batch to the appender, which owns the
//! [`PackWriter`] and writes entries in whatever order they come (a pack's
//! order is free; the idx is built from the offsets actually written). The
//! appender returns each batch to the free list.
//!
//! Memory is bounded by the fixed number of batches (of bounded size, plus
//! at most one object) and by the ids not taken yet (the objects of those
//! batches, plus at most [`MAX_UNTAKEN`] zero chunks queued behind them):
//! when all batches are in flight, the caller waits for one,
//! so a slow disk slows the walker instead of filling memory. Batch buffers
//! are reused and shrunk after an unusually large object.
//!
//! An error in the appender (ENOSPC, EIO) stops the pipeline: the next
//! `put`, `put_deferred`, `next_id` or `publish` returns it, every later
//! one fails too (claimed objects may be unwritten), and the unfinished
//! pack, a temporary file, is deleted when the writer drops.
//! Packs already published by a rollover stay: they are complete, verified
//! packs that nothing references.

use super::{SaveError, SaveStats};
use crate::chunk::is_zero;
use crate::locks::lock;
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::writer::Compressor;
use crate::pack::writer::DEFAULT_LEVEL;
use crate::progress::Progress;
use crate::repo::known::KnownObjects;
use crate::repo::{Error, PackSink, Repo};
use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
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
/// Ids known at once (zero chunks) queued behind one still being hashed:
/// past this many the caller waits for the workers.
const MAX_UNTAKEN: usize = 4096;

/// Writes objects into packs, skipping those the repository or this save
/// already holds.
pub(crate) struct ObjectSink<'r> {
    repo: &'r dyn Repo,
    dedup: Arc<Dedup>,
    /// Started at the first object that needs it, so that a save which
    /// writes nothing creates no pack.
    pipeline: Option<Pipeline>,
    /// The id of the last all-zero blob put deferred, and its length.
    zero_blob: Option<(usize, ObjectId)>,
    /// The pipeline failed: objects this save claimed may be unwritten, so
    /// no later call may succeed (a new pipeline would skip them as
    /// claimed, and a snapshot would name objects that do not exist).
    failed: bool,
    /// Told the bytes of each object as the appender writes it into the
    /// pack, so that "new" grows on screen during the save rather than
    /// appearing only in the summary.
    progress: Option<Arc<Progress>>,
}

impl<'r> ObjectSink<'r> {
    /// A sink for `repo` knowing what it holds now (tests: one line).
    #[cfg(test)]
    pub fn for_tests(repo: &'r dyn Repo) -> ObjectSink<'r> {
        ObjectSink::new(repo, Arc::new(repo.known_objects())).expect("a new sink")
    }

    pub fn new(repo: &'r dyn Repo, known: Arc<KnownObjects>) -> Result<ObjectSink<'r>, SaveError> {
        Ok(ObjectSink {
            repo,
            dedup: Arc::new(Dedup {
                known,
                claimed: Mutex::new(HashSet::new()),
            }),
            pipeline: None,
            zero_blob: None,
            failed: false,
            progress: None,
        })
    }

    /// Counts the bytes of every object written (before compression, as
    /// [`SaveStats::bytes_written`]) into `progress` as it is appended.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> ObjectSink<'r> {
        self.progress = Some(progress);
        self
    }

    /// Hashes `data` and, if the object is new, queues it for writing.
    /// Returns its id at once; the write itself happens later (its errors
    /// come out of a later call or `publish`).
    pub fn put(&mut self, kind: Kind, data: &[u8]) -> Result<ObjectId, SaveError> {
        if self.failed {
            return Err(self.failed_before().into());
        }
        let id = hash_object(kind, data);
        if !self.dedup.claim(&id) {
            return Ok(id);
        }
        let result = self.pipeline()?.send(ItemState::Write, id, kind, data);
        self.check(result)?;
        Ok(id)
    }

    /// Queues `data` to be hashed, and written if new, on a worker. Its id
    /// comes out of [`next_id`](Self::next_id), in the order of these
    /// calls; the caller must take the ids as they come (memory holds
    /// every id not taken yet).
    ///
    /// Runs of zeros (holes and zeroed blocks of disk images) cut into
    /// chunks of one length, so the id of an all-zero blob is remembered
    /// and such chunks are neither copied nor hashed again.
    pub fn put_deferred(&mut self, kind: Kind, data: &[u8]) -> Result<(), SaveError> {
        if self.failed {
            return Err(self.failed_before().into());
        }
        if kind == Kind::Blob && is_zero(data) {
            let id = match self.zero_blob {
                Some((len, id)) if len == data.len() => id,
                _ => hash_object(kind, data),
            };
            self.zero_blob = Some((data.len(), id));
            let claimed = self.dedup.claim(&id);
            let result = self.pipeline()?.push_known_id(id);
            self.check(result)?;
            if claimed {
                let result = self.pipeline()?.send(ItemState::Write, id, kind, data);
                self.check(result)?;
            }
            return Ok(());
        }
        let result = self
            .pipeline()?
            .send(ItemState::Deferred, ObjectId([0; 20]), kind, data);
        self.check(result)
    }

    /// The id of the oldest deferred object not yet taken: `None` if there
    /// is none, or if `wait` is false and it is not known yet.
    pub fn next_id(&mut self, wait: bool) -> Result<Option<ObjectId>, SaveError> {
        if self.failed {
            return Err(self.failed_before().into());
        }
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Ok(None);
        };
        let result = pipeline.next_id(wait);
        self.check(result)
    }

    /// Waits for the ids of every deferred object and drops them: for a
    /// stream abandoned half way (a read error), so that the next stream's
    /// ids are its own. The objects themselves are still written (they may
    /// be shared with other files; nothing refers to the others).
    pub fn forget_deferred(&mut self) -> Result<(), SaveError> {
        while self.next_id(true)?.is_some() {}
        Ok(())
    }

    fn pipeline(&mut self) -> Result<&mut Pipeline, SaveError> {
        if self.failed {
            return Err(self.failed_before().into());
        }
        if self.pipeline.is_none() {
            self.pipeline = Some(Pipeline::start(
                self.repo.pack_sink()?,
                self.dedup.clone(),
                self.repo.location(),
                self.progress.clone(),
            ));
        }
        Ok(self.pipeline.as_mut().expect("just started"))
    }

    /// On an error the pipeline is dead: collects its own error (the
    /// appender's, which says why) and stops it for good.
    fn check<T>(&mut self, result: Result<T, Error>) -> Result<T, SaveError> {
        result.map_err(|e| {
            self.failed = true;
            match self.pipeline.take() {
                Some(pipeline) => pipeline.finish().err().unwrap_or(e).into(),
                None => e.into(),
            }
        })
    }

    fn failed_before(&self) -> Error {
        Error::Io {
            action: "writing objects (the pack writer failed earlier in this save) into",
            path: self.repo.location().into(),
            source: std::io::Error::other("pipeline stopped"),
        }
    }

    /// Waits for every queued object to be written, publishes the pack(s)
    /// and makes them visible to the object store. Deferred ids not taken
    /// are dropped; their objects are written.
    pub(crate) fn publish(mut self) -> Result<SaveStats, SaveError> {
        if self.failed {
            return Err(self.failed_before().into());
        }
        let mut stats = SaveStats::default();
        if let Some(pipeline) = self.pipeline.take() {
            let writer = pipeline.finish()?;
            let written = writer.stats();
            stats.objects_written = written.objects;
            stats.bytes_written = written.raw_bytes;
            writer.finish()?;
        }
        Ok(stats)
    }
}

/// Which objects a save must write: those not in the repository when it
/// began and not claimed before by this save.
struct Dedup {
    known: Arc<KnownObjects>,
    /// Every id this save has decided to write.
    claimed: Mutex<HashSet<ObjectId>>,
}

impl Dedup {
    /// Whether the caller must write `id`: true for exactly one caller per
    /// id that is new to the repository, whatever the threads.
    fn claim(&self, id: &ObjectId) -> bool {
        !self.known.contains(id) && self.claimed().insert(*id)
    }

    fn claimed(&self) -> MutexGuard<'_, HashSet<ObjectId>> {
        // A set left by a panicking thread is still a valid set (an insert
        // either happened or not); the panic itself is reported at join.
        lock(&self.claimed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemState {
    /// Not hashed yet: its id goes back to the caller.
    Deferred,
    /// Claimed by this save: compress and write.
    Write,
    /// Already stored or claimed elsewhere: nothing to write.
    Skip,
}

/// One object of a batch: where its bytes and its zlib stream lie in the
/// batch's buffers.
struct Item {
    id: ObjectId,
    kind: Kind,
    state: ItemState,
    /// The caller's ticket for a deferred item's id.
    ticket: u64,
    data: Range<usize>,
    zdata: Range<usize>,
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
    /// How many items are deferred, and the lowest ticket among them
    /// (tickets only grow, so every ticket below it is in a batch sent
    /// before this one or already known).
    deferred: usize,
    first_ticket: u64,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            items: Vec::new(),
            data: Vec::new(),
            zdata: Vec::new(),
            first_ticket: 0,
            deferred: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.data.len() >= BATCH_BYTES || self.items.len() >= BATCH_OBJECTS
    }

    /// Hashes the deferred objects and claims the new ones (see
    /// [`Dedup::claim`]; the claims under one lock for the whole batch):
    /// returns their ids with their tickets.
    fn resolve(&mut self, dedup: &Dedup) -> Vec<(u64, ObjectId)> {
        let mut ids = Vec::with_capacity(self.deferred);
        for item in &mut self.items {
            if item.state == ItemState::Deferred {
                item.id = hash_object(item.kind, &self.data[item.data.clone()]);
                ids.push((item.ticket, item.id));
                if dedup.known.contains(&item.id) {
                    item.state = ItemState::Skip;
                }
            }
        }
        let mut claimed = dedup.claimed();
        for item in &mut self.items {
            if item.state == ItemState::Deferred {
                item.state = if claimed.insert(item.id) {
                    ItemState::Write
                } else {
                    ItemState::Skip
                };
            }
        }
        self.deferred = 0;
        ids
    }

    fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
        self.zdata.clear();
        if self.data.capacity() > SLOT_KEEP {
            self.data = Vec::new();
        }
        if self.zdata.capacity() > SLOT_KEEP {
            self.zdata = Vec::new();
        }
        self.deferred = 0;
    }
}

/// The ids of a batch's deferred objects with their tickets, sent back by
/// the worker that hashed them.
struct Resolved {
    ids: Vec<(u64, ObjectId)>,
}

struct Pipeline {
    dedup: Arc<Dedup>,
    /// `None` once closed (finish or drop).
    jobs: Option<SyncSender<Batch>>,
    free: Receiver<Batch>,
    resolved: Receiver<Resolved>,
    /// Batches sent with deferred objects whose ids have not come back.
    /// Kept below the `resolved` channel's capacity, so a worker never
    /// waits to hand ids back.
    awaiting: usize,
    slots: usize,
    /// The batch `send` is filling; queued when full or at `finish`.
    filling: Option<Batch>,
    /// Ids of deferred objects not yet taken, oldest first: the id of
    /// ticket `head + i` is `ids[i]` once known.
    ids: VecDeque<Option<ObjectId>>,
    head: u64,
    failed: Arc<AtomicBool>,
    /// The repository, named in errors about the pipeline itself.
    pack_dir: PathBuf,
    workers: Vec<JoinHandle<()>>,
    appender: Option<JoinHandle<Result<Box<dyn PackSink>, Error>>>,
}

impl Pipeline {
    fn start(
        writer: Box<dyn PackSink>,
        dedup: Arc<Dedup>,
        location: String,
        progress: Option<Arc<Progress>>,
    ) -> Pipeline {
        let pack_dir = PathBuf::from(location);
        let workers_n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 16);
        let slots = workers_n * SLOTS_PER_WORKER;
        let level = DEFAULT_LEVEL;
        let (jobs_tx, jobs_rx) = sync_channel::<Batch>(slots);
        let (done_tx, done_rx) = sync_channel::<Batch>(slots);
        let (free_tx, free_rx) = sync_channel::<Batch>(slots);
        let (resolved_tx, resolved_rx) = sync_channel::<Resolved>(slots);
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
                let resolved = resolved_tx.clone();
                let dedup = Arc::clone(&dedup);
                std::thread::spawn(move || work(level, &dedup, &jobs, &resolved, &done))
            })
            .collect();
        drop(done_tx);
        drop(resolved_tx);
        let appender = {
            let failed = failed.clone();
            std::thread::spawn(move || {
                append(writer, done_rx, free_tx, &failed, progress.as_deref())
            })
        };
        Pipeline {
            dedup,
            jobs: Some(jobs_tx),
            free: free_rx,
            resolved: resolved_rx,
            awaiting: 0,
            slots,
            filling: None,
            ids: VecDeque::new(),
            head: 0,
            failed,
            pack_dir,
            workers,
            appender: Some(appender),
        }
    }

    /// Copies the object into the batch being filled (waiting for a free
    /// batch if there is none), queueing the batch when it is full.
    /// A deferred object gets the next ticket. An error means the pipeline
    /// has stopped; `finish` tells why.
    fn send(
        &mut self,
        state: ItemState,
        id: ObjectId,
        kind: Kind,
        data: &[u8],
    ) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(self.stopped());
        }
        let mut batch = match self.filling.take() {
            Some(batch) => batch,
            // All senders of free batches gone means the appender has exited.
            None => self.free.recv().map_err(|_| self.stopped())?,
        };
        let ticket = self.head + self.ids.len() as u64;
        if state == ItemState::Deferred {
            if batch.deferred == 0 {
                batch.first_ticket = ticket;
            }
            batch.deferred += 1;
            self.ids.push_back(None);
        }
        let start = batch.data.len();
        batch.data.extend_from_slice(data);
        batch.items.push(Item {
            id,
            kind,
            state,
            ticket,
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
        if batch.deferred > 0 {
            while self.awaiting >= self.slots {
                self.receive(true)?;
            }
            self.awaiting += 1;
        }
        let Some(jobs) = self.jobs.as_ref() else {
            return Err(self.stopped());
        };
        jobs.send(batch).map_err(|_| self.stopped())
    }

    /// Takes one message of ids from the workers (waiting for it if `wait`)
    /// and records the ids. Returns whether there was one.
    fn receive(&mut self, wait: bool) -> Result<bool, Error> {
        let resolved = if wait {
            // All workers gone with ids outstanding: the pipeline stopped.
            self.resolved.recv().map_err(|_| self.stopped())?
        } else {
            match self.resolved.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => return Err(self.stopped()),
            }
        };
        self.awaiting -= 1;
        for (ticket, id) in resolved.ids {
            self.set_id(ticket, id);
        }
        Ok(true)
    }

    fn set_id(&mut self, ticket: u64, id: ObjectId) {
        // Tickets below `head` were given up by a failed `next_id`.
        if let Some(slot) = ticket
            .checked_sub(self.head)
            .and_then(|i| self.ids.get_mut(i as usize))
        {
            *slot = Some(id);
        }
    }

    /// Gives the next ticket an id known already.
    fn push_known_id(&mut self, id: ObjectId) -> Result<(), Error> {
        if self.ids.len() >= MAX_UNTAKEN {
            // Resolve everything before, so the caller can take it all.
            self.resolve_filling();
            while self.awaiting > 0 {
                self.receive(true)?;
            }
        }
        self.ids.push_back(Some(id));
        Ok(())
    }

    fn next_id(&mut self, wait: bool) -> Result<Option<ObjectId>, Error> {
        loop {
            match self.ids.front() {
                None => return Ok(None),
                Some(Some(id)) => {
                    let id = *id;
                    self.ids.pop_front();
                    self.head += 1;
                    return Ok(Some(id));
                }
                Some(None) => {}
            }
            if self.receive(false)? {
                continue;
            }
            if !wait {
                return Ok(None);
            }
            let in_filling = self
                .filling
                .as_ref()
                .is_some_and(|b| b.deferred > 0 && self.head >= b.first_ticket);
            let result = if in_filling {
                self.resolve_filling();
                Ok(true)
            } else {
                self.receive(true)
            };
            if let Err(e) = result {
                // Nothing more will come back: give the tickets up.
                self.head += self.ids.len() as u64;
                self.ids.clear();
                return Err(e);
            }
        }
    }

    /// Hashes the deferred objects of the batch being filled on this thread
    /// and claims the new ones, which a worker will then only compress.
    fn resolve_filling(&mut self) {
        let Some(batch) = self.filling.as_mut() else {
            return;
        };
        for (ticket, id) in batch.resolve(&self.dedup) {
            self.set_id(ticket, id);
        }
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
    fn finish(mut self) -> Result<Box<dyn PackSink>, Error> {
        // Ids nobody will take: hashed here, so no worker sends them.
        self.resolve_filling();
        if let Some(batch) = self.filling.take() {
            // On failure the appender's own error, returned by `stop`,
            // says why.
            let _ = self.queue(batch);
        }
        self.stop()
    }

    fn stop(&mut self) -> Result<Box<dyn PackSink>, Error> {
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

/// A worker: hashes a batch's deferred objects, claims the new ones and
/// sends the ids back (before compressing, so the caller waits for hashes
/// only), then compresses what is to be written and passes the batch on.
fn work(
    level: u32,
    dedup: &Dedup,
    jobs: &Mutex<Receiver<Batch>>,
    resolved: &SyncSender<Resolved>,
    done: &SyncSender<Batch>,
) {
    let mut compressor = Compressor::new(level);
    loop {
        // Hold the lock only to take one job.
        let job = lock(jobs).recv();
        let Ok(mut batch) = job else {
            return; // queue closed and empty
        };
        if batch.deferred > 0 {
            let ids = batch.resolve(dedup);
            if resolved.send(Resolved { ids }).is_err() {
                return; // the caller is gone
            }
        }
        batch.zdata.clear();
        for item in &mut batch.items {
            if item.state != ItemState::Write {
                continue;
            }
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
    mut writer: Box<dyn PackSink>,
    done: Receiver<Batch>,
    free: SyncSender<Batch>,
    failed: &AtomicBool,
    progress: Option<&Progress>,
) -> Result<Box<dyn PackSink>, Error> {
    for mut batch in done {
        for item in batch.items.iter().filter(|i| i.state == ItemState::Write) {
            let size = item.data.len() as u64;
            if let Err(e) = writer.append_compressed(
                item.id,
                item.kind,
                size,
                &batch.zdata[item.zdata.clone()],
                item.stored,
            ) {
                // Dropping `free` and `done` unblocks the caller and the
                // workers.
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            if let Some(p) = progress {
                p.add_bytes_new(size);
            }
        }
        batch.clear();
        // The caller may be gone (dropped without publishing); keep draining.
        let _ = free.send(batch);
    }
    Ok(writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;

    /// Deterministic object contents: distinct pieces, repeats of earlier
    /// ones, zero runs of the usual and of odd lengths.
    fn pieces() -> Vec<Vec<u8>> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out: Vec<Vec<u8>> = Vec::new();
        for i in 0..1500usize {
            let r = next();
            let piece = match i % 11 {
                3 if i > 20 => out[(r % 20) as usize].clone(),
                5 => vec![0u8; 65_536],
                7 => vec![0u8; 100 + (r % 3) as usize],
                _ => {
                    let len = 1 + (r % 20_000) as usize;
                    (0..len).map(|_| next() as u8).collect()
                }
            };
            out.push(piece);
        }
        out
    }

    /// Issue 16: the progress line said "0 B new" for a whole save; the
    /// appender now counts each object's bytes as it writes it, and the
    /// count ends equal to the summary's.
    #[test]
    fn bytes_new_are_counted_as_the_appender_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let progress = Progress::new();
        let mut sink = ObjectSink::for_tests(&repo).with_progress(Arc::clone(&progress));
        for p in pieces() {
            sink.put_deferred(Kind::Blob, &p).unwrap();
            while sink.next_id(false).unwrap().is_some() {}
        }
        sink.forget_deferred().unwrap();
        let stats = sink.publish().unwrap();
        assert!(stats.bytes_written > 1 << 20, "{stats:?}");
        assert_eq!(progress.snapshot().bytes_new, stats.bytes_written);
    }

    /// Ids come back in the order of the puts whichever thread hashed them,
    /// every new object is written exactly once (also when several threads
    /// see it at once), and every one is readable afterwards.
    #[test]
    fn deferred_ids_come_back_in_order_and_new_objects_are_written_once() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let pieces = pieces();
        let mut sink = ObjectSink::for_tests(&repo);
        let mut got = Vec::new();
        let mut direct = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            sink.put_deferred(Kind::Blob, p).unwrap();
            if i % 97 == 0 {
                // Objects put directly in between, as chunk trees are.
                direct.push(sink.put(Kind::Tree, &p[..p.len().min(300)]).unwrap());
            }
            if i % 13 == 0 {
                while let Some(id) = sink.next_id(i % 2 == 0).unwrap() {
                    got.push(id);
                }
            }
        }
        while let Some(id) = sink.next_id(true).unwrap() {
            got.push(id);
        }
        let expect: Vec<ObjectId> = pieces.iter().map(|p| hash_object(Kind::Blob, p)).collect();
        assert_eq!(got, expect);
        let stats = sink.publish().unwrap();
        let mut distinct: HashSet<ObjectId> = expect.iter().copied().collect();
        distinct.extend(direct.iter().copied());
        assert_eq!(stats.objects_written, distinct.len() as u64);
        for (p, id) in pieces.iter().zip(&expect) {
            assert_eq!(&repo.objects().read(id).unwrap().data, p);
        }
        for id in &direct {
            assert!(repo.objects().contains(id));
        }

        // A second save writes only what the repository lacks.
        let mut sink = ObjectSink::for_tests(&repo);
        sink.put_deferred(Kind::Blob, &pieces[0]).unwrap();
        sink.put_deferred(Kind::Blob, b"new in the second save")
            .unwrap();
        sink.put_deferred(Kind::Blob, &[0u8; 65_536]).unwrap();
        assert_eq!(sink.next_id(true).unwrap(), Some(expect[0]));
        let stats = sink.publish().unwrap();
        assert_eq!(stats.objects_written, 1);
    }

    /// Once the pipeline failed, objects claimed may be unwritten: every
    /// later call fails too, instead of a new pipeline skipping them.
    #[test]
    fn after_a_pipeline_error_every_call_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let mut sink = ObjectSink::for_tests(&repo);
        sink.put_deferred(Kind::Blob, b"claimed, maybe never written")
            .unwrap();
        let failure: Result<(), Error> = Err(Error::Io {
            action: "writing pack",
            path: tmp.path().to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        assert!(sink.check(failure).is_err());
        assert!(sink.put(Kind::Blob, b"x").is_err());
        assert!(sink.put_deferred(Kind::Blob, b"y").is_err());
        assert!(sink.put_deferred(Kind::Blob, &[0u8; 64]).is_err());
        assert!(sink.next_id(true).is_err());
        assert!(sink.forget_deferred().is_err());
        assert!(sink.publish().is_err());
        assert!(repo.objects().packs().is_empty());
    }

    /// Ids nobody took (a stream abandoned) are dropped, and the next ids
    /// are the next stream's own.
    #[test]
    fn forgotten_ids_do_not_leak_into_the_next_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let pieces = pieces();
        let mut sink = ObjectSink::for_tests(&repo);
        for p in &pieces[..200] {
            sink.put_deferred(Kind::Blob, p).unwrap();
        }
        sink.forget_deferred().unwrap();
        assert_eq!(sink.next_id(true).unwrap(), None);
        sink.put_deferred(Kind::Blob, &pieces[300]).unwrap();
        assert_eq!(
            sink.next_id(true).unwrap(),
            Some(hash_object(Kind::Blob, &pieces[300]))
        );
        // Zero chunks behind a chunk not hashed yet do not pile up.
        sink.put_deferred(Kind::Blob, &pieces[301]).unwrap();
        for _ in 0..3 * MAX_UNTAKEN {
            sink.put_deferred(Kind::Blob, &[0u8; 100]).unwrap();
            // As `store_stream` does: take what is known.
            while sink.next_id(false).unwrap().is_some() {}
            let ids = &sink.pipeline.as_ref().unwrap().ids;
            assert!(ids.len() <= MAX_UNTAKEN, "{} ids queued", ids.len());
        }
        sink.forget_deferred().unwrap();
        sink.publish().unwrap();
        // The forgotten objects were written all the same.
        assert!(repo
            .objects()
            .contains(&hash_object(Kind::Blob, &pieces[199])));
    }
}
