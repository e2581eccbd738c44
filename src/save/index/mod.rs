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
//!
//! [`read`] checks and decodes a file, [`write`] encodes and publishes
//! one, [`change`] is the view one save has of both.

mod change;
mod read;
mod write;

pub(in crate::save) use change::ChangeIndex;
pub use read::{verify, IndexReader};
pub use write::IndexWriter;

use crate::meta::{Stat, Timespec};
use crate::object::ObjectId;
use std::cmp::Ordering;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

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

#[cfg(test)]
mod tests;
