//! Reading sparse files without reading their holes.
//!
//! A hole reads as zeros; the kernel makes them by allocating and zeroing a
//! page-cache page for every 4 KiB of it and copying that out, which on
//! the benchmark's 512 MiB VM image (~200 MiB of holes) was about a second
//! of the walker's time. [`SparseReader`] asks the file system where data
//! is (`SEEK_DATA` / `SEEK_HOLE`) and fills the caller's buffer with zeros
//! for holes of at least [`MIN_HOLE`] bytes instead of reading them. The
//! bytes returned are the bytes a plain read returns, so chunks and ids are
//! the same; only files whose allocated blocks are fewer than their size
//! are treated this way, and a file system without `SEEK_DATA` is simply
//! read.
//!
//! In direct mode (see `readahead`) the file was opened for `O_DIRECT`:
//! reads are then made whole aligned blocks, and anything the kernel
//! refuses (a misaligned position or buffer) turns direct reads off for the
//! rest of the file instead of failing it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Smaller holes are read like data: finding them costs two system calls,
/// and a read of a few zero pages costs less.
const MIN_HOLE: u64 = 64 << 10;
/// How far past the current position one data region is looked up (so a
/// file with many small holes costs a bounded number of calls per read).
const LOOKAHEAD: u64 = 8 << 20;

/// A `Read` over a file that returns zeros for its large holes.
pub(super) struct SparseReader {
    file: File,
    pos: u64,
    /// Reads from the file up to here; beyond it, the next region must be
    /// looked up.
    data_end: u64,
    /// Zeros are returned from `data_end` up to here (a hole).
    hole_end: u64,
    /// `SEEK_DATA` unsupported or the file not sparse: plain reads only.
    plain: bool,
    /// The descriptor has `O_DIRECT` set.
    direct: bool,
}

/// Position, length and buffer address of an `O_DIRECT` read must be
/// multiples of the device's logical block size; 4 KiB covers the devices
/// in use (and a larger one only turns direct reads off).
pub(super) const DIRECT_ALIGN: usize = 4096;

impl SparseReader {
    /// `size` is the size the caller's `lstat` saw: a file too small to
    /// have a hole worth skipping is read plainly without another `fstat`.
    pub fn new(file: File, size: u64) -> SparseReader {
        // st_blocks counts 512-byte units whatever the block size.
        let sparse = size >= MIN_HOLE
            && file
                .metadata()
                .is_ok_and(|m| m.blocks().saturating_mul(512) + MIN_HOLE <= m.len());
        SparseReader {
            file,
            pos: 0,
            data_end: 0,
            hole_end: 0,
            plain: !sparse,
            direct: false,
        }
    }

    /// A reader over `file` with `O_DIRECT` set on it, or the file given
    /// back untouched if the file system refuses the flag.
    pub fn new_direct(file: File, size: u64) -> Result<SparseReader, File> {
        if set_direct(&file, true).is_err() {
            return Err(file);
        }
        let mut reader = SparseReader::new(file, size);
        reader.direct = true;
        Ok(reader)
    }

    /// Whether reads still bypass the page cache.
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    fn seek(&self, offset: u64, whence: i32) -> io::Result<u64> {
        let offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: self.file keeps the descriptor open for the call; lseek
        // takes only integers. The file offset it moves is not used: reads
        // are positioned (`pread`).
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), offset, whence) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    }

    /// Finds the region at `self.pos` (which is at or past `data_end`):
    /// sets `hole_end` (zeros up to there) and `data_end` (data after it).
    fn locate(&mut self) -> io::Result<()> {
        let data = match self.seek(self.pos, libc::SEEK_DATA) {
            Ok(d) => d,
            // No data at or after pos: a hole up to the end of the file.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                let end = self.file.metadata()?.len().max(self.pos);
                self.hole_end = end;
                self.data_end = end;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if data - self.pos < MIN_HOLE {
            // Too small a hole to skip: read it with the data after it.
            self.hole_end = self.pos;
        } else {
            self.hole_end = data;
        }
        // The data runs to the next hole that is worth skipping, or to the
        // look-ahead limit.
        let limit = data.saturating_add(LOOKAHEAD);
        let mut from = data;
        self.data_end = loop {
            let hole = self.seek(from, libc::SEEK_HOLE)?;
            if hole >= limit {
                break limit;
            }
            match self.seek(hole, libc::SEEK_DATA) {
                Ok(next) if next - hole < MIN_HOLE => from = next,
                Ok(_) => break hole,
                // Only a hole after `hole`: the file ends with it. Reading
                // stops at the hole; the next `locate` sees the rest.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break hole,
                Err(e) => return Err(e),
            }
        };
        Ok(())
    }
}

