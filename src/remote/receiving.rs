//! The server's side of a save's stream of objects: each is inflated and
//! hashed against its id ([`check_compressed`]) on worker threads, and
//! appended to the pack being written only once it matched. So no pack,
//! not even one published early by a rollover, ever holds an object that
//! was not checked, and the checks, most of the server's work, use more
//! than one core: on one, a first save's server fell behind its client
//! and the client waited with a core idle (perf sched timeline).
//!
//! The session's thread gathers objects into batches and hands them on;
//! at most [`BUDGET`] bytes wait or are being checked, so a fast client
//! waits for the checks instead of filling memory. The first object that
//! fails stops the stream: every later one is dropped unchecked, and
//! [`Receiving::finish`] refuses the pack.

use super::checks::check_compressed;
use crate::locks::{lock, wait};
use crate::object::{Kind, ObjectId};
use crate::pack::writer::PackWriter;
use crate::repo::Error;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Compressed bytes handed to the workers and not yet appended, at most.
const BUDGET: usize = 16 << 20;
/// A batch is handed on once it holds this many bytes or objects (one
/// wake-up of a worker and one lock of the pack per batch, not per object).
const BATCH_BYTES: usize = 256 << 10;
const BATCH_OBJECTS: usize = 64;
/// Workers per stream, at most: a backup server serves several clients.
const MAX_WORKERS: usize = 4;

struct Object {
    id: ObjectId,
    kind: Kind,
    size: u64,
    zdata: Vec<u8>,
}

pub struct Receiving {
    jobs: Option<Sender<Vec<Object>>>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    batch: Vec<Object>,
    batch_bytes: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Notified when a batch is done.
    done: Condvar,
    /// Taken by `finish`.
    writer: Mutex<Option<PackWriter>>,
}

#[derive(Default)]
struct State {
    /// Bytes of the batches handed on and not done.
    in_flight: usize,
    /// The first object refused, or the first write that failed.
    failure: Option<String>,
}

impl Receiving {
    /// Starts the workers that check objects and append them to `writer`.
    pub fn start(writer: PackWriter) -> Result<Receiving, String> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            writer: Mutex::new(Some(writer)),
        });
        let (jobs, queue) = channel::<Vec<Object>>();
        let queue = Arc::new(Mutex::new(queue));
        let n = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, MAX_WORKERS);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (shared, queue) = (shared.clone(), queue.clone());
            let worker = std::thread::Builder::new()
                .name(format!("rewind-check-{i}"))
                .spawn(move || work(&shared, &queue))
                .map_err(|e| format!("cannot start a thread to check objects: {e}"))?;
            workers.push(worker);
        }
        Ok(Receiving {
            jobs: Some(jobs),
            shared,
            workers,
            batch: Vec::new(),
            batch_bytes: 0,
        })
    }

    /// Takes an object to check and append; an error if an earlier one
    /// failed (the stream is refused then).
    pub fn put(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: Vec<u8>,
    ) -> Result<(), String> {
        self.batch_bytes += zdata.len();
        self.batch.push(Object {
            id,
            kind,
            size,
            zdata,
        });
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_OBJECTS {
            self.hand_on()?;
        }
        Ok(())
    }

    /// Hands the batch being gathered to the workers (before the session
    /// waits for more input, so that nothing waits on a half batch).
    pub fn hand_on(&mut self) -> Result<(), String> {
        let bytes = std::mem::take(&mut self.batch_bytes);
        let batch = std::mem::take(&mut self.batch);
        let mut state = lock(&self.shared.state);
        loop {
            if let Some(why) = &state.failure {
                return Err(why.clone());
            }
            if batch.is_empty() {
                return Ok(());
            }
            if state.in_flight == 0 || state.in_flight + bytes <= BUDGET {
                break;
            }
            state = wait(&self.shared.done, state);
        }
        state.in_flight += bytes;
        drop(state);
        let jobs = self.jobs.as_ref().expect("open until finish");
        jobs.send(batch)
            .map_err(|_| "the threads checking objects stopped".to_string())
    }

    /// Waits for every check and publishes the pack; the first failure,
    /// if any object was refused or could not be written.
    pub fn finish(mut self) -> Result<Result<Vec<PathBuf>, Error>, String> {
        self.hand_on()?;
        self.stop_workers();
        if let Some(why) = lock(&self.shared.state).failure.take() {
            return Err(why);
        }
        let writer = lock(&self.shared.writer)
            .take()
            .ok_or("the pack was finished already")?;
        Ok(writer.finish())
    }

    /// Closes the queue and waits for the workers to finish it.
    fn stop_workers(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                lock(&self.shared.state)
                    .failure
                    .get_or_insert_with(|| "a thread checking objects panicked".into());
            }
        }
    }
}

