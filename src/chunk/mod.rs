//! Content-defined chunking of file data, the shaping of a file's chunks
//! into bup-readable chunk trees (`tree`), and the one strict reading of
//! those trees every reader shares (`parse`).
//!
//! This module owns the *frozen* part of the repository format that decides
//! where a file is cut: FastCDC (the `fastcdc` crate's v2020 algorithm with its
//! default gear table, seed 0) with the constants below. Two saves of the same
//! bytes must cut at the same places forever, or deduplication against older
//! snapshots silently stops working. The golden vectors in `tests` pin the
//! cut points and blob ids; if they fail, the format changed — do not "fix"
//! the vectors. DESIGN-chunking.md records how the constants were chosen.
//!
//! Where the `max` bytes after a chunk's start are all zero, the cut is
//! taken from one computed over `max` zeros instead of running the gear
//! hash (FastCDC never looks further): the same cut, found for the cost of
//! checking the bytes are zero (tested against whole-buffer FastCDC).

pub mod parse;
pub mod tree;

#[cfg(test)]
mod tests;

use fastcdc::v2020::{self, Normalization};
use std::io::{self, Read};

/// No chunk is shorter than this, except the last chunk of a file.
pub const MIN_SIZE: u32 = 4 * 1024;
/// The target average chunk size.
pub const AVG_SIZE: u32 = 8 * 1024;
/// No chunk is longer than this (a forced cut, e.g. inside runs of zeros).
pub const MAX_SIZE: u32 = 64 * 1024;
/// FastCDC normalisation level: how strongly chunk sizes are pulled towards
/// `AVG_SIZE` (the masks are "avg bits ± level").
pub const NORMALIZATION: u32 = 2;

/// Size of the read buffer (at least twice the maximum chunk). Small
/// enough that what a read copies in is still in the core's L2 cache when
/// the cut search, SHA-1 and the copy into the pipeline go over it: with
/// 1 MiB reads a first save of 1.7 GB spent ~2 s more system time
/// (4.4-4.6 s vs 1.7-2.7 s, same user time).
const READ_BUF: usize = 256 << 10;

/// Chunking parameters. Only the constants above are ever used to write a
/// repository; other values exist for the parameter study
/// (examples/chunk_study.rs) and must not reach a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    /// 0..=3, as in `fastcdc::v2020::Normalization`.
    pub normalization: u32,
}

impl Params {
    /// The frozen parameters every repository uses.
    pub const FROZEN: Params = Params {
        min: MIN_SIZE,
        avg: AVG_SIZE,
        max: MAX_SIZE,
        normalization: NORMALIZATION,
    };
}

/// Failure of `Splitter::split`: either reading the input or the caller's
/// chunk sink failed. Both keep the original error.
#[derive(Debug, thiserror::Error)]
pub enum SplitError<E> {
    #[error("reading file data to chunk: {0}")]
    Read(#[source] io::Error),
    #[error("storing a chunk: {0}")]
    Sink(#[source] E),
}

/// A streaming FastCDC splitter. It owns one buffer of `2 * max` bytes that
/// is reused for every file, so splitting allocates nothing per chunk.
///
/// Streaming gives exactly the cut points FastCDC would give over the whole
/// file in memory: a cut is searched only when at least `max` bytes past the
/// chunk start are buffered (or the input ended), and FastCDC never looks
/// further than `max` bytes ahead.
pub struct Splitter {
    params: Params,
    mask_s: u64,
    mask_l: u64,
    /// Where FastCDC cuts `max` zero bytes. FastCDC looks at no more than
    /// `max` bytes past a chunk's start, so wherever those are all zero
    /// (holes and zeroed blocks of disk images) this is the cut, found
    /// without running the gear hash over them.
    zero_cut: usize,
    buf: Box<[u8]>,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter::new()
    }
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter::with_params(Params::FROZEN)
    }

    /// A splitter with other parameters, for measurements only.
    ///
    /// # Panics
    /// If the parameters are outside what FastCDC accepts (a programming
    /// error, never a data error): `min <= avg <= max`, all even, `min >= 64`,
    /// `avg >= 256`, `max` in 1 KiB..=16 MiB, normalisation 0..=3.
    pub fn with_params(params: Params) -> Splitter {
        let Params {
            min,
            avg,
            max,
            normalization,
        } = params;
        assert!(
            min >= 64
                && avg >= 256
                && (1024..=16 << 20).contains(&max)
                && min <= avg
                && avg <= max
                && min % 2 == 0
                && avg % 2 == 0
                && max % 2 == 0
                && normalization <= 3,
            "invalid chunking parameters {params:?}"
        );
        let level = match normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = v2020::select_masks(avg as usize, level);
        let mut splitter = Splitter {
            params,
            mask_s,
            mask_l,
            zero_cut: 0,
            // Reads of several chunks: few syscalls, and the tail moved
            // down after each fill (`copy_within`, under `max`) is a small
            // share. Not a chunking parameter: cut points depend only on
            // the bytes.
            buf: vec![0u8; (2 * max as usize).max(READ_BUF)].into_boxed_slice(),
        };
        // The buffer is still all zeros.
        splitter.zero_cut = splitter.cut(&splitter.buf[..max as usize]);
        splitter
    }

    pub fn params(&self) -> Params {
        self.params
    }

    /// Length of the first chunk of `data`, treating `data` as everything
    /// that is left of the file (or at least `max` bytes of it).
    fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (_, len) = v2020::cut(
            data,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        // `cut` returns at least min(data.len(), 1) for non-empty data; guard
        // anyway so a future change can never make us loop forever.
        len.clamp(1, data.len())
    }

    /// Reads `reader` to EOF and calls `on_chunk` with each chunk in order.
    /// Returns the total number of bytes read. An empty input yields no
    /// chunk at all (callers store the empty blob).
    pub fn split<R: Read, E>(
        &mut self,
        mut reader: R,
        mut on_chunk: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, SplitError<E>> {
        let max = self.params.max as usize;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            let mut total = 0u64;
            let (mut start, mut end) = (0usize, 0usize);
            let mut eof = false;
            loop {
                if !eof {
                    let n = read_full(&mut reader, &mut buf[end..]).map_err(SplitError::Read)?;
                    eof = end + n < buf.len();
                    end += n;
                    total += n as u64;
                }
                // Cut while the cut is final: `max` bytes are visible, or
                // the rest of the file is.
                while end - start >= max || (eof && end > start) {
                    let len = if end - start >= max && is_zero(&buf[start..start + max]) {
                        self.zero_cut
                    } else {
                        self.cut(&buf[start..end])
                    };
                    on_chunk(&buf[start..start + len]).map_err(SplitError::Sink)?;
                    start += len;
                }
                if eof {
                    return Ok(total);
                }
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
        })();
        self.buf = buf;
        result
    }
}

/// Reads until `buf` is full or the input ends: the number of bytes read,
/// short only at the end of the input.
pub fn read_full(mut reader: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Whether every byte of `data` is zero. Other data is usually told apart
/// by its first bytes; zeros are checked in blocks the compiler vectorises.
pub fn is_zero(data: &[u8]) -> bool {
    let (head, rest) = data.split_at(data.len().min(16));
    head.iter().all(|&b| b == 0)
        && rest
            .chunks(512)
            .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}