impl SparseReader {
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.direct {
            match self.read_direct(buf) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // The kernel wants another alignment (or the last read
                    // ended mid-block): read the rest through the cache.
                    self.direct = false;
                    set_direct(&self.file, false)?;
                }
                other => return other,
            }
        }
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        let aligned = self.pos.is_multiple_of(DIRECT_ALIGN as u64)
            && (buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
            && len > 0;
        if !aligned {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let n = self.file.read_at(&mut buf[..len], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Sets or clears `O_DIRECT` on an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `file` is borrowed, so fd stays open for both calls;
    // F_GETFL and F_SETFL take and return ints, no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.plain {
            return self.read_plain(buf);
        }
        if self.pos >= self.data_end && self.pos >= self.hole_end {
            if let Err(e) = self.locate() {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    // No SEEK_DATA here: read everything.
                    self.plain = true;
                }
                return self.read_plain(buf);
            }
        }
        if self.pos < self.hole_end {
            let n = buf.len().min((self.hole_end - self.pos) as usize);
            buf[..n].fill(0);
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos < self.data_end {
            let mut want = buf.len().min((self.data_end - self.pos) as usize);
            if self.direct {
                // Whole blocks: past the region's end is the next hole (or
                // the end of the file), which reads as the zeros it holds.
                want = want.next_multiple_of(DIRECT_ALIGN).min(buf.len());
            }
            return self.read_plain(&mut buf[..want]);
        }
        // No region ahead (the end of the file, or it changed under us):
        // only a real read may say where the file ends.
        self.read_plain(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{read_in_pieces as read_all, write_pieces};

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed | 1)
            .collect()
    }

    /// Builds a file of (offset, data) pieces and `len` bytes in all.
    fn sparse_file(
        dir: &std::path::Path,
        pieces: &[(u64, Vec<u8>)],
        len: u64,
    ) -> std::path::PathBuf {
        let path = dir.join("f");
        write_pieces(&path, pieces, len);
        path
    }

    /// Whatever the layout of holes and data and whatever the read size,
    /// the bytes are exactly those of a plain read.
    #[test]
    fn reads_the_same_bytes_as_a_plain_read() {
        let tmp = tempfile::tempdir().unwrap();
        // (offset, bytes) pieces, and the file's length.
        type Layout = (Vec<(u64, Vec<u8>)>, u64);
        let layouts: Vec<Layout> = vec![
            // Data, a large hole, data, a small hole, data, a large hole
            // to the end.
            (
                vec![
                    (0, pattern(1, 10_000)),
                    (2 << 20, pattern(2, 20_000)),
                    ((2 << 20) + 20_000 + 8192, pattern(3, 5_000)),
                ],
                12 << 20,
            ),
            // A hole first, data at the very end.
            (vec![((3 << 20) - 4096, pattern(4, 4096))], 3 << 20),
            // Only a hole.
            (vec![], 5 << 20),
            // Data spread more than the look-ahead apart, small holes in it.
            (
                (0..40)
                    .map(|i| (i * (300 << 10), pattern(i as u8, 200 << 10)))
                    .collect(),
                40 * (300 << 10),
            ),
        ];
        for (pieces, len) in layouts {
            let path = sparse_file(tmp.path(), &pieces, len);
            let expected = std::fs::read(&path).unwrap();
            assert_eq!(expected.len() as u64, len);
            let r = SparseReader::new(File::open(&path).unwrap(), len);
            assert!(!r.plain, "a file with large holes is read sparsely");
            for piece in [4096, 7_000, 256 << 10, 3 << 20] {
                let r = SparseReader::new(File::open(&path).unwrap(), len);
                assert!(read_all(r, piece) == expected, "piece {piece}, len {len}");
            }
        }
    }

    #[test]
    fn a_dense_file_is_read_plainly() {
        let tmp = tempfile::tempdir().unwrap();
        let data = pattern(9, 300_000);
        let path = sparse_file(tmp.path(), &[(0, data.clone())], 300_000);
        let r = SparseReader::new(File::open(&path).unwrap(), 300_000);
        assert!(r.plain);
        assert_eq!(read_all(r, 65_536), data);
        // A small file is not even looked at, however sparse.
        let path = sparse_file(tmp.path(), &[(1000, pattern(8, 10))], MIN_HOLE - 1);
        let r = SparseReader::new(File::open(&path).unwrap(), MIN_HOLE - 1);
        assert!(r.plain);
        assert_eq!(read_all(r, 4096), std::fs::read(&path).unwrap());
    }
}
