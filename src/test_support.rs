//! Helpers shared by the unit tests of several modules.

use std::io::Read;

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
