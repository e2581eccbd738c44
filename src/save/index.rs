//! The change index: what each saved path looked like (lstat) and what it
//! was stored as, so that the next save of the same backup name can reuse
//! the stored object and `.bupm` record of a path whose stat is unchanged
//! instead of reading it again (bup's `bupindex`, built into `save`).
//!
//! One file per backup name, `<repo>/rewind/index/<name>` (git ignores
//! unknown top-level directories). It only maps "stat -> stored content",
//! so it stays usable when the branch tip moved (another machine, a
//! concurrent save): every object taken from it is checked to still exist
//! in the repository before it is used.
//!
//! Entries are keyed by absolute source path, its components joined by NUL
//! bytes, and sorted in *post-order* (a directory after everything under it,
//! siblings by bytewise name): exactly the order in which the save walk
//! finishes paths. Reading is therefore a forward-only merge-join with the
//! walk and writing is a stream: memory does not grow with the number of
//! files.
//!
//! Trust rules:
//! - the file is written to a temporary name, fsynced and renamed into place
//!   only after the branch moved to the commit whose objects it references;
//! - it carries a format version and a SHA-1 of its whole content, checked
//!   in full before a single entry is used: a torn, truncated, foreign or
//!   damaged index is ignored (and replaced by the next save), never trusted;
//! - a path whose mtime or ctime is within [`RACY_MARGIN_SECS`] of the
//!   save's start is not recorded at all, so a change in the same timestamp
//!   granule as the save cannot hide behind an equal stat.
//!
//! File layout, version 2 (integers in LEB128 unless said otherwise):
//! ```text
//! "RWCHIDX\n" | version u32 BE
//! zstd frame of:
//!   entry*    : 0x01 | shared key prefix | suffix length | suffix | kind u8 |
//!               dev ino size mode nlink uid gid |
//!               (mtime ctime: zigzag sec, nsec) | object id [20] |
//!               children | record length | record
//!   end       : 0x00
//! trailer     : entry count u64 BE | commit id [20] | SHA-1 [20] of every
//!               byte of the file before it
//! ```
//! Version 1 (written before 2026-11) stored the entries and the end tag
//! uncompressed, with the access time after the ctime (never used: the
//! reused record keeps its own). It is still read, so
//! that upgrading rewind does not make the next save read every file; only
//! version 2 is written. The entries compress about 4:1 (names share
//! prefixes, records share owners and modes), and the index lives in the
//! repository, so it counts in the repository's size.

use crate::meta::vint::put_vuint;
use crate::meta::{Stat, Timespec};
use crate::object::ObjectId;
use crate::repo::known::KnownObjects;
use crate::repo::Repo;
use sha1::{Digest, Sha1};
use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"RWCHIDX\n";
/// Bump on any change of the layout above; other versions are ignored.
pub const FORMAT_VERSION: u32 = 2;
/// The uncompressed layout, still read (see the module docs).
const VERSION_PLAIN: u32 = 1;
/// zstd level of the entries: level 1 compresses the benchmark's 9 MB of
/// entries to a quarter in ~20 ms; higher levels gain a few percent for
/// several times the time, spent on every save.
const ZSTD_LEVEL: i32 = 1;
/// A path modified this close to (or after) the save's start is not
/// recorded: covers coarse timestamps (2 s on FAT) and the kernel's tick.
pub const RACY_MARGIN_SECS: i64 = 2;
/// Guards against absurd lengths; real keys and records are far smaller.
const MAX_KEY: u64 = 1 << 20;
const MAX_RECORD: u64 = 64 << 20;
const TAG_ENTRY: u8 = 1;
const TAG_END: u8 = 0;
const HEADER_LEN: u64 = 12;
/// Entry count, commit id and checksum; the end tag before them belongs
/// to the (possibly compressed) entry stream.
const TRAILER_LEN: u64 = 8 + 20 + 20;
/// Temporary files older than this were left by a killed save.
const STALE_TEMP_SECS: u64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("change index {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("change index {path} is not usable: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io_err<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> IndexError + 'p {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Where the change index of backup `name` lives in local repository `repo`.
pub fn index_path(repo: &Path, name: &str) -> PathBuf {
    index_in(&repo.join("rewind"), name)
}

/// Where the change index of backup `name` lives in a state directory
/// ([`Repo::state_dir`]).
fn index_in(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("index").join(name)
}

/// About when the save that wrote backup `name`'s change index started
/// (minus the racy margin); `None` if there is none. A path whose ctime is
/// before this is probably unchanged: a hint for the cache warmer only,
/// the stat comparison decides.
pub fn previous_start(state_dir: &Path, name: &str) -> Option<Timespec> {
    // The writer creates its file when the save starts and renames it into
    // place at the end, so the birth time is the start (where the file
    // system records none, the end: later, which only means fewer files
    // look changed to the cache warmer).
    let m = std::fs::metadata(index_in(state_dir, name)).ok()?;
    let t = Timespec::from_system_time(m.created().or_else(|_| m.modified()).ok()?)?;
    Some(Timespec {
        sec: t.sec - RACY_MARGIN_SECS,
        ..t
    })
}

/// How a path was stored; fixes the tree entry mode next to the object id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file stored as one blob.
    Blob = 1,
    /// A regular file stored as a chunk tree (`name.bup`).
    Chunked = 2,
    Symlink = 3,
    /// FIFO, socket or device: the empty blob plus its `.bupm` record.
    Special = 4,
    Dir = 5,
}

