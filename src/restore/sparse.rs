//! Writing restored file content sparse: aligned all-zero blocks become
//! holes. Writes are positioned (`pwrite`), so several threads can write
//! parts of one file at once.

use super::RestoreError;
use crate::view::ContentReader;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Zero runs of at least this many bytes, aligned, become holes.
const SPARSE_BLOCK: u64 = 4096;

/// Writes content block by block from some offset of a new file, leaving
/// holes for all-zero blocks so that sparse files stay sparse. Blocks are
/// aligned to the file, not to the content's pieces: chunk boundaries fall
/// anywhere, so a partial block is carried over to the next piece.
struct SparseWriter<'p> {
    file: &'p File,
    path: &'p Path,
    /// Where the first byte of `carry` goes in the file.
    offset: u64,
    /// The start of the block holding `offset`, not written yet.
    carry: Vec<u8>,
    /// The last block was all zeros and left out.
    ends_in_hole: bool,
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&x| x == 0)
}

impl SparseWriter<'_> {
    fn new<'p>(file: &'p File, path: &'p Path, offset: u64) -> SparseWriter<'p> {
        SparseWriter {
            file,
            path,
            offset,
            carry: Vec::with_capacity(SPARSE_BLOCK as usize),
            ends_in_hole: false,
        }
    }

    fn error(&self, source: io::Error) -> RestoreError {
        RestoreError::Write {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Writes `data` at file offset `at`, leaving out its all-zero blocks
    /// (cut at multiples of [`SPARSE_BLOCK`] of the file's offsets).
    fn write_blocks(&mut self, at: u64, data: &[u8]) -> Result<(), RestoreError> {
        let block_end = |s: usize| {
            let into = (at + s as u64) % SPARSE_BLOCK;
            (s + (SPARSE_BLOCK - into) as usize).min(data.len())
        };
        let mut start = 0;
        while start < data.len() {
            if is_zero(&data[start..block_end(start)]) {
                self.ends_in_hole = true;
                start = block_end(start);
                continue;
            }
            // Coalesce a run of data blocks into one write.
            let mut end = block_end(start);
            while end < data.len() && !is_zero(&data[end..block_end(end)]) {
                end = block_end(end);
            }
            self.file
                .write_all_at(&data[start..end], at + start as u64)
                .map_err(|e| self.error(e))?;
            self.ends_in_hole = false;
            start = end;
        }
        Ok(())
    }

    fn write(&mut self, mut piece: &[u8]) -> Result<(), RestoreError> {
        let into = (self.offset + self.carry.len() as u64) % SPARSE_BLOCK;
        if !self.carry.is_empty() || into != 0 {
            // Complete the block under way first.
            let need = (SPARSE_BLOCK - into) as usize;
            let take = need.min(piece.len());
            self.carry.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if take < need {
                return Ok(());
            }
            let block = std::mem::take(&mut self.carry);
            self.write_blocks(self.offset, &block)?;
            self.offset += block.len() as u64;
            self.carry = block;
            self.carry.clear();
        }
        let whole = piece.len() - piece.len() % SPARSE_BLOCK as usize;
        self.write_blocks(self.offset, &piece[..whole])?;
        self.offset += whole as u64;
        self.carry.extend_from_slice(&piece[whole..]);
        Ok(())
    }

    /// Writes what is left; returns where the content ended.
    fn finish(mut self) -> Result<(u64, bool), RestoreError> {
        let rest = std::mem::take(&mut self.carry);
        self.write_blocks(self.offset, &rest)?;
        Ok((self.offset + rest.len() as u64, self.ends_in_hole))
    }
}

/// Copies `content` into `file` from offset `at`, leaving zero blocks as
/// holes. Returns where the content ended and whether it ended in a hole.
fn copy_sparse(
    file: &File,
    mut content: ContentReader,
    path: &Path,
    at: u64,
) -> Result<(u64, bool), RestoreError> {
    let mut writer = SparseWriter::new(file, path, at);
    loop {
        let piece = content.next_piece().map_err(|source| RestoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if piece.is_empty() {
            return writer.finish();
        }
        writer.write(piece)?;
    }
}

/// Copies content into `file`, a new and empty file, sparse where the data
/// has zero blocks. Returns the bytes of content.
pub(super) fn write_sparse(
    file: &File,
    content: ContentReader,
    path: &Path,
) -> Result<u64, RestoreError> {
    let (end, ends_in_hole) = copy_sparse(file, content, path, 0)?;
    // The file is new: what was written is its length, unless the
    // content ends in a hole.
    if ends_in_hole {
        file.set_len(end).map_err(|source| RestoreError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(end)
}

/// Copies one part of a file's content (see [`ContentReader::part`]) into
/// `file` at offset `at`, sparse. The file must be new and already of its
/// final length, so that the holes left read as zeros. Returns the bytes
/// of content.
pub(super) fn write_part(
    file: &File,
    content: ContentReader,
    path: &Path,
    at: u64,
) -> Result<u64, RestoreError> {
    let (end, _) = copy_sparse(file, content, path, at)?;
    Ok(end - at)
}
