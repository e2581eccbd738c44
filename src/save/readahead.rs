//! Reading big files ahead of the walker, around the page cache.
//!
//! A nightly save reads gigabytes once. Through the page cache every byte
//! is copied once more, and every page the kernel fills for it is taken
//! from the server's working set. On virtual machines that hand free memory
//! back to the hypervisor, filling those pages also means faulting them
//! back in: cold buffered reads of the benchmark's dump measured 0.9-1.1 s
//! of system time against 0.01 s with `O_DIRECT`. So a big file that is not
//! in the cache already is read with `O_DIRECT`, by a thread of its own
//! that stays a few blocks ahead (the kernel does no read-ahead for direct
//! reads), into aligned buffers the walker copies out of. A file that is
//! cached (a dump written minutes ago) is read through the cache, which is
//! faster then; so is a file on a file system that refuses `O_DIRECT`.
//! Bytes are the same either way: only where they come from changes.

use super::sparse::{SparseReader, DIRECT_ALIGN};
use crate::chunk::read_full;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// Smaller files are read through the cache: a thread and a few MiB of
/// buffers are not worth it, and the warming threads prefetch their heads.
pub(super) const DIRECT_MIN_SIZE: u64 = 8 << 20;
/// One direct read: large enough that a disk streams, small enough that
/// the first bytes come quickly.
const BLOCK: usize = 2 << 20;
/// Blocks per file: one with the caller, one being read, the rest read
/// and waiting (`BLOCK * DEPTH` of memory).
const DEPTH: usize = 4;

/// The reader the walker uses for a regular file of `size` bytes.
pub(super) fn open(file: File, size: u64) -> FileReader {
    if size < DIRECT_MIN_SIZE || is_cached(&file, size) {
        return FileReader::Cached(SparseReader::new(file, size));
    }
    match SparseReader::new_direct(file, size) {
        Ok(reader) => match ReadAhead::start(reader) {
            Ok(ahead) => FileReader::Direct(ahead),
            Err((reader, e)) => {
                tracing::debug!("no read-ahead thread ({e}): reading in place");
                FileReader::Cached(reader)
            }
        },
        Err(file) => FileReader::Cached(SparseReader::new(file, size)),
    }
}

pub(super) enum FileReader {
    Cached(SparseReader),
    Direct(ReadAhead),
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            FileReader::Cached(r) => r.read(buf),
            FileReader::Direct(r) => r.read(buf),
        }
    }
}

/// Whether the page in the middle of the file is in the page cache: a file
/// written or read lately is, one the last save read through here is not.
/// `mincore` answers without reading anything (a probing read would start
/// the kernel's read-ahead).
fn is_cached(file: &File, size: u64) -> bool {
    let offset = (size / 2) & !(DIRECT_ALIGN as u64 - 1);
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return false;
    };
    // SAFETY: a shared read-only mapping of one page inside the file, never
    // dereferenced (so a concurrent truncation cannot fault), unmapped before
    // returning; `vec` has room for the one page's status byte.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            DIRECT_ALIGN,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        );
        if map == libc::MAP_FAILED {
            return false;
        }
        let mut vec = [0u8; 1];
        let resident = libc::mincore(map, DIRECT_ALIGN, vec.as_mut_ptr()) == 0 && vec[0] & 1 == 1;
        libc::munmap(map, DIRECT_ALIGN);
        resident
    }
}

/// A buffer whose usable part starts on a `DIRECT_ALIGN` boundary.
struct AlignedBlock {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let storage = vec![0u8; BLOCK + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBlock { storage, start }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + BLOCK]
    }
}

/// A block read, with how many of its bytes are the file's.
type Filled = io::Result<(AlignedBlock, usize)>;

