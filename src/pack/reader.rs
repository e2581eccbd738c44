//! Reading entries out of one pack file with positioned reads (`pread`).
//!
//! No memory maps: a long-running daemon must see I/O errors as errors, and
//! `read_at` on a shared `File` lets many threads read without locks. This
//! layer returns raw entry data (whole objects or delta bytes); resolving
//! delta chains and verifying ids happens in `repo::store`.

use super::idx::Entry;
use super::inflate::{libdeflate_zlib, TOO_LONG};
use super::{
    parse_entry_header, EntryHeader, PackIndex, PACK_HEADER_LEN, PACK_SIGNATURE, PACK_TRAILER_LEN,
};
use crate::object::ObjectId;
use crate::repo::Error;
use flate2::{Decompress, FlushDecompress, Status};
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Memory reserved up front from a size read off disk (see `delta::MAX_PREALLOC`).
const MAX_PREALLOC: u64 = 64 << 20;
/// Bytes read per `pread`. Chunks average ~10 KiB compressed or less and a
/// file's chunks sit next to each other in a pack, so one read serves the
/// headers and streams of a run of objects instead of two syscalls each.
const WINDOW: usize = 128 << 10;
/// Bytes read where a thread jumps to a place in a pack away from its last
/// read: most chunks' entries (header and stream) fit.
const JUMP_WINDOW: usize = 32 << 10;

/// Distinguishes open packs in the per-thread read window (0 = none).
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// Why reading an entry failed, before the caller attaches the object id.
#[derive(Debug)]
pub enum ReadFail {
    Io(io::Error),
    Corrupt(String),
}

impl ReadFail {
    /// Turns this into the public error for object `id` read from `pack`.
    pub fn into_error(self, id: ObjectId, pack: &Path) -> Error {
        match self {
            ReadFail::Io(source) => Error::Io {
                action: "reading pack",
                path: pack.to_path_buf(),
                source,
            },
            ReadFail::Corrupt(detail) => Error::Corrupt {
                id,
                pack: Some(pack.to_path_buf()),
                detail,
            },
        }
    }
}

/// An open pack with its index. `damage` records a mismatch between pack and
/// index found at open (header, count or trailer); every read then fails as
/// corrupt rather than trusting either side.
pub struct PackFile {
    path: PathBuf,
    file: File,
    len: u64,
    index: std::sync::Arc<PackIndex>,
    /// Identifies this open pack in the per-thread read window.
    uid: u64,
    /// Pack/index mismatch, checked on first read rather than at open: a
    /// repository with thousands of packs would otherwise pay two random
    /// reads per pack before answering anything.
    damage: OnceLock<Option<String>>,
    /// One bit per entry (in offset order): its object hashed to its id
    /// once through this open pack (see [`PackFile::is_verified_rank`]).
    verified: Box<[AtomicU64]>,
}

