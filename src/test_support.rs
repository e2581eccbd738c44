//! Helpers shared by the unit tests of several modules, and by the
//! integration tests (`tests/common` includes this file by path, so no test
//! code ships in the library).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Deterministic pseudo-random bytes (xorshift from `seed | 1`),
/// incompressible for zlib.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a file of `len` bytes with `pieces` of data at their offsets (the
/// rest holes), synced; the file, still open.
pub fn write_pieces(path: &Path, pieces: &[(u64, Vec<u8>)], len: u64) -> File {
    let f = File::create(path).expect("create");
    f.set_len(len).expect("set_len");
    for (at, data) in pieces {
        f.write_all_at(data, *at).expect("write");
    }
    f.sync_all().expect("sync");
    f
}

/// Drops `file`'s clean pages from the page cache, so the next read is cold.
pub fn drop_cached(file: &File) {
    // SAFETY: `file` is borrowed, so its descriptor stays open for the
    // call; posix_fadvise takes only integers and touches no memory.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Everything `reader` gives, read `piece` bytes at a time (a buffer
/// pre-filled with garbage, so bytes a reader claims but does not write
/// show up).
pub fn read_in_pieces(mut reader: impl Read, piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0xaau8; piece];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}
