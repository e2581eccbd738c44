//! Chunk trees: how a file's chunks are stored as git trees bup 0.33 reads
//! (BUP-FORMAT.md A.5).
//!
//! Format rules, all checked by the tests:
//! - each entry is named by its lowercase hex byte offset *relative to the
//!   start of the tree that contains it*, zero-padded to one width per tree:
//!   the number of hex digits of that tree's total size (as bup does), so git's
//!   byte order is numeric order;
//! - chunks are blobs (mode 100644), groups are subtrees (mode 40000); the last
//!   entry ends at the end of the file;
//! - a file of one chunk is that plain blob, an empty file the empty blob.
//!
//! The shape is content-defined, like bup's fanout levels: a chunk whose blob
//! id has `k * FANOUT_BITS` trailing zero bits (in its last four bytes) closes
//! the groups of levels `0..k` after it. Because offsets are relative, a
//! subtree that covers the same chunks is the same git object wherever it sits
//! in the file, so an insertion rewrites only the groups on the path to it.
//! A group of one member is promoted instead of wrapped, and no tree gets more
//! than `MAX_ENTRIES` entries (a positional cut, rare with random ids but the
//! guard for long runs of identical chunks, such as zeros).
//!
//! The builder keeps one open group per level, never the file's chunk list:
//! memory is bounded by `levels * MAX_ENTRIES` whatever the file size.
//! Trees are handed to the caller bottom-up, each only after its children.
//! Readers check trees against these rules with [`super::parse`].

use crate::object::tree::{self, Entry, Mode};
use crate::object::ObjectId;

/// Average fanout of a chunk tree is `2^FANOUT_BITS`. Frozen.
pub const FANOUT_BITS: u32 = 6;
/// Hard cap on entries per chunk tree. Frozen.
pub const MAX_ENTRIES: usize = 1024;

/// How a file's content is stored in its directory's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileObject {
    /// One chunk or none: a plain blob under the file's own name.
    Blob(ObjectId),
    /// Several chunks: a chunk tree stored as `name.bup` with mode 40000.
    Tree(ObjectId),
}

/// Tree shape parameters. Only `Shape::FROZEN` may write a repository; the
/// others exist for the parameter study.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub fanout_bits: u32,
    pub max_entries: usize,
}

impl Shape {
    pub const FROZEN: Shape = Shape {
        fanout_bits: FANOUT_BITS,
        max_entries: MAX_ENTRIES,
    };
}

/// An entry waiting in an open group: a chunk blob or a finished subtree.
#[derive(Clone, Copy, Debug)]
struct Item {
    is_tree: bool,
    id: ObjectId,
    size: u64,
}

/// Builds the chunk tree of one file from its chunks, in order.
#[derive(Debug)]
pub struct ChunkTreeBuilder {
    shape: Shape,
    /// `levels[k]` is the open group of level k: chunks at level 0, and at
    /// level k > 0 the closed groups of level k-1 (or promoted members).
    levels: Vec<Vec<Item>>,
}

impl Default for ChunkTreeBuilder {
    fn default() -> Self {
        ChunkTreeBuilder::new()
    }
}

/// Level of a chunk: how many levels of groups close after it.
fn level_of(blob: &ObjectId, fanout_bits: u32) -> usize {
    let b = blob.as_bytes();
    let tail = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    (tail.trailing_zeros() / fanout_bits) as usize
}

impl ChunkTreeBuilder {
    pub fn new() -> Self {
        ChunkTreeBuilder::with_shape(Shape::FROZEN)
    }

    /// A builder with another shape, for measurements only.
    ///
    /// # Panics
    /// If `fanout_bits` is 0 or `max_entries` < 2 (a programming error).
    pub fn with_shape(shape: Shape) -> Self {
        assert!(shape.fanout_bits >= 1 && shape.max_entries >= 2);
        ChunkTreeBuilder {
            shape,
            levels: vec![Vec::new()],
        }
    }

    /// Adds the next chunk (already written as a blob by the caller).
    /// `write_tree` stores a tree body and returns its id. A zero-length
    /// chunk adds nothing (it would collide with its successor's name).
    pub fn push<E>(
        &mut self,
        blob: ObjectId,
        len: u64,
        write_tree: &mut dyn FnMut(&[u8]) -> Result<ObjectId, E>,
    ) -> Result<(), E> {
        if len == 0 {
            return Ok(());
        }
        self.levels[0].push(Item {
            is_tree: false,
            id: blob,
            size: len,
        });
        for k in 0..level_of(&blob, self.shape.fanout_bits) {
            self.close(k, write_tree)?;
        }
        // Closing a full group adds one item to the level above, which may
        // fill that one in turn; walking upwards handles the cascade.
        let mut k = 0;
        while k < self.levels.len() {
            if self.levels[k].len() >= self.shape.max_entries {
                self.close(k, write_tree)?;
            }
            k += 1;
        }
        Ok(())
    }