impl PackFile {
    /// Opens `pack-X.idx` and its `pack-X.pack`, cross-checking the two.
    pub fn open(idx_path: &Path) -> Result<PackFile, Error> {
        let index = std::sync::Arc::new(PackIndex::open(idx_path)?);
        let path = idx_path.with_extension("pack");
        let file = File::open(&path).map_err(Error::io("opening pack", &path))?;
        let len = file
            .metadata()
            .map_err(Error::io("reading size of pack", &path))?
            .len();
        let verified = (0..index.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(PackFile {
            path,
            file,
            len,
            index,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            verified,
            damage: OnceLock::new(),
        })
    }

    /// The result of `check_frame`, computed once. A read error is not
    /// remembered (it may be transient) and fails this read only. Public so
    /// that a store opening many packs can check them in parallel.
    pub fn damage(&self) -> Result<Option<&str>, ReadFail> {
        if let Some(d) = self.damage.get() {
            return Ok(d.as_deref());
        }
        let found = self.check_frame().map_err(ReadFail::Io)?;
        Ok(self.damage.get_or_init(|| found).as_deref())
    }

    /// Whether this pack may vouch that it holds an object: its header and
    /// trailer agree with its index. A damaged pack (or one whose frame
    /// cannot be read now) still answers reads, with errors, but a save
    /// must not skip writing an object because such a pack lists it: the
    /// new snapshot would depend on bytes that cannot be read.
    pub fn is_sound(&self) -> bool {
        matches!(self.damage(), Ok(None))
    }

    /// Compares the pack's header and trailer with its index.
    fn check_frame(&self) -> io::Result<Option<String>> {
        if self.len < PACK_HEADER_LEN + PACK_TRAILER_LEN {
            return Ok(Some(format!("pack is too short ({} bytes)", self.len)));
        }
        let mut head = [0u8; 12];
        let mut trailer = [0u8; 20];
        let trailer_at = (self.len - PACK_TRAILER_LEN) as usize;
        if self.len <= WINDOW as u64 {
            // A small pack (one save's worth) in one read, which also leaves
            // its entries in this thread's window for the read that follows.
            SCRATCH.with(|cell| {
                let mut scratch = cell.borrow_mut();
                let src = Source {
                    file: &self.file,
                    uid: self.uid,
                    data_end: self.len,
                };
                scratch.fill(&src, 0, self.len as usize)?;
                head.copy_from_slice(&scratch.buf[..12]);
                trailer.copy_from_slice(&scratch.buf[trailer_at..trailer_at + 20]);
                io::Result::Ok(())
            })?;
        } else {
            self.file.read_exact_at(&mut head, 0)?;
            self.file.read_exact_at(&mut trailer, trailer_at as u64)?;
        }
        let version = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let count = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        Ok(
            if &head[..4] != PACK_SIGNATURE || !(version == 2 || version == 3) {
                Some("pack header is damaged".to_string())
            } else if count as usize != self.index.len() {
                Some(format!(
                    "pack header says {count} objects, index has {}",
                    self.index.len()
                ))
            } else if &trailer != self.index.pack_checksum() {
                Some("pack trailer checksum does not match its index".to_string())
            } else {
                None
            },
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the pack file as opened.
    pub fn file_size(&self) -> u64 {
        self.len
    }

    /// Asks the kernel to start reading `[offset, offset + len)` of the pack
    /// into its page cache now, without waiting: a reader that knows which
    /// entries it needs next finds them there instead of stalling on the
    /// disk one window at a time. Only advice; errors are ignored.
    pub fn will_need(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: self.file keeps the descriptor open for the call;
        // posix_fadvise takes only integers and touches no memory.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::POSIX_FADV_WILLNEED,
            )
        };
    }

    /// Whether the whole (non-delta) object of rank `k` in offset order
    /// ([`Entry::rank`]) was read and hashed to its id before through this
    /// handle. A pack file never changes under an open handle and every
    /// read still checks the entry's CRC-32, its Adler-32 and its exact
    /// size, so a later read of the same bytes need not hash them again.
    pub fn is_verified_rank(&self, k: usize) -> bool {
        self.verified
            .get(k / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (k % 64)) != 0)
    }

    /// Records that the object of rank `k` (in offset order) hashed to its id.
    pub fn set_verified_rank(&self, k: usize) {
        if let Some(w) = self.verified.get(k / 64) {
            w.fetch_or(1 << (k % 64), Ordering::Relaxed);
        }
    }

    pub fn index(&self) -> &PackIndex {
        &self.index
    }

    /// The index, shared (for a table of known objects built beside the pack).
    pub fn shared_index(&self) -> std::sync::Arc<PackIndex> {
        self.index.clone()
    }

    /// End of the entry area (start of the trailer).
    fn data_end(&self) -> u64 {
        self.len.saturating_sub(PACK_TRAILER_LEN)
    }

