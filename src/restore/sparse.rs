//! Writing restored file content sparse: aligned all-zero blocks become
//! holes.

use super::RestoreError;
use crate::view::ContentReader;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

/// Zero runs of at least this many bytes, aligned, become holes.
const SPARSE_BLOCK: usize = 4096;

/// Writes content block by block, leaving holes for aligned all-zero
/// blocks so that sparse files stay sparse. Chunk boundaries fall anywhere,
/// so a partial block is carried over to the next piece.
struct SparseWriter<'p> {
    file: &'p File,
    path: &'p Path,
    offset: u64,
    hole_pending: bool,
    carry: Vec<u8>,
}

impl SparseWriter<'_> {
    fn error(&self, source: io::Error) -> RestoreError {
        RestoreError::Write {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Writes whole blocks starting at an aligned offset (the last one may
    /// be short only at the end of the file).
    fn write_blocks(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        let mut start = 0;
        while start < data.len() {
            let is_zero = |b: &[u8]| b.iter().all(|&x| x == 0);
            let block_end = |s: usize| (s + SPARSE_BLOCK).min(data.len());
            if is_zero(&data[start..block_end(start)]) {
                self.hole_pending = true;
                start = block_end(start);
                continue;
            }
            // Coalesce a run of data blocks into one write.
            let mut end = block_end(start);
            while end < data.len() && !is_zero(&data[end..block_end(end)]) {
                end = block_end(end);
            }
            if self.hole_pending {
                let at = self.offset + start as u64;
                self.file
                    .seek(SeekFrom::Start(at))
                    .map_err(|e| self.error(e))?;
                self.hole_pending = false;
            }
            self.file
                .write_all(&data[start..end])
                .map_err(|e| self.error(e))?;
            start = end;
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    fn write(&mut self, mut piece: &[u8]) -> Result<(), RestoreError> {
        if !self.carry.is_empty() {
            let take = (SPARSE_BLOCK - self.carry.len()).min(piece.len());
            self.carry.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.carry.len() < SPARSE_BLOCK {
                return Ok(());
            }
            let block = std::mem::take(&mut self.carry);
            self.write_blocks(&block)?;
            self.carry = block;
            self.carry.clear();
        }
        let whole = piece.len() - piece.len() % SPARSE_BLOCK;
        self.write_blocks(&piece[..whole])?;
        self.carry.extend_from_slice(&piece[whole..]);
        Ok(())
    }

    /// Writes what is left, and sets the length if the content ends in a
    /// hole (the file is new, so otherwise what was written is its length).
    fn finish(mut self) -> Result<u64, RestoreError> {
        let rest = std::mem::take(&mut self.carry);
        self.write_blocks(&rest)?;
        if self.hole_pending {
            self.file.set_len(self.offset).map_err(|e| self.error(e))?;
        }
        Ok(self.offset)
    }
}

/// Copies content into `file`, a new and empty file, sparse where the data
/// has zero blocks. Returns the bytes of content.
pub(super) fn write_sparse(
    file: &File,
    mut content: ContentReader,
    path: &Path,
) -> Result<u64, RestoreError> {
    let mut writer = SparseWriter {
        file,
        path,
        offset: 0,
        hole_pending: false,
        carry: Vec::with_capacity(SPARSE_BLOCK),
    };
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