impl EntryKind {
    fn from_u8(b: u8) -> Option<EntryKind> {
        Some(match b {
            1 => EntryKind::Blob,
            2 => EntryKind::Chunked,
            3 => EntryKind::Symlink,
            4 => EntryKind::Special,
            5 => EntryKind::Dir,
            _ => return None,
        })
    }
}

/// One indexed path: its stat when it was saved and what it became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timespec,
    pub ctime: Timespec,
    /// Content object (blob or chunk tree) of a file, target blob of a
    /// symlink, empty blob of a special file, tree of a directory.
    pub id: ObjectId,
    /// Directories: how many entries their tree had (besides `.bupm`).
    pub children: u64,
    /// The path's encoded `.bupm` entry (for a directory: its own, first,
    /// entry of its `.bupm`).
    pub record: Vec<u8>,
}

impl Entry {
    pub fn new(kind: EntryKind, st: &Stat, id: ObjectId, children: u64, record: Vec<u8>) -> Entry {
        Entry {
            kind,
            dev: st.dev,
            ino: st.ino,
            size: st.size,
            mode: st.mode,
            nlink: st.nlink,
            uid: st.uid,
            gid: st.gid,
            mtime: st.mtime,
            ctime: st.ctime,
            id,
            children,
            record,
        }
    }

    /// Whether `st` shows the path as it was indexed. Any write changes
    /// mtime or ctime; metadata changes (mode, owner, xattrs, ACLs, flags)
    /// change ctime; replacing the file changes the inode.
    pub fn matches(&self, st: &Stat) -> bool {
        self.dev == st.dev
            && self.ino == st.ino
            && self.size == st.size
            && self.mode == st.mode
            && self.nlink == st.nlink
            && self.uid == st.uid
            && self.gid == st.gid
            && self.mtime == st.mtime
            && self.ctime == st.ctime
    }
}

/// The index key of an absolute path: each normal component preceded by a
/// NUL byte (NUL cannot occur in a name), so "/" is the empty key and a
/// descendant's key extends its ancestor's by `\0name...`.
pub fn path_key(path: &Path) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.as_os_str().len() + 1);
    for c in path.components() {
        if let Component::Normal(name) = c {
            key.push(0);
            key.extend_from_slice(name.as_bytes());
        }
    }
    key
}

/// The key of `name` inside the directory whose key is `dir`.
pub fn child_key(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(dir.len() + 1 + name.len());
    key.extend_from_slice(dir);
    key.push(0);
    key.extend_from_slice(name);
    key
}

/// Post-order of keys: a directory after its descendants; otherwise the
/// first differing component decides, by bytes (the NUL separator sorts
/// before any name byte, so "a" < "a.c" as names).
pub fn key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let descends = |long: &[u8], short: &[u8]| {
        long.len() > short.len() && long.starts_with(short) && long[short.len()] == 0
    };
    if a == b {
        Ordering::Equal
    } else if descends(b, a) {
        Ordering::Greater
    } else if descends(a, b) {
        Ordering::Less
    } else {
        a.cmp(b)
    }
}