    /// Reads and parses the entry header at `offset`.
    pub fn entry_header(&self, offset: u64) -> Result<EntryHeader, ReadFail> {
        if let Some(d) = self.damage()? {
            return Err(ReadFail::Corrupt(d.to_string()));
        }
        if offset < PACK_HEADER_LEN || offset >= self.data_end() {
            return Err(ReadFail::Corrupt(format!(
                "entry offset {offset} is outside the pack's entries"
            )));
        }
        let want = (self.data_end() - offset).min(32) as usize;
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let src = self.source();
            let got = scratch.bytes_at(&src, offset).map_err(ReadFail::Io)?;
            if got.len() < want {
                // The window ends inside this header: start it here.
                scratch.fill(&src, offset, want).map_err(ReadFail::Io)?;
            }
            let got = scratch.bytes_at(&src, offset).map_err(ReadFail::Io)?;
            parse_entry_header(offset, &got[..want.min(got.len())]).map_err(ReadFail::Corrupt)
        })
    }

    fn source(&self) -> Source<'_> {
        Source {
            file: &self.file,
            uid: self.uid,
            data_end: self.data_end(),
        }
    }

    /// Inflates the zlib stream of the entry described by `header`, which
    /// must produce exactly `header.size` bytes and then end.
    /// The entry's raw bytes (header and stream, up to the next entry) must
    /// match the CRC-32 in the idx (v2).
    pub fn inflate(&self, header: &EntryHeader) -> Result<Vec<u8>, ReadFail> {
        let (crc, next) = self.index.entry_at(header.offset).ok_or_else(|| {
            ReadFail::Corrupt(format!(
                "no entry of the index starts at offset {}",
                header.offset
            ))
        })?;
        self.inflate_bounded(header, crc, next)
    }

    /// [`inflate`](Self::inflate) for an entry already found in the index
    /// (by id), without searching it again by offset.
    pub fn inflate_entry(&self, header: &EntryHeader, entry: &Entry) -> Result<Vec<u8>, ReadFail> {
        if entry.offset != header.offset {
            return Err(ReadFail::Corrupt(format!(
                "entry header read at {} for the index entry at {}",
                header.offset, entry.offset
            )));
        }
        self.inflate_bounded(header, entry.crc, entry.next)
    }

    /// The zlib stream of a whole entry as stored, without inflating it:
    /// for a server that sends objects compressed (the client inflates and
    /// hashes them). At most `max` bytes; `None` if the stream is longer.
    pub fn raw_stream(
        &self,
        header: &EntryHeader,
        entry: &Entry,
        max: u64,
    ) -> Result<Option<Vec<u8>>, ReadFail> {
        let end = entry.next.unwrap_or_else(|| self.data_end());
        if entry.offset != header.offset || end < header.data_offset {
            return Err(ReadFail::Corrupt(format!(
                "entry at offset {} does not fit its index",
                header.offset
            )));
        }
        let len = end - header.data_offset;
        if len > max {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, header.data_offset)
            .map_err(ReadFail::Io)?;
        Ok(Some(buf))
    }

    fn inflate_bounded(
        &self,
        header: &EntryHeader,
        crc: Option<u32>,
        next: Option<u64>,
    ) -> Result<Vec<u8>, ReadFail> {
        let end = next.unwrap_or(self.data_end()).min(self.data_end());
        let check = EntryCheck {
            start: header.offset,
            header_crc: header.header_crc,
            header_len: header.data_offset - header.offset,
            expected_crc: crc,
        };
        inflate_at(
            &self.source(),
            header.data_offset,
            end,
            header.size,
            None,
            Some(check),
        )
    }

    /// Reads `buf.len()` bytes of the pack's entries from `offset`, all of
    /// them inside the entry area (header and trailer excluded): raw bytes
    /// for a copy that checks them itself (gc checks each entry's CRC-32).
    pub fn read_entries_at(&self, buf: &mut [u8], offset: u64) -> Result<(), ReadFail> {
        let end = offset.checked_add(buf.len() as u64);
        if offset < PACK_HEADER_LEN || end.is_none_or(|e| e > self.data_end()) {
            return Err(ReadFail::Corrupt(format!(
                "{} bytes at offset {offset} are outside the pack's entries",
                buf.len()
            )));
        }
        self.file.read_exact_at(buf, offset).map_err(ReadFail::Io)
    }

    /// Inflates at most the first `n` bytes of the entry (enough for a delta's
    /// size header) without reading the rest.
    pub fn inflate_prefix(&self, header: &EntryHeader, n: usize) -> Result<Vec<u8>, ReadFail> {
        inflate_at(
            &self.source(),
            header.data_offset,
            self.data_end(),
            header.size,
            Some(n),
            None,
        )
    }
}

