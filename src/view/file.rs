//! File contents as a stream: a plain blob, or the blobs of a chunk tree in
//! order (entry names are offsets, and git order is numeric order, so a
//! depth-first walk yields the file). Memory is one blob plus one tree per
//! level.

use crate::object::tree::{self, Mode};
use crate::object::{Kind, ObjectId};
use crate::repo::ObjectStore;
use std::io::{self, Read};

/// What a file's content is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Blob(ObjectId),
    ChunkTree(ObjectId),
}

pub struct ContentReader<'s> {
    store: &'s ObjectStore,
    /// Pending entries per tree level, reversed so the next one is `pop()`.
    stack: Vec<Vec<(Mode, ObjectId)>>,
    current: Vec<u8>,
    pos: usize,
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl<'s> ContentReader<'s> {
    pub fn new(store: &'s ObjectStore, content: Content) -> ContentReader<'s> {
        let first = match content {
            Content::Blob(id) => (Mode::Blob, id),
            Content::ChunkTree(id) => (Mode::Tree, id),
        };
        ContentReader {
            store,
            stack: vec![vec![first]],
            current: Vec::new(),
            pos: 0,
        }
    }

    /// Loads the next blob; false at the end.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(false);
            };
            let Some((mode, id)) = level.pop() else {
                self.stack.pop();
                continue;
            };
            let object = self.store.read(&id).map_err(io_error)?;
            match (mode.is_tree(), object.kind) {
                (true, Kind::Tree) => {
                    let mut entries: Vec<(Mode, ObjectId)> = tree::decode(&object.data)
                        .map_err(|e| io_error(format!("chunk tree {id}: {e}")))?
                        .into_iter()
                        .map(|e| (e.mode, e.id))
                        .collect();
                    entries.reverse();
                    self.stack.push(entries);
                }
                (false, Kind::Blob) => {
                    self.current = object.data;
                    self.pos = 0;
                    return Ok(true);
                }
                _ => {
                    return Err(io_error(format!(
                        "object {id} is a {}, but a file's content must be blobs and trees",
                        object.kind.name()
                    )))
                }
            }
        }
    }

    /// The next piece of content, or an empty slice at the end. Lets
    /// callers consume whole blobs without an extra copy.
    pub fn next_piece(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.current.len() {
            if !self.advance()? {
                return Ok(&[]);
            }
        }
        let piece = &self.current[self.pos..];
        self.pos = self.current.len();
        Ok(piece)
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if !self.advance()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The size of a file without reading its data: bup's rule of following the
/// last entry of each chunk-tree level and summing the offsets.
pub fn content_size(store: &ObjectStore, content: Content) -> Result<u64, crate::repo::Error> {
    let mut total = 0u64;
    let mut id = match content {
        Content::Blob(id) => return Ok(store.read_header(&id)?.1),
        Content::ChunkTree(id) => id,
    };
    loop {
        let object = store.read(&id)?;
        let entries = tree::decode(&object.data).map_err(|e| crate::repo::Error::Corrupt {
            id,
            pack: None,
            detail: e.to_string(),
        })?;
        let Some(last) = entries.last() else {
            return Ok(total);
        };
        let offset = std::str::from_utf8(&last.name)
            .ok()
            .and_then(|n| u64::from_str_radix(n, 16).ok())
            .unwrap_or(0);
        total += offset;
        if last.mode.is_tree() {
            id = last.id;
        } else {
            return Ok(total + store.read_header(&last.id)?.1);
        }
    }
}