impl Drop for Receiving {
    /// An abandoned stream: the workers stop, and the unfinished pack (a
    /// temporary file) is deleted when the writer drops.
    fn drop(&mut self) {
        lock(&self.shared.state)
            .failure
            .get_or_insert_with(|| "the stream was abandoned".into());
        self.stop_workers();
    }
}

fn work(shared: &Shared, queue: &Mutex<Receiver<Vec<Object>>>) {
    loop {
        // The lock only to take one batch.
        let Ok(batch) = lock(queue).recv() else {
            return;
        };
        let bytes: usize = batch.iter().map(|o| o.zdata.len()).sum();
        let failed_before = lock(&shared.state).failure.is_some();
        let result = if failed_before {
            Ok(())
        } else {
            batch
                .iter()
                .try_for_each(|o| check_compressed(&o.id, o.kind, o.size, &o.zdata))
                .and_then(|()| {
                    let mut writer = lock(&shared.writer);
                    let writer = writer.as_mut().ok_or("the pack was finished already")?;
                    batch.iter().try_for_each(|o| {
                        writer
                            .append_compressed(o.id, o.kind, o.size, &o.zdata, false)
                            .map_err(|e| e.to_string())
                    })
                })
        };
        let mut state = lock(&shared.state);
        state.in_flight -= bytes;
        if let Err(why) = result {
            state.failure.get_or_insert(why);
        }
        drop(state);
        shared.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::hash_object;
    use crate::pack::idx::PackIndex;
    use crate::pack::writer::Compressor;
    use crate::repo::Repository;

    fn blob(i: u32) -> (ObjectId, Vec<u8>, Vec<u8>) {
        let data = format!("object {i}\n")
            .repeat(1 + i as usize % 7)
            .into_bytes();
        let zdata = Compressor::new(1).compress(&data).0.to_vec();
        (hash_object(Kind::Blob, &data), data, zdata)
    }

    /// The ids in the packs published under `repo`.
    fn published(repo: &Repository) -> Vec<ObjectId> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(repo.path().join("objects/pack")).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "idx") {
                let idx = PackIndex::open(&path).unwrap();
                ids.extend_from_slice(idx.ids());
            }
        }
        ids.sort();
        ids
    }

    /// A repository in `dir` and a stream into it whose packs roll over
    /// every 50 objects.
    fn receiving_in(dir: &std::path::Path) -> (Repository, Receiving) {
        let repo = Repository::init(&dir.join("repo")).unwrap();
        let mut writer = repo.pack_writer().unwrap();
        writer.set_object_limit(50);
        let r = Receiving::start(writer).unwrap();
        (repo, r)
    }

    #[test]
    fn checked_objects_land_across_rollovers() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, mut r) = receiving_in(tmp.path());
        let mut expected = Vec::new();
        for i in 0..500 {
            let (id, data, zdata) = blob(i);
            r.put(id, Kind::Blob, data.len() as u64, zdata).unwrap();
            expected.push(id);
        }
        let paths = r.finish().unwrap().unwrap();
        assert_eq!(paths.len(), 20, "ten packs of 50 and their indexes");
        expected.sort();
        expected.dedup();
        assert_eq!(published(&repo), expected);
    }

    #[test]
    fn an_object_that_does_not_match_its_id_refuses_the_stream_and_is_never_published() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, mut r) = receiving_in(tmp.path());
        let forged = ObjectId([7; 20]);
        let mut refused = None;
        for i in 0..400 {
            let (mut id, data, zdata) = blob(i);
            if i == 230 {
                id = forged;
            }
            if let Err(why) = r.put(id, Kind::Blob, data.len() as u64, zdata) {
                refused = Some(why);
                break;
            }
        }
        // Refused at a put or at the finish, whichever the workers' pace
        // makes first; the server drops the stream on a refused put.
        let why = match refused {
            Some(why) => {
                drop(r);
                why
            }
            None => r.finish().unwrap_err(),
        };
        assert!(why.contains(&forged.to_string()), "{why}");
        // Packs a rollover published before the forgery came to light
        // hold only objects that matched.
        let ids = published(&repo);
        assert!(!ids.contains(&forged));
        assert!(ids.len() <= 250, "{} objects published", ids.len());
        for id in ids {
            let object = repo.objects().read(&id).unwrap();
            assert_eq!(hash_object(object.kind, &object.data), id);
        }
        assert!(
            std::fs::read_dir(repo.path().join("objects"))
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with("tmp_")),
            "a temporary pack was left"
        );
    }
}