/// What a whole entry must satisfy besides inflating to the right size.
struct EntryCheck {
    start: u64,
    header_crc: u32,
    header_len: u64,
    /// From an idx v2; v1 has none.
    expected_crc: Option<u32>,
}

/// Where window reads come from: one open pack.
struct Source<'a> {
    file: &'a File,
    uid: u64,
    data_end: u64,
}

/// Per-thread inflate state and read window, reused across reads (a fresh
/// zlib state, buffer and `pread` per object cost measurable time). The
/// window holds `buf[..len]` = pack `pack` bytes from `start`; packs never
/// change under an open handle, so cached bytes cannot go stale.
struct Scratch {
    z: Decompress,
    buf: Vec<u8>,
    pack: u64,
    start: u64,
    len: usize,
}

impl Scratch {
    /// Reads the window from `pos` (up to the end of the entries), at least
    /// `need` bytes of it. A thread moving forward through a pack (read-ahead,
    /// a streaming reader) reads whole windows; a jump elsewhere (a random
    /// reader's chunk) reads [`JUMP_WINDOW`]: with the page cache cold,
    /// every byte more is disk time before the reply.
    fn fill(&mut self, src: &Source, pos: u64, need: usize) -> io::Result<()> {
        let forward = self.pack == src.uid
            && self.start <= pos
            && pos <= self.start + (self.len + WINDOW) as u64;
        let size = if SPARSE.get() {
            // The rest of the page holding `pos`, which is read anyway.
            need.max(PAGE - (pos % PAGE as u64) as usize)
        } else if forward {
            WINDOW
        } else {
            need.max(JUMP_WINDOW)
        };
        self.pack = 0;
        let n = src
            .data_end
            .saturating_sub(pos)
            .min(size.min(self.buf.len()) as u64) as usize;
        src.file.read_exact_at(&mut self.buf[..n], pos)?;
        (self.pack, self.start, self.len) = (src.uid, pos, n);
        Ok(())
    }

    /// The window's bytes from `pos` on, reading it first if it does not
    /// hold `pos`. Empty only at the end of the entries.
    fn bytes_at(&mut self, src: &Source, pos: u64) -> io::Result<&[u8]> {
        let held = self.pack == src.uid && self.start <= pos && pos < self.start + self.len as u64;
        if !held {
            self.fill(src, pos, 0)?;
        }
        Ok(&self.buf[(pos - self.start) as usize..self.len])
    }
}

/// The unit in which the kernel reads a file into its page cache.
const PAGE: usize = 4096;

thread_local! {
    /// See [`read_sparsely`].
    static SPARSE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's pack reads cut to the bytes each entry
/// needs (rounded up to the end of a page) instead of a window of the
/// entries after it: for a reader that asked for exactly the entries it
/// will read ([`PackFile::will_need`]) and visits them in offset order with
/// gaps between (gc's mark reading the trees of a repository). A window
/// past the entries asked for would miss the page cache, and the kernel,
/// seeing reads move forward, would read ahead megabytes of blobs at each
/// miss (on a month of daily saves: 320 MB for 10 MB of trees).
pub fn read_sparsely<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SPARSE.set(self.0);
        }
    }
    let _restore = Restore(SPARSE.replace(true));
    f()
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        z: Decompress::new(true),
        buf: vec![0u8; WINDOW],
        pack: 0,
        start: 0,
        len: 0,
    });
}

/// Entries up to this size (compressed and inflated) are inflated in one
/// call from the read window; bigger ones stream through zlib-rs.
const WHOLE_MAX: u64 = WINDOW as u64;

