//! Writing an index file: entries encoded on the walk's thread,
//! compressed on one of their own, hashed, fsynced and renamed into place.

use super::{
    io_err, key_cmp, Entry, IndexError, Summary, FORMAT_VERSION, MAGIC, MAX_KEY, MAX_RECORD,
    STALE_TEMP_SECS, TAG_END, TAG_ENTRY, ZSTD_LEVEL,
};
use crate::meta::vint::put_vuint;
use crate::meta::Timespec;
use crate::object::ObjectId;
use sha1::{Digest, Sha1};
use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

// Numbers are LEB128 (`meta::vint::put_vuint`, as in `.bupm` records);
// the decoder below is stricter than `.bupm`'s: at most 10 bytes.

pub(super) fn put_time(out: &mut Vec<u8>, t: Timespec) {
    put_vuint(out, ((t.sec << 1) ^ (t.sec >> 63)) as u64);
    put_vuint(out, u64::from(t.nsec));
}

pub(super) fn encode_entry(prev_key: &[u8], key: &[u8], e: &Entry, out: &mut Vec<u8>) {
    let shared = prev_key.iter().zip(key).take_while(|(a, b)| a == b).count();
    out.push(TAG_ENTRY);
    put_vuint(out, shared as u64);
    put_vuint(out, (key.len() - shared) as u64);
    out.extend_from_slice(&key[shared..]);
    out.push(e.kind as u8);
    for v in [e.dev, e.ino, e.size, u64::from(e.mode), e.nlink] {
        put_vuint(out, v);
    }
    put_vuint(out, u64::from(e.uid));
    put_vuint(out, u64::from(e.gid));
    for t in [e.mtime, e.ctime] {
        put_time(out, t);
    }
    out.extend_from_slice(e.id.as_bytes());
    put_vuint(out, e.children);
    put_vuint(out, e.record.len() as u64);
    out.extend_from_slice(&e.record);
}

/// The temporary file, hashing every byte written to it.
struct HashingFile {
    out: BufWriter<tempfile::NamedTempFile>,
    hasher: Sha1,
}

impl Write for HashingFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Entries are encoded into a buffer of this size before they go to the
/// compressor: one call per batch instead of one per entry.
const BATCH: usize = 1 << 17;

/// Streams a new index to a temporary file next to its final name. The
/// entries are compressed and written by a thread of its own, so that the
/// walk (the save's critical path) only encodes them.
pub struct IndexWriter {
    path: PathBuf,
    /// Batches to the compressing thread; `None` once it failed.
    batches: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Returns the file once the entries are all compressed into it.
    compressor: Option<std::thread::JoinHandle<io::Result<HashingFile>>>,
    /// Encoded entries not yet handed to the compressor.
    buf: Vec<u8>,
    prev_key: Option<Vec<u8>>,
    entries: u64,
    /// Paths not recorded because the walk came back to an earlier key
    /// (sources arranged out of path order by --graft or --strip).
    pub out_of_order: u64,
}

impl IndexWriter {
    pub fn create(path: &Path) -> Result<IndexWriter, IndexError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        remove_stale_temps(dir);
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io_err(dir, "create temporary file in"))?;
        let mut file = HashingFile {
            out: BufWriter::with_capacity(1 << 18, tmp),
            hasher: Sha1::new(),
        };
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        file.write_all(&header).map_err(io_err(path, "write"))?;
        let mut out = zstd::stream::write::Encoder::new(file, ZSTD_LEVEL)
            .map_err(io_err(path, "start compressing"))?;
        // A few batches in flight: memory stays bounded if the disk is slow.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let compressor = std::thread::Builder::new()
            .name("index-zstd".into())
            .spawn(move || {
                for batch in rx {
                    out.write_all(&batch)?;
                }
                out.finish()
            })
            .map_err(io_err(path, "start a thread to write"))?;
        Ok(IndexWriter {
            path: path.to_path_buf(),
            batches: Some(tx),
            compressor: Some(compressor),
            buf: Vec::with_capacity(BATCH + 4096),
            prev_key: None,
            entries: 0,
            out_of_order: 0,
        })
    }

    fn flush_batch(&mut self) -> Result<(), IndexError> {
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH + 4096));
        let sent = self.batches.as_ref().is_some_and(|b| b.send(batch).is_ok());
        if sent {
            Ok(())
        } else {
            // The thread stopped on an error: that is the one to report.
            self.finish_compressing().map(|_| ())
        }
    }

    /// Waits for the compressing thread and takes back the file.
    fn finish_compressing(&mut self) -> Result<HashingFile, IndexError> {
        self.batches = None;
        let outcome = match self.compressor.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compressing thread panicked"))),
            None => Err(io::Error::other("an earlier write failed")),
        };
        outcome.map_err(io_err(&self.path, "write"))
    }

    /// Appends an entry. Keys must come in increasing [`key_cmp`] order;
    /// one that does not is left out (that path is read again next time).
    pub fn push(&mut self, key: &[u8], entry: &Entry) -> Result<(), IndexError> {
        if entry.record.len() as u64 > MAX_RECORD || key.len() as u64 > MAX_KEY {
            return Ok(());
        }
        if let Some(prev) = &self.prev_key {
            if key_cmp(prev, key) != Ordering::Less {
                self.out_of_order += 1;
                return Ok(());
            }
        }
        encode_entry(
            self.prev_key.as_deref().unwrap_or(&[]),
            key,
            entry,
            &mut self.buf,
        );
        if self.buf.len() >= BATCH {
            self.flush_batch()?;
        }
        let prev = self.prev_key.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(key);
        self.entries += 1;
        Ok(())
    }

    /// Seals the index for `commit` and moves it into place. Call only
    /// after the branch points at `commit` (or a descendant), so that every
    /// object named inside is reachable.
    pub fn publish(mut self, commit: ObjectId) -> Result<Summary, IndexError> {
        self.buf.push(TAG_END);
        self.flush_batch()?;
        let mut file = self.finish_compressing()?;
        let mut trailer = self.entries.to_be_bytes().to_vec();
        trailer.extend_from_slice(commit.as_bytes());
        file.write_all(&trailer)
            .map_err(io_err(&self.path, "write"))?;
        let digest = file.hasher.finalize();
        let mut out = file.out;
        out.write_all(&digest)
            .map_err(io_err(&self.path, "write"))?;
        let tmp = out
            .into_inner()
            .map_err(|e| io_err(&self.path, "write")(e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err(&self.path, "fsync"))?;
        tmp.persist(&self.path)
            .map_err(|e| io_err(&self.path, "rename into place")(e.error))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "fsync directory"))?;
        Ok(Summary {
            entries: self.entries,
            commit,
        })
    }
}

impl Drop for IndexWriter {
    /// Not published (the save failed): the compressing thread is stopped
    /// and waited for, so that its temporary file is removed now.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.compressor.take() {
            let _ = thread.join();
        }
    }
}

/// Removes temporary index files a killed save left behind. Only old ones:
/// a young one may belong to a save running right now.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(b".tmp-") {
            continue;
        }
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > STALE_TEMP_SECS);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