/// What [`verify`] found in a valid index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    /// The commit the index was written for.
    pub commit: ObjectId,
}

// ---------------------------------------------------------------- encoding

// Numbers are LEB128 (`meta::vint::put_vuint`, as in `.bupm` records);
// the decoder below is stricter than `.bupm`'s: at most 10 bytes.

fn put_time(out: &mut Vec<u8>, t: Timespec) {
    put_vuint(out, ((t.sec << 1) ^ (t.sec >> 63)) as u64);
    put_vuint(out, u64::from(t.nsec));
}

fn encode_entry(prev_key: &[u8], key: &[u8], e: &Entry, out: &mut Vec<u8>) {
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

/// Reads entries from the (decompressed) entry stream through a buffer of
/// its own, so that the many one-byte reads stay cheap whatever the source
/// is. Every failure is "damaged": the checksum passed, so it can only be
/// a bug or a file changed under us.
struct Decoder {
    inner: Box<dyn Read + Send>,
    /// Version 1: entries carry an access time, skipped.
    plain: bool,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
}

type Bad = &'static str;

impl Decoder {
    fn new(inner: Box<dyn Read + Send>, plain: bool) -> Decoder {
        Decoder {
            inner,
            plain,
            buf: vec![0u8; 1 << 16].into_boxed_slice(),
            pos: 0,
            end: 0,
        }
    }

    /// Refills the buffer; false at the end of the stream (or on an error,
    /// which the caller reports as truncation).
    #[cold]
    fn fill(&mut self) -> bool {
        self.pos = 0;
        self.end = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break 0,
            }
        };
        self.end > 0
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Bad> {
        if self.pos == self.end && !self.fill() {
            return Err("truncated");
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn read_exact(&mut self, mut out: &mut [u8]) -> Result<(), Bad> {
        while !out.is_empty() {
            if self.pos == self.end && !self.fill() {
                return Err("truncated");
            }
            let n = out.len().min(self.end - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            out = &mut out[n..];
        }
        Ok(())
    }

    /// Whether the stream has nothing after the end tag.
    fn at_end(&mut self) -> bool {
        self.pos == self.end && !self.fill()
    }

    fn uint(&mut self) -> Result<u64, Bad> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("number out of range");
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("number too long")
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        u32::try_from(self.uint()?).map_err(|_| "number out of range")
    }

    fn time(&mut self) -> Result<Timespec, Bad> {
        let z = self.uint()?;
        let sec = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return Err("bad nanoseconds");
        }
        Ok(Timespec { sec, nsec })
    }

    fn bytes(&mut self, n: u64, max: u64, buf: &mut Vec<u8>) -> Result<(), Bad> {
        if n > max {
            return Err("length out of range");
        }
        let start = buf.len();
        buf.resize(start + n as usize, 0);
        self.read_exact(&mut buf[start..])
    }

    fn id(&mut self) -> Result<ObjectId, Bad> {
        let mut raw = [0u8; 20];
        self.read_exact(&mut raw)?;
        Ok(ObjectId(raw))
    }

    /// The next entry (updating `key` in place), or None at the trailer.
    fn entry(&mut self, key: &mut Vec<u8>) -> Result<Option<Entry>, Bad> {
        match self.byte()? {
            TAG_END if self.at_end() => return Ok(None),
            TAG_END => return Err("data after the end tag"),
            TAG_ENTRY => {}
            _ => return Err("bad entry tag"),
        }
        let shared = self.uint()?;
        if shared > key.len() as u64 {
            return Err("bad key prefix");
        }
        key.truncate(shared as usize);
        let suffix = self.uint()?;
        self.bytes(suffix, MAX_KEY, key)?;
        let kind = EntryKind::from_u8(self.byte()?).ok_or("bad entry kind")?;
        let dev = self.uint()?;
        let ino = self.uint()?;
        let size = self.uint()?;
        let mode = self.u32()?;
        let nlink = self.uint()?;
        let uid = self.u32()?;
        let gid = self.u32()?;
        let mtime = self.time()?;
        let ctime = self.time()?;
        if self.plain {
            self.time()?;
        }
        let id = self.id()?;
        let children = self.uint()?;
        let len = self.uint()?;
        let mut record = Vec::new();
        self.bytes(len, MAX_RECORD, &mut record)?;
        Ok(Some(Entry {
            kind,
            dev,
            ino,
            size,
            mode,
            nlink,
            uid,
            gid,
            mtime,
            ctime,
            id,
            children,
            record,
        }))
    }
}

// ----------------------------------------------------------------- reading

/// A verified index file, read forward in key order.
pub struct IndexReader {
    path: PathBuf,
    decoder: Decoder,
    /// Key of the entry under the cursor, and of the one before it.
    key: Vec<u8>,
    prev_key: Vec<u8>,
    started: bool,
    /// The entry under the cursor, not yet taken.
    current: Option<Entry>,
    done: bool,
    summary: Summary,
}

/// What [`check_file`] vouches for.
struct Checked {
    commit: ObjectId,
    entries: u64,
    version: u32,
    /// Bytes of the entry stream (as stored) after the header.
    body_len: u64,
}

/// Checks the header and the checksum of the whole file (without keeping
/// it in memory) and leaves `file` positioned after the header.
fn check_file(path: &Path, file: &mut File) -> Result<Checked, IndexError> {
    let invalid = |reason: &str| IndexError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    // The shortest index: no entry, just the end tag.
    if len < HEADER_LEN + 1 + TRAILER_LEN {
        return Err(invalid("too short (truncated?)"));
    }
    let mut reader = BufReader::with_capacity(1 << 16, &mut *file);
    let mut header = [0u8; HEADER_LEN as usize];
    reader
        .read_exact(&mut header)
        .map_err(io_err(path, "read"))?;
    if &header[..8] != MAGIC {
        return Err(invalid("not a rewind change index"));
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION && version != VERSION_PLAIN {
        return Err(invalid(&format!(
            "format version {version}, this rewind reads {VERSION_PLAIN} and {FORMAT_VERSION}"
        )));
    }
    // Hash everything before the final digest, streaming.
    let mut hasher = Sha1::new();
    hasher.update(header);
    let mut body = (&mut reader).take(len - HEADER_LEN - 20);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buf).map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    drop(reader);
    // The trailer: count | commit | digest.
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(io::SeekFrom::Start(len - TRAILER_LEN))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(io_err(path, "read"))?;
    if hasher.finalize().as_slice() != &trailer[28..] {
        return Err(invalid("checksum mismatch (torn or damaged)"));
    }
    let entries = u64::from_be_bytes(trailer[..8].try_into().expect("8 bytes"));
    let commit = ObjectId(trailer[8..28].try_into().expect("20 bytes"));
    file.seek(io::SeekFrom::Start(HEADER_LEN))
        .map_err(io_err(path, "seek"))?;
    Ok(Checked {
        commit,
        entries,
        version,
        body_len: len - HEADER_LEN - TRAILER_LEN,
    })
}

/// The entry stream of a checked file positioned after its header.
fn entry_stream(path: &Path, file: File, checked: &Checked) -> Result<Decoder, IndexError> {
    let body = BufReader::with_capacity(1 << 16, file.take(checked.body_len));
    let inner: Box<dyn Read + Send> = if checked.version == VERSION_PLAIN {
        Box::new(body)
    } else {
        // single_frame: anything after the frame is damage, not a second
        // frame to decode.
        Box::new(
            zstd::stream::read::Decoder::with_buffer(body)
                .map_err(io_err(path, "start decompressing"))?
                .single_frame(),
        )
    };
    Ok(Decoder::new(inner, checked.version == VERSION_PLAIN))
}

impl IndexReader {
    /// Opens and fully verifies an index. `Ok(None)` if there is none.
    pub fn open(path: &Path) -> Result<Option<IndexReader>, IndexError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, "open")(e)),
        };
        let checked = check_file(path, &mut file)?;
        if checked.version != FORMAT_VERSION {
            tracing::debug!(
                "change index {}: format version {}, rewritten as {FORMAT_VERSION} by this save",
                path.display(),
                checked.version
            );
        }
        let mut reader = IndexReader {
            path: path.to_path_buf(),
            decoder: entry_stream(path, file, &checked)?,
            key: Vec::new(),
            prev_key: Vec::new(),
            started: false,
            current: None,
            done: false,
            summary: Summary {
                entries: checked.entries,
                commit: checked.commit,
            },
        };
        reader.advance();
        Ok(Some(reader))
    }

    /// The entry under the cursor with its key, moving past it.
    fn next_entry(&mut self) -> Option<(Vec<u8>, Entry)> {
        let entry = self.current.take()?;
        let key = self.key.clone();
        self.advance();
        Some((key, entry))
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn advance(&mut self) {
        if self.done {
            return;
        }
        self.prev_key.clear();
        self.prev_key.extend_from_slice(&self.key);
        match self.decoder.entry(&mut self.key) {
            Ok(Some(entry)) => {
                // The checksum passed, so disorder means a writer bug; the
                // merge-join would silently miss entries, so stop here.
                if self.started && key_cmp(&self.prev_key, &self.key) != Ordering::Less {
                    self.stop("entries out of order");
                } else {
                    self.started = true;
                    self.current = Some(entry);
                }
            }
            Ok(None) => {
                self.current = None;
                self.done = true;
            }
            Err(reason) => self.stop(reason),
        }
    }

    fn stop(&mut self, reason: &str) {
        tracing::warn!(
            "change index {}: {reason}; the rest is ignored",
            self.path.display()
        );
        self.current = None;
        self.done = true;
    }

    /// The entry for `key`, if the index has one. Keys must be asked in
    /// increasing [`key_cmp`] order: entries passed over are dropped, and a
    /// key asked out of order is simply not found (the caller reads the
    /// path, which is always safe).
    pub fn take(&mut self, key: &[u8]) -> Option<Entry> {
        loop {
            self.current.as_ref()?;
            match key_cmp(&self.key, key) {
                Ordering::Less => self.advance(),
                Ordering::Equal => {
                    let entry = self.current.take();
                    self.advance();
                    return entry;
                }
                Ordering::Greater => return None,
            }
        }
    }
}