/// Inflates a whole entry whose zlib stream `[pos, end)` fits in the read
/// window, in one call. The same checks as the streaming path: exactly
/// `size` bytes, the stream (Adler-32 included) ends exactly at `end`, and
/// the entry's raw bytes match the idx CRC-32. `None`: not applicable here
/// (too big, no decompressor), stream it instead.
fn inflate_whole(
    src: &Source,
    pos: u64,
    end: u64,
    size: u64,
    check: &EntryCheck,
) -> Result<Option<Vec<u8>>, ReadFail> {
    if end <= pos || end - pos > WHOLE_MAX || size > WHOLE_MAX {
        return Ok(None);
    }
    let stream_len = (end - pos) as usize;
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        if scratch.bytes_at(src, pos).map_err(ReadFail::Io)?.len() < stream_len {
            // Straddles the window's end: start the window here.
            scratch.fill(src, pos, stream_len).map_err(ReadFail::Io)?;
        }
        let input = scratch.bytes_at(src, pos).map_err(ReadFail::Io)?;
        if input.len() < stream_len {
            return Ok(None);
        }
        let input = &input[..stream_len];
        let Some((out, used)) = libdeflate_zlib(input, size as usize) else {
            return Ok(None);
        };
        let out = out.map_err(|why| {
            ReadFail::Corrupt(match why {
                TOO_LONG => format!("entry inflates to more than its declared {size} bytes"),
                other => other.into(),
            })
        })?;
        let made = out.len();
        if made as u64 != size {
            return Err(ReadFail::Corrupt(format!(
                "entry inflates to {made} bytes, its header says {size}"
            )));
        }
        if used != stream_len {
            return Err(ReadFail::Corrupt(format!(
                "entry at offset {} has {} stray bytes after its zlib stream",
                check.start,
                stream_len - used.min(stream_len)
            )));
        }
        let mut crc = crc32fast::Hasher::new_with_initial_len(check.header_crc, check.header_len);
        crc.update(input);
        if check.expected_crc.is_some_and(|c| c != crc.finalize()) {
            return Err(ReadFail::Corrupt(format!(
                "CRC-32 of the entry at offset {} does not match the index",
                check.start
            )));
        }
        Ok(Some(out))
    })
}