    /// Closes every open group and returns what the file is stored as.
    /// For an empty file this is `FileObject::Blob(ObjectId::EMPTY_BLOB)`;
    /// the caller must make sure the empty blob exists in the repository.
    pub fn finish<E>(
        mut self,
        write_tree: &mut dyn FnMut(&[u8]) -> Result<ObjectId, E>,
    ) -> Result<FileObject, E> {
        let mut k = 0;
        while k + 1 < self.levels.len() {
            self.close(k, write_tree)?;
            k += 1;
        }
        let top = self.levels.pop().unwrap_or_default();
        Ok(match top.as_slice() {
            [] => FileObject::Blob(ObjectId::EMPTY_BLOB),
            [one] if one.is_tree => FileObject::Tree(one.id),
            [one] => FileObject::Blob(one.id),
            _ => FileObject::Tree(write_group(&top, write_tree)?.id),
        })
    }

    /// Closes the open group of level `k` into level `k + 1`.
    fn close<E>(
        &mut self,
        k: usize,
        write_tree: &mut dyn FnMut(&[u8]) -> Result<ObjectId, E>,
    ) -> Result<(), E> {
        if self.levels.len() < k + 2 {
            self.levels.resize_with(k + 2, Vec::new);
        }
        let item = match self.levels[k].as_slice() {
            [] => return Ok(()),
            [one] => *one,
            group => write_group(group, write_tree)?,
        };
        self.levels[k].clear();
        self.levels[k + 1].push(item);
        Ok(())
    }
}

/// Number of lowercase hex digits of `n` (at least 1), i.e. `len('%x' % n)`.
pub fn hex_width(n: u64) -> usize {
    (((64 - n.leading_zeros()) as usize).div_ceil(4)).max(1)
}

/// Encodes a group as a chunk tree and hands it to `write_tree`.
fn write_group<E>(
    group: &[Item],
    write_tree: &mut dyn FnMut(&[u8]) -> Result<ObjectId, E>,
) -> Result<Item, E> {
    let total: u64 = group.iter().map(|i| i.size).sum();
    let width = hex_width(total);
    let mut offset = 0u64;
    let mut entries: Vec<Entry> = group
        .iter()
        .map(|item| {
            let name = format!("{offset:0width$x}").into_bytes();
            offset += item.size;
            Entry {
                mode: if item.is_tree { Mode::Tree } else { Mode::Blob },
                name,
                id: item.id,
            }
        })
        .collect();
    let id = write_tree(&tree::encode(&mut entries))?;
    Ok(Item {
        is_tree: true,
        id,
        size: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{hash_object, Kind};

    /// Memory stays bounded whatever the file size: every open group stays
    /// under the cap and the number of levels grows only logarithmically,
    /// also for long runs of one repeated chunk (zeros in a disk image).
    #[test]
    fn open_groups_stay_bounded() {
        let mut trees = 0u64;
        let mut w = |body: &[u8]| -> Result<ObjectId, ()> {
            trees += 1;
            Ok(hash_object(Kind::Tree, body))
        };
        let zero = hash_object(Kind::Blob, &[0u8; 64]);
        let mut b = ChunkTreeBuilder::new();
        for i in 0u64..200_000 {
            let id = if i % 3 == 0 {
                zero
            } else {
                hash_object(Kind::Blob, &i.to_le_bytes())
            };
            b.push(id, 4096, &mut w).expect("push");
            assert!(b.levels.iter().all(|l| l.len() < MAX_ENTRIES));
            assert!(b.levels.len() <= 8, "levels {}", b.levels.len());
        }
        assert!(matches!(b.finish(&mut w), Ok(FileObject::Tree(_))));
        // About one group per 2^FANOUT_BITS chunks, plus their parents.
        assert!(trees > 200_000 / 128, "{trees} trees");
    }

    #[test]
    fn level_comes_from_trailing_zero_bits() {
        let mut id = ObjectId([0xff; 20]);
        assert_eq!(level_of(&id, 4), 0);
        id.0[19] = 0xf0;
        assert_eq!(level_of(&id, 4), 1);
        id.0[19] = 0x00;
        id.0[18] = 0x10;
        assert_eq!(level_of(&id, 4), 3);
        id.0[16..].fill(0);
        assert_eq!(level_of(&id, 4), 8);
    }
}