/// Checks an index file completely (checksum, version, every entry, order,
/// count) without using it.
pub fn verify(path: &Path) -> Result<Summary, IndexError> {
    let invalid = |reason: String| IndexError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(io_err(path, "open"))?;
    let checked = check_file(path, &mut file)?;
    let (commit, count) = (checked.commit, checked.entries);
    let mut decoder = entry_stream(path, file, &checked)?;
    let mut key = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    let mut n = 0u64;
    while decoder
        .entry(&mut key)
        .map_err(|r| invalid(r.into()))?
        .is_some()
    {
        if prev
            .as_ref()
            .is_some_and(|p| key_cmp(p, &key) != Ordering::Less)
        {
            return Err(invalid("entries out of order".into()));
        }
        prev = Some(key.clone());
        n += 1;
    }
    if n != count {
        return Err(invalid(format!("{n} entries, trailer says {count}")));
    }
    Ok(Summary { entries: n, commit })
}

// ----------------------------------------------------------------- writing

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

// ---------------------------------------------------------- the save's view

/// The change index as one save uses it: the previous index (if valid) to
/// look paths up, and the new one being written. Problems with either are
/// logged and make the save slower, never wrong, and never fail it.
pub(super) struct ChangeIndex {
    known: Arc<KnownObjects>,
    old: Option<Prefetched>,
    /// The object of the entry [`ChangeIndex::lookup`] returned last, and
    /// whether the prefetching thread found it packed.
    last_taken: Option<(ObjectId, bool)>,
    new: Option<IndexWriter>,
    /// Paths with mtime or ctime at or after this are not recorded.
    racy_from: Timespec,
    pub racy: u64,
}