/// Inflates the zlib stream starting at `pos` (not reading at or past `end`)
/// that must inflate to exactly `size` bytes. With `prefix`, stops after that
/// many output bytes.
fn inflate_at(
    src: &Source,
    mut pos: u64,
    end: u64,
    size: u64,
    prefix: Option<usize>,
    check: Option<EntryCheck>,
) -> Result<Vec<u8>, ReadFail> {
    let mut crc = check
        .as_ref()
        .map(|c| crc32fast::Hasher::new_with_initial_len(c.header_crc, c.header_len));
    if let (None, Some(check)) = (prefix, check.as_ref()) {
        if let Some(whole) = inflate_whole(src, pos, end, size, check)? {
            return Ok(whole);
        }
    }
    let limit = match prefix {
        Some(n) => size.min(n as u64),
        None => size,
    };
    // One spare byte of room lets us notice a stream that inflates too far.
    let mut out = Vec::with_capacity(limit.min(MAX_PREALLOC) as usize + 1);
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        guard.z.reset(true);
        loop {
            if pos >= end {
                return Err(ReadFail::Corrupt(format!(
                    "zlib stream is truncated ({} of {size} bytes inflated)",
                    out.len()
                )));
            }
            if out.len() == out.capacity() {
                // Saturating: a header may declare a size of u64::MAX.
                let room =
                    (limit.saturating_add(1) - out.len() as u64).min(out.len().max(4096) as u64);
                out.reserve_exact(room as usize);
            }
            let (before_in, before_out) = (guard.z.total_in(), guard.z.total_out());
            let scratch = &mut *guard;
            let avail = {
                let bytes = scratch.bytes_at(src, pos).map_err(ReadFail::Io)?;
                bytes.len().min((end - pos) as usize)
            };
            let from = (pos - scratch.start) as usize;
            let input = &scratch.buf[from..from + avail];
            let status = scratch
                .z
                .decompress_vec(input, &mut out, FlushDecompress::None)
                .map_err(|e| ReadFail::Corrupt(format!("zlib data is damaged: {e}")))?;
            let used = (scratch.z.total_in() - before_in) as usize;
            if let Some(h) = crc.as_mut() {
                h.update(&input[..used]);
            }
            pos += used as u64;
            if out.len() as u64 > limit {
                if prefix.is_some() {
                    out.truncate(limit as usize);
                    return Ok(out);
                }
                return Err(ReadFail::Corrupt(format!(
                    "entry inflates to more than its declared {size} bytes"
                )));
            }
            match status {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => {
                    let stalled =
                        scratch.z.total_in() == before_in && scratch.z.total_out() == before_out;
                    if stalled && used < avail {
                        return Err(ReadFail::Corrupt("zlib stream makes no progress".into()));
                    }
                }
            }
            if prefix.is_some() && out.len() as u64 == limit && limit < size {
                return Ok(out);
            }
        }
        if out.len() as u64 != size {
            return Err(ReadFail::Corrupt(format!(
                "entry inflates to {} bytes, its header says {size}",
                out.len()
            )));
        }
        if let (Some(check), Some(h)) = (check, crc) {
            if pos != end {
                return Err(ReadFail::Corrupt(format!(
                    "entry at offset {} has {} stray bytes after its zlib stream",
                    check.start,
                    end - pos
                )));
            }
            let actual = h.finalize();
            if check.expected_crc.is_some_and(|c| c != actual) {
                return Err(ReadFail::Corrupt(format!(
                    "CRC-32 of the entry at offset {} does not match the index",
                    check.start
                )));
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// An entry header may declare any size up to u64::MAX; growing the
    /// output computed `size + 1`, which overflows (a panic wherever
    /// overflow checks are on, as in fuzzing builds). A declared size the
    /// stream does not deliver is a corrupt entry.
    #[test]
    fn entry_declaring_u64_max_bytes_is_corrupt_not_an_overflow() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"hello").unwrap();
        let stream = z.finish().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&stream).unwrap();
        let src = Source {
            file: &file,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            data_end: stream.len() as u64,
        };
        for size in [u64::MAX, u64::MAX - 1, 1 << 40, 6] {
            match inflate_at(&src, 0, stream.len() as u64, size, None, None) {
                Err(ReadFail::Corrupt(why)) => assert!(why.contains("inflates to 5"), "{why}"),
                other => panic!("size {size}: {other:?}"),
            }
        }
        assert_eq!(
            inflate_at(&src, 0, stream.len() as u64, 5, None, None).unwrap(),
            b"hello"
        );
        // A prefix of a huge declared size stops where asked.
        assert_eq!(
            inflate_at(&src, 0, stream.len() as u64, u64::MAX, Some(3), None).unwrap(),
            b"hel"
        );
    }

    /// Sparse reads return what ordinary reads do, for an entry within a
    /// page, one over several pages and one larger than the read window
    /// (streamed), and a sparse read of a small entry leaves no more than
    /// the rest of its page in the window: nothing past it is read.
    #[test]
    fn sparse_reads_read_only_the_entry_and_return_the_same_objects() {
        use crate::object::{hash_object, Kind};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pack")).unwrap();
        let objects = [
            b"a small tree's worth".to_vec(),
            crate::test_support::noise(1, 20_000),
            crate::test_support::noise(2, 3 * WINDOW),
            b"after the big one".to_vec(),
        ];
        let mut writer = super::super::PackWriter::new(dir.path()).unwrap();
        for data in &objects {
            writer.write(Kind::Blob, data).unwrap();
        }
        let paths = writer.finish().unwrap();
        let idx = paths
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "idx"));
        let pack = PackFile::open(idx.unwrap()).unwrap();
        let read = |data: &[u8]| {
            let entry = pack.index().find(&hash_object(Kind::Blob, data)).unwrap();
            let header = pack.entry_header(entry.offset).unwrap();
            (pack.inflate_entry(&header, &entry).unwrap(), entry.offset)
        };
        for data in &objects {
            let (sparse, offset) = read_sparsely(|| read(data));
            assert_eq!(&sparse, data);
            assert_eq!(&read(data).0, data);
            if data.len() < 100 {
                let (start, len) = read_sparsely(|| {
                    SCRATCH.with(|c| c.borrow_mut().pack = 0);
                    read(data);
                    SCRATCH.with(|c| (c.borrow().start, c.borrow().len))
                });
                assert_eq!(start, offset);
                let page_end = (offset / PAGE as u64 + 1) * PAGE as u64;
                assert!(
                    start + len as u64 <= page_end,
                    "{len} bytes read from {start}"
                );
            }
        }
        assert!(!SPARSE.get(), "the setting ends with read_sparsely");
    }
}