/// Reads a file on a thread of its own, up to `DEPTH` blocks ahead of the
/// caller. Dropping it stops the thread.
pub(super) struct ReadAhead {
    filled: Option<Receiver<Filled>>,
    empty: Option<Sender<AlignedBlock>>,
    current: Option<(AlignedBlock, usize)>,
    /// Bytes of `current` already given out.
    taken: usize,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    fn start(reader: SparseReader) -> Result<ReadAhead, (SparseReader, io::Error)> {
        let (filled_tx, filled_rx) = mpsc::sync_channel(DEPTH);
        let (empty_tx, empty_rx) = mpsc::channel();
        // The reader comes back if the thread cannot be started.
        let (give_back, taken_back) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || {
                if let Ok(reader) = taken_back.recv() {
                    read_ahead(reader, &filled_tx, &empty_rx);
                }
            });
        match spawned {
            Ok(thread) => {
                give_back
                    .send(reader)
                    .expect("the thread waits for its reader");
                Ok(ReadAhead {
                    filled: Some(filled_rx),
                    empty: Some(empty_tx),
                    current: None,
                    taken: 0,
                    thread: Some(thread),
                })
            }
            Err(e) => Err((reader, e)),
        }
    }
}

/// The thread's loop: fills blocks in file order until the end of the file,
/// an error, or the caller goes away.
fn read_ahead(
    mut reader: SparseReader,
    filled: &SyncSender<Filled>,
    empty: &Receiver<AlignedBlock>,
) {
    let mut made = 0;
    loop {
        let mut block = match empty.try_recv() {
            Ok(block) => block,
            Err(_) if made < DEPTH => {
                made += 1;
                AlignedBlock::new()
            }
            Err(_) => match empty.recv() {
                Ok(block) => block,
                Err(_) => return,
            },
        };
        let result = read_full(&mut reader, block.bytes());
        let last = !matches!(result, Ok(n) if n == BLOCK);
        if filled.send(result.map(|n| (block, n))).is_err() || last {
            return;
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some((block, len)) = &mut self.current {
                if self.taken < *len {
                    let n = buf.len().min(*len - self.taken);
                    buf[..n].copy_from_slice(&block.bytes()[self.taken..self.taken + n]);
                    self.taken += n;
                    return Ok(n);
                }
                let (block, _) = self.current.take().expect("matched above");
                if let Some(empty) = &self.empty {
                    // The thread may have finished: the block is then freed.
                    let _ = empty.send(block);
                }
            }
            let Some(filled) = &self.filled else {
                return Ok(0);
            };
            match filled.recv() {
                Ok(Ok((block, len))) => {
                    self.current = Some((block, len));
                    self.taken = 0;
                }
                Ok(Err(e)) => {
                    self.filled = None;
                    return Err(e);
                }
                // The thread ended after the last block: the end of the file.
                Err(_) => {
                    self.filled = None;
                    return Ok(0);
                }
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing both channels ends the thread at its next send or wait.
        self.filled = None;
        self.empty = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{drop_cached, noise, read_in_pieces as read_all, write_pieces};
    use std::path::{Path, PathBuf};

    /// Direct reads need a disk file system: /var/tmp is one by convention
    /// (/tmp may be a tmpfs).
    fn disk_tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("rewind-readahead-")
            .tempdir_in("/var/tmp")
            .expect("a temporary directory in /var/tmp")
    }

    /// A file of `len` bytes with `pieces` of data written at their offsets
    /// (the rest holes), synced and dropped from the page cache.
    fn cold_file(dir: &Path, name: &str, pieces: &[(u64, Vec<u8>)], len: u64) -> PathBuf {
        let path = dir.join(name);
        drop_cached(&write_pieces(&path, pieces, len));
        path
    }

    fn open_path(path: &Path) -> FileReader {
        let file = File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        open(file, size)
    }

    /// Cold big files are read around the cache, whatever their layout, and
    /// the bytes are exactly those of a plain read, whatever the read size.
    #[test]
    fn cold_big_files_read_directly_with_the_same_bytes() {
        let tmp = disk_tempdir();
        let mib = 1u64 << 20;
        // (name, (offset, bytes) pieces, length)
        type Layout = (&'static str, Vec<(u64, Vec<u8>)>, u64);
        let layouts: Vec<Layout> = vec![
            // Dense, ending mid-block.
            (
                "dense",
                vec![(0, noise(4097, 9 * (1 << 20) + 1234))],
                9 * mib + 1234,
            ),
            // Dense, an exact multiple of the read-ahead block.
            ("exact", vec![(0, noise(8193, 4 * BLOCK))], 4 * BLOCK as u64),
            // Data, holes large and small, a hole at the end.
            (
                "sparse",
                vec![
                    (0, noise(12289, 10_000)),
                    (3 * mib, noise(16385, 3 * (1 << 20))),
                    (6 * mib + 8192, noise(20481, 5_000)),
                    (11 * mib - 4096, noise(24577, 4096)),
                ],
                13 * mib + 77,
            ),
            // Only a hole.
            ("hole", vec![], 10 * mib),
        ];
        for (name, pieces, len) in layouts {
            let path = cold_file(tmp.path(), name, &pieces, len);
            let expected = std::fs::read(&path).unwrap();
            assert_eq!(expected.len() as u64, len);
            for piece in [4096, 7_000, 1 << 20, 3 << 20] {
                let file = File::open(&path).unwrap();
                drop_cached(&file);
                let reader = open_path(&path);
                assert!(
                    matches!(reader, FileReader::Direct(_)),
                    "{name}: a cold big file is read directly"
                );
                assert!(read_all(reader, piece) == expected, "{name}, piece {piece}");
                assert!(!is_cached(&file, len), "{name}: read around the cache");
            }
        }
    }

    #[test]
    fn cached_or_small_files_are_read_through_the_cache() {
        let tmp = disk_tempdir();
        let data = noise(28673, (DIRECT_MIN_SIZE + 4096) as usize);
        let path = tmp.path().join("hot");
        std::fs::write(&path, &data).unwrap();
        // Just written: in the cache.
        let reader = open_path(&path);
        assert!(matches!(reader, FileReader::Cached(_)));
        assert!(read_all(reader, 65_536) == data);

        let small = cold_file(tmp.path(), "small", &[(0, noise(32769, 100_000))], 100_000);
        assert!(matches!(open_path(&small), FileReader::Cached(_)));
    }

    /// A direct read the kernel refuses (a misaligned buffer or position)
    /// turns direct reads off for the rest of the file; nothing fails.
    #[test]
    fn misaligned_direct_reads_fall_back_to_the_cache() {
        let tmp = disk_tempdir();
        let len = 3 * (1 << 20) + 100;
        let path = cold_file(tmp.path(), "f", &[(0, noise(36865, len))], len as u64);
        let expected = std::fs::read(&path).unwrap();
        let mut reader = SparseReader::new_direct(File::open(&path).unwrap(), len as u64)
            .unwrap_or_else(|_| panic!("/var/tmp takes O_DIRECT"));
        assert!(reader.is_direct());
        let mut out = vec![0u8; 1000];
        let n = reader.read(&mut out).unwrap();
        assert!(n > 0 && out[..n] == expected[..n]);
        assert!(!reader.is_direct(), "a 1000-byte read cannot be direct");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(out[..n].iter().chain(&rest).eq(&expected));
    }

    /// Dropping a reader half way stops its thread (the test would hang
    /// otherwise) and leaves the file as it was.
    #[test]
    fn dropping_a_reader_half_way_stops_it() {
        let tmp = disk_tempdir();
        let len = 12 << 20;
        let path = cold_file(tmp.path(), "f", &[(0, noise(40961, len))], len as u64);
        let mut reader = open_path(&path);
        assert!(matches!(reader, FileReader::Direct(_)));
        let mut buf = vec![0u8; 4096];
        reader.read_exact(&mut buf).unwrap();
        drop(reader);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
    }
}