impl ChangeIndex {
    /// The change index of backup `name` in `repo`'s state directory;
    /// `known` answers whether the objects it names are still stored.
    pub fn open(
        repo: &dyn Repo,
        known: Arc<KnownObjects>,
        name: &str,
        started: std::time::SystemTime,
    ) -> Self {
        let path = index_in(&repo.state_dir(), name);
        let old = match IndexReader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}; every file will be read");
                None
            }
        };
        let new = match IndexWriter::create(&path) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("{e}; the next save will read every file again");
                None
            }
        };
        let start = Timespec::from_system_time(started).unwrap_or_default();
        let old = old.and_then(|reader| match Prefetched::start(reader, known.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(
                    "change index {}: cannot start a thread to read it ({e}); every file will be read",
                    path.display()
                );
                None
            }
        });
        ChangeIndex {
            known,
            old,
            last_taken: None,
            new,
            racy_from: Timespec {
                sec: start.sec - RACY_MARGIN_SECS,
                ..start
            },
            racy: 0,
        }
    }

    /// The previous entry for `key` if it shows the path unchanged (same
    /// stat, same kind of object). The caller still checks the object with
    /// [`ChangeIndex::has_object`] before relying on it.
    pub fn unchanged(&mut self, key: &[u8], st: &Stat) -> Option<Entry> {
        self.lookup(key, st).0
    }

    /// Like [`ChangeIndex::unchanged`], also telling whether `key` was in
    /// the previous index at all (a changed path rather than a new one).
    pub fn lookup(&mut self, key: &[u8], st: &Stat) -> (Option<Entry>, bool) {
        match self.old.as_mut().and_then(|old| old.take(key)) {
            Some((entry, present)) if entry.matches(st) => {
                self.last_taken = Some((entry.id, present));
                (Some(entry), true)
            }
            Some(_) => (None, true),
            None => (None, false),
        }
    }

    /// Whether the repository still holds `id` (a gc may have removed it).
    ///
    /// Asked for every reused path: the object of the entry just taken was
    /// already looked up by the prefetching thread; anything else is asked
    /// of the store.
    pub fn has_object(&self, id: &ObjectId) -> bool {
        self.last_taken == Some((*id, true)) || self.known.contains(id)
    }

    /// Records how `key` was saved in this run, unless it is too recent to
    /// be told apart from a change made right after we looked.
    pub fn record(&mut self, key: &[u8], entry: &Entry) {
        if entry.mtime >= self.racy_from || entry.ctime >= self.racy_from {
            self.racy += 1;
            return;
        }
        let Some(w) = self.new.as_mut() else { return };
        if let Err(e) = w.push(key, entry) {
            tracing::warn!("{e}; the next save will read every file again");
            self.new = None;
        }
    }

    /// Publishes the new index; call after the branch moved to `commit`.
    pub fn publish(self, commit: ObjectId) -> Result<(), IndexError> {
        let Some(w) = self.new else { return Ok(()) };
        if w.out_of_order > 0 {
            tracing::info!(
                "{} paths not indexed: the sources are not walked in path order",
                w.out_of_order
            );
        }
        w.publish(commit).map(|_| ())
    }
}

/// One previous entry: its key, the entry, and whether its object was
/// found in the packs open when the save began.
type Ahead = (Vec<u8>, Entry, bool);

/// Entries handed over at a time, and batches in flight: bounds the memory
/// the thread may fill ahead of the walk (~300 KB).
const AHEAD_BATCH: usize = 256;
const AHEAD_BATCHES: usize = 4;

/// The previous index, decompressed, decoded and its objects looked up on
/// a thread of its own, ahead of the walk, which only merges it with the
/// paths it meets. The existence check is the same as asking the store,
/// done earlier: the packs are those open when the save began.
struct Prefetched {
    batches: std::sync::mpsc::Receiver<Vec<Ahead>>,
    batch: std::vec::IntoIter<Ahead>,
    current: Option<Ahead>,
}

impl Prefetched {
    fn start(mut reader: IndexReader, packed: Arc<KnownObjects>) -> io::Result<Prefetched> {
        let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD_BATCHES);
        std::thread::Builder::new()
            .name("index-read".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(AHEAD_BATCH);
                while let Some((key, entry)) = reader.next_entry() {
                    let present = packed.contains(&entry.id);
                    batch.push((key, entry, present));
                    if batch.len() == AHEAD_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(AHEAD_BATCH));
                        if tx.send(full).is_err() {
                            return; // the save is over
                        }
                    }
                }
                let _ = tx.send(batch);
            })?;
        Ok(Prefetched {
            batches: rx,
            batch: Vec::new().into_iter(),
            current: None,
        })
    }

    fn next(&mut self) -> Option<Ahead> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            self.batch = self.batches.recv().ok()?.into_iter();
        }
    }

    /// As [`IndexReader::take`], with whether the object was found.
    fn take(&mut self, key: &[u8]) -> Option<(Entry, bool)> {
        loop {
            if self.current.is_none() {
                self.current = Some(self.next()?);
            }
            let (k, _, _) = self.current.as_ref()?;
            match key_cmp(k, key) {
                Ordering::Less => self.current = None,
                Ordering::Equal => {
                    let (_, entry, present) = self.current.take()?;
                    return Some((entry, present));
                }
                Ordering::Greater => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;

    fn entry(n: u64) -> Entry {
        let t = |sec| Timespec {
            sec,
            nsec: 999_999_999,
        };
        Entry {
            kind: EntryKind::Chunked,
            dev: 2049,
            ino: n,
            size: u64::MAX,
            mode: 0o100644,
            nlink: 1,
            uid: 1000,
            gid: u32::MAX,
            mtime: t(-5),
            ctime: t(1_700_000_000),
            id: ObjectId([n as u8; 20]),
            children: n,
            record: vec![n as u8; n as usize],
        }
    }

    fn keys() -> Vec<Vec<u8>> {
        // Post-order of /a/{b/{c}, b.c}, /a, /z
        ["/a/b/c", "/a/b", "/a/b.c", "/a", "/z"]
            .iter()
            .map(|p| path_key(Path::new(p)))
            .collect()
    }

    fn write(path: &Path, keys: &[Vec<u8>]) -> Summary {
        let mut w = IndexWriter::create(path).unwrap();
        for (i, k) in keys.iter().enumerate() {
            w.push(k, &entry(i as u64)).unwrap();
        }
        w.publish(ObjectId([7; 20])).unwrap()
    }

    #[test]
    fn keys_sort_in_walk_post_order() {
        let k = keys();
        for i in 0..k.len() {
            for j in 0..k.len() {
                assert_eq!(key_cmp(&k[i], &k[j]), i.cmp(&j), "{i} {j}");
            }
        }
        assert_eq!(path_key(Path::new("/")), b"");
        assert_eq!(child_key(&path_key(Path::new("/a")), b"b"), k[1]);
    }

    #[test]
    fn round_trip_and_merge_join() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("idx/name");
        let k = keys();
        write(&path, &k);
        let summary = verify(&path).unwrap();
        assert_eq!(summary.entries, 5);
        assert_eq!(summary.commit, ObjectId([7; 20]));
        let mut r = IndexReader::open(&path).unwrap().unwrap();
        assert_eq!(r.take(&k[0]), Some(entry(0)));
        // /a/b is passed over, /a/b.c found
        assert_eq!(r.take(&k[2]), Some(entry(2)));
        // asking backwards finds nothing
        assert_eq!(r.take(&k[1]), None);
        assert_eq!(r.take(&path_key(Path::new("/m"))), None);
        assert_eq!(r.take(&k[4]), Some(entry(4)));
        assert_eq!(r.take(&k[4]), None);
    }

    #[test]
    fn writer_leaves_out_keys_out_of_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("name");
        let k = keys();
        let mut w = IndexWriter::create(&path).unwrap();
        w.push(&k[3], &entry(3)).unwrap();
        w.push(&k[0], &entry(0)).unwrap();
        w.push(&k[3], &entry(3)).unwrap();
        w.push(&k[4], &entry(4)).unwrap();
        assert_eq!(w.out_of_order, 2);
        assert_eq!(w.publish(ObjectId([1; 20])).unwrap().entries, 2);
        assert_eq!(verify(&path).unwrap().entries, 2);
    }

    #[test]
    fn every_damage_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("name");
        write(&path, &keys());
        let good = std::fs::read(&path).unwrap();
        // Truncation at every length, and a flipped bit at every byte.
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(IndexReader::open(&path).is_err(), "truncated to {len}");
            assert!(verify(&path).is_err());
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(IndexReader::open(&path).is_err(), "flipped byte {i}");
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(IndexReader::open(&path).is_err());
        // Another format version, even with a correct checksum, is refused.
        let mut other = good[..good.len() - 20].to_vec();
        other[11] = 3;
        let digest = Sha1::digest(&other);
        other.extend_from_slice(&digest);
        std::fs::write(&path, &other).unwrap();
        let err = IndexReader::open(&path).err().unwrap().to_string();
        assert!(err.contains("version 3"), "{err}");
        std::fs::write(&path, &good).unwrap();
        assert!(IndexReader::open(&path).unwrap().is_some());
        assert!(IndexReader::open(&tmp.path().join("none"))
            .unwrap()
            .is_none());
    }

    /// Version 1, as rewind wrote it before the entries were compressed:
    /// the same entries stored plainly, the end tag before the trailer.
    fn write_plain_v1(path: &Path, keys: &[Vec<u8>]) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION_PLAIN.to_be_bytes());
        let mut prev: &[u8] = &[];
        for (i, k) in keys.iter().enumerate() {
            // Version 1's entry: version 2's with an access time after
            // the ctime.
            let e = entry(i as u64);
            let mut v2 = Vec::new();
            encode_entry(prev, k, &e, &mut v2);
            let mut times = Vec::new();
            put_time(&mut times, e.mtime);
            put_time(&mut times, e.ctime);
            let at = v2.windows(times.len()).position(|w| w == times).unwrap() + times.len();
            bytes.extend_from_slice(&v2[..at]);
            put_time(
                &mut bytes,
                Timespec {
                    sec: i64::MIN,
                    nsec: 5,
                },
            );
            bytes.extend_from_slice(&v2[at..]);
            prev = k;
        }
        bytes.push(TAG_END);
        bytes.extend_from_slice(&(keys.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&[7; 20]);
        let digest = Sha1::digest(&bytes);
        bytes.extend_from_slice(&digest);
        std::fs::write(path, bytes).unwrap();
    }

    /// An index written before the upgrade is used, not thrown away (the
    /// first save after an upgrade must not read every file again), and
    /// damage to it is still detected.
    #[test]
    fn plain_version_1_is_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("name");
        let k = keys();
        write_plain_v1(&path, &k);
        assert_eq!(verify(&path).unwrap().entries, 5);
        let mut r = IndexReader::open(&path).unwrap().unwrap();
        for (i, key) in k.iter().enumerate() {
            assert_eq!(r.take(key), Some(entry(i as u64)));
        }
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(IndexReader::open(&path).is_err(), "flipped byte {i}");
        }
        // The same entries compressed are several times smaller once there
        // are many of them; here, just not the same bytes.
        write(&path, &k);
        assert_ne!(std::fs::read(&path).unwrap(), good);
        assert_eq!(verify(&path).unwrap().entries, 5);
    }

    /// The compressed stream must end with the end tag: entries after it,
    /// even with a valid checksum, make the index unusable.
    #[test]
    fn data_after_the_end_tag_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("name");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        let mut body = Vec::new();
        encode_entry(&[], &keys()[0], &entry(0), &mut body);
        body.push(TAG_END);
        body.push(TAG_END);
        bytes.extend_from_slice(&zstd::bulk::compress(&body, 1).unwrap());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&[7; 20]);
        let digest = Sha1::digest(&bytes);
        bytes.extend_from_slice(&digest);
        std::fs::write(&path, &bytes).unwrap();
        let err = verify(&path).unwrap_err().to_string();
        assert!(err.contains("after the end tag"), "{err}");
    }

    #[test]
    fn racy_paths_are_not_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let started = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let known = Arc::new(repo.known_objects());
        let mut index = ChangeIndex::open(&repo, known, "n", started);
        let mut e = entry(0);
        e.mtime = Timespec {
            sec: 1_000_000 - RACY_MARGIN_SECS - 1,
            nsec: 999_999_999,
        };
        e.ctime = e.mtime;
        index.record(&path_key(Path::new("/old")), &e);
        e.ctime.sec += 1; // within the margin
        index.record(&path_key(Path::new("/young")), &e);
        assert_eq!(index.racy, 1);
        index.publish(ObjectId([3; 20])).unwrap();
        let path = index_path(repo.path(), "n");
        assert_eq!(verify(&path).unwrap().entries, 1);
    }
}
