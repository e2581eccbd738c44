//! Reading chunk trees: the one definition of a valid chunk-tree level, used
//! by every reader (the streaming reader behind `cat-file`, restore and
//! `.bupm`, the mount's reads at an offset, and file sizes), so that they
//! all accept exactly the same trees and fail on the others with the same
//! error.
//!
//! A level is valid when it is what bup 0.33's `_make_shalist` and our
//! builder ([`super::tree`]) write, and nothing else:
//! - at least one entry; each a blob (100644) or a subtree (40000);
//! - every name is lowercase hex, all names of one tree equally wide (so
//!   git's byte order is numeric order), and that width is the number of hex
//!   digits of the tree's total size (`len('%x' % total)`);
//! - the first name is offset 0 and offsets strictly ascend;
//! - every entry is exactly as long as the gap to the next offset, the last
//!   one as long as what is left of the tree's range: for a subtree the gap
//!   its parent gives it, for the top level the file's size.
//!
//! [`ChunkLevel::parse`] checks what a tree says about itself and is done
//! once per tree (the mount caches the result); [`ChunkLevel::fit`] checks it
//! against the range its parent gives it (the same subtree id may appear at
//! several places, always with the same length if the repository is sound).
//! Blob lengths are checked by the readers against [`ChunkLevel::span`].
//! The top level's range is the file's size: given to the reader, or found
//! first by bup's rule with [`resolve_last_path`], so that the stream and the
//! mount check every level against a known range in the same order.
//! Offsets come from untrusted names: arithmetic on them is checked, and a
//! violation is a [`ChunkTreeError`] naming the tree and the entry, never a
//! guess. Nesting deeper than [`MAX_DEPTH`] is an error, which also ends any
//! cycle a damaged index could make.

use super::tree::hex_width;
use crate::object::tree::{self, Mode, TreeError};
use crate::object::{Kind, ObjectId};

/// Deepest nesting of chunk trees a reader follows: the top level is depth
/// 0, so at most 64 levels. Real trees have a handful even for terabytes
/// (fanout 64 for rewind, 16 for bup).
pub const MAX_DEPTH: usize = 64;

/// Longest entry name: 16 hex digits hold any u64 offset.
const MAX_NAME: usize = 16;

/// One entry of a level, its offset relative to the start of its tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelEntry {
    pub offset: u64,
    pub is_tree: bool,
    pub id: ObjectId,
}

/// A parsed chunk-tree level: at least one entry, offsets strictly
/// ascending from 0, every name `width` lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLevel {
    entries: Vec<LevelEntry>,
    width: usize,
}

/// A chunk tree that is not one bup or rewind could have written.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("chunk tree {tree}: {problem}")]
pub struct ChunkTreeError {
    pub tree: ObjectId,
    pub problem: Problem,
}

/// What is wrong with a chunk tree; `name` is the entry's stored name.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Decode(TreeError),
    #[error("has no entries")]
    Empty,
    #[error("entry {name:?} has mode {mode}, but chunk trees hold only blobs (100644) and trees (40000)")]
    Mode { name: String, mode: String },
    #[error("entry {name:?} is not an offset of 1 to 16 lowercase hex digits")]
    NotHex { name: String },
    #[error("entry {name:?} is not as wide as the first entry ({width} digits)")]
    UnevenWidth { name: String, width: usize },
    #[error("first entry {name:?} is not offset 0")]
    FirstNotZero { name: String },
    #[error("entry {name:?} does not come after {previous:?}")]
    NotAscending { name: String, previous: String },
    #[error("entry {name:?} starts at or past the end of its tree ({len:#x} bytes)")]
    PastEnd { name: String, len: u64 },
    #[error(
        "names are {width} hex digits wide, but a tree of {len:#x} bytes has names {want} wide"
    )]
    WrongWidth { width: usize, len: u64, want: usize },
    #[error("entry {name:?} is a blob of {actual} bytes, but its offsets leave {expected}")]
    Length {
        name: String,
        actual: u64,
        expected: u64,
    },
    #[error("entry {name:?} is an empty blob at the end of the file")]
    EmptyLast { name: String },
    #[error("entry {name:?} makes the file larger than 2^64 bytes")]
    Overflow { name: String },
    #[error("entry {name:?} should be a {expected}, but object {id} is a {actual}")]
    Kind {
        name: String,
        id: ObjectId,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("entry {name:?} nests chunk trees deeper than {MAX_DEPTH} levels")]
    TooDeep { name: String },
}

impl ChunkLevel {
    /// Parses the body of chunk tree `tree`, checking everything the tree
    /// says about itself (not yet its length: see [`fit`](Self::fit)).
    pub fn parse(tree: &ObjectId, body: &[u8]) -> Result<ChunkLevel, ChunkTreeError> {
        let fail = |problem| ChunkTreeError {
            tree: *tree,
            problem,
        };
        let raw = tree::decode(body).map_err(|e| fail(Problem::Decode(e)))?;
        let width = match raw.first() {
            Some(first) => first.name.len(),
            None => return Err(fail(Problem::Empty)),
        };
        let mut entries: Vec<LevelEntry> = Vec::with_capacity(raw.len());
        for e in &raw {
            let name = || String::from_utf8_lossy(&e.name).into_owned();
            let is_tree = match e.mode {
                Mode::Blob => false,
                Mode::Tree => true,
                other => {
                    return Err(fail(Problem::Mode {
                        name: name(),
                        mode: String::from_utf8_lossy(other.as_octal()).into_owned(),
                    }))
                }
            };
            let offset =
                parse_hex(&e.name).ok_or_else(|| fail(Problem::NotHex { name: name() }))?;
            if e.name.len() != width {
                return Err(fail(Problem::UnevenWidth {
                    name: name(),
                    width,
                }));
            }
            match entries.last() {
                None if offset != 0 => return Err(fail(Problem::FirstNotZero { name: name() })),
                Some(prev) if offset <= prev.offset => {
                    return Err(fail(Problem::NotAscending {
                        name: name(),
                        previous: format!("{:0width$x}", prev.offset),
                    }))
                }
                _ => {}
            }
            entries.push(LevelEntry {
                offset,
                is_tree,
                id: e.id,
            });
        }
        Ok(ChunkLevel { entries, width })
    }

    pub fn entries(&self) -> &[LevelEntry] {
        &self.entries
    }

    /// The stored name of entry `i` (names are canonical, so it is rebuilt
    /// from the offset rather than kept).
    pub fn name(&self, i: usize) -> String {
        let offset = self.entries.get(i).map_or(0, |e| e.offset);
        format!("{offset:0w$x}", w = self.width)
    }

    /// Checks that this level spans exactly `len` bytes as far as its names
    /// tell: the last entry starts inside, and the names have bup's width
    /// for `len`. The entries' own lengths are checked as they are read.
    pub fn fit(&self, tree: &ObjectId, len: u64) -> Result<(), ChunkTreeError> {
        let last = self.entries.len().saturating_sub(1);
        let problem = if self.entries.get(last).is_none_or(|e| e.offset >= len) {
            Problem::PastEnd {
                name: self.name(last),
                len,
            }
        } else if self.width != hex_width(len) {
            Problem::WrongWidth {
                width: self.width,
                len,
                want: hex_width(len),
            }
        } else {
            return Ok(());
        };
        Err(ChunkTreeError {
            tree: *tree,
            problem,
        })
    }

    /// The length entry `i` must have in a level of `len` bytes (which
    /// [`fit`](Self::fit) accepted): the gap to the next offset, for the
    /// last entry what is left of `len`.
    pub fn span(&self, i: usize, len: u64) -> u64 {
        let offset = self.entries.get(i).map_or(len, |e| e.offset);
        match self.entries.get(i + 1) {
            // Strictly ascending, checked in parse.
            Some(next) => next.offset - offset,
            None => len.saturating_sub(offset),
        }
    }

    /// Checks that blob entry `i`, `actual` bytes long, fills its span.
    pub fn check_blob(
        &self,
        tree: &ObjectId,
        i: usize,
        actual: u64,
        expected: u64,
    ) -> Result<(), ChunkTreeError> {
        if actual == expected {
            return Ok(());
        }
        Err(ChunkTreeError {
            tree: *tree,
            problem: Problem::Length {
                name: self.name(i),
                actual,
                expected,
            },
        })
    }

    /// Checks that entry `i` may be descended into from a level at `depth`
    /// (the top level is 0).
    pub fn check_depth(
        &self,
        tree: &ObjectId,
        i: usize,
        depth: usize,
    ) -> Result<(), ChunkTreeError> {
        if depth + 1 < MAX_DEPTH {
            return Ok(());
        }
        Err(ChunkTreeError {
            tree: *tree,
            problem: Problem::TooDeep { name: self.name(i) },
        })
    }

    /// The error for entry `i` whose object is of the wrong kind.
    pub fn wrong_kind(&self, tree: &ObjectId, i: usize, actual: Kind) -> ChunkTreeError {
        let entry = self.entries.get(i);
        ChunkTreeError {
            tree: *tree,
            problem: Problem::Kind {
                name: self.name(i),
                id: entry.map_or(*tree, |e| e.id),
                expected: if entry.is_some_and(|e| e.is_tree) {
                    "tree"
                } else {
                    "blob"
                },
                actual: actual.name(),
            },
        }
    }
}

/// The file's size by bup's rule: the levels on the last path (top first,
/// each ending in the next, the last ending in a blob of `final_blob`
/// bytes) get their lengths from the bottom up, each checked with
/// [`ChunkLevel::fit`]. Every reader finds a chunked file's size this way
/// (or is given it) before reading, so that they all fail alike.
pub fn resolve_last_path<'a>(
    path: impl DoubleEndedIterator<Item = (&'a ObjectId, &'a ChunkLevel)>,
    final_blob: u64,
) -> Result<u64, ChunkTreeError> {
    let mut len = final_blob;
    let mut first = true;
    for (tree, level) in path.rev() {
        let i = level.entries.len().saturating_sub(1);
        let fail = |problem| ChunkTreeError {
            tree: *tree,
            problem,
        };
        if first && len == 0 {
            return Err(fail(Problem::EmptyLast {
                name: level.name(i),
            }));
        }
        first = false;
        let offset = level.entries.get(i).map_or(0, |e| e.offset);
        len = offset.checked_add(len).ok_or_else(|| {
            fail(Problem::Overflow {
                name: level.name(i),
            })
        })?;
        level.fit(tree, len)?;
    }
    Ok(len)
}

/// A name as bup writes it: 1 to 16 lowercase hex digits.
fn parse_hex(name: &[u8]) -> Option<u64> {
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let mut v = 0u64;
    for &b in name {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        // At most 16 digits: cannot overflow.
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tree::Entry;

    const T: ObjectId = ObjectId([7; 20]);

    fn body(entries: &[(Mode, &str)]) -> Vec<u8> {
        let mut es: Vec<Entry> = entries
            .iter()
            .map(|(mode, name)| Entry {
                mode: *mode,
                name: name.as_bytes().to_vec(),
                id: ObjectId([1; 20]),
            })
            .collect();
        tree::encode(&mut es)
    }

    fn blobs(names: &[&str]) -> Vec<u8> {
        body(&names.iter().map(|n| (Mode::Blob, *n)).collect::<Vec<_>>())
    }

    fn problem(r: Result<ChunkLevel, ChunkTreeError>) -> Problem {
        r.expect_err("must be rejected").problem
    }

    #[test]
    fn what_bup_and_rewind_write_parses() {
        let level = ChunkLevel::parse(&T, &blobs(&["00", "10", "2a"])).expect("valid");
        let offsets: Vec<u64> = level.entries().iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [0, 0x10, 0x2a]);
        assert_eq!(level.name(2), "2a");
        level.fit(&T, 0x30).expect("fits 0x30");
        assert_eq!(level.span(0, 0x30), 0x10);
        assert_eq!(level.span(2, 0x30), 6);
        // A one-byte file in one blob: width 1.
        ChunkLevel::parse(&T, &blobs(&["0"]))
            .expect("valid")
            .fit(&T, 1)
            .expect("fits");
    }

    #[test]
    fn out_of_order_names_are_rejected() {
        // git order is byte order: uneven widths sort out of numeric order,
        // and a hand-made tree may be unsorted altogether.
        let mut raw = blobs(&["00"]);
        raw.extend_from_slice(&blobs(&["20"]));
        raw.extend_from_slice(&blobs(&["10"]));
        assert!(matches!(
            problem(ChunkLevel::parse(&T, &raw)),
            Problem::NotAscending { name, previous } if name == "10" && previous == "20"
        ));
        let mut dup = blobs(&["00", "10"]);
        dup.extend_from_slice(&blobs(&["10"]));
        assert!(matches!(
            problem(ChunkLevel::parse(&T, &dup)),
            Problem::NotAscending { .. }
        ));
    }

    #[test]
    fn non_hex_uppercase_and_overlong_names_are_rejected() {
        for bad in ["0x", "0A", " 0", "+0", "0_0", "00000000000000000"] {
            let raw = blobs(&[bad]);
            assert!(
                matches!(problem(ChunkLevel::parse(&T, &raw)), Problem::NotHex { .. }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            problem(ChunkLevel::parse(&T, &blobs(&["00", "1a", "1B"]))),
            Problem::NotHex { name } if name == "1B"
        ));
    }

    #[test]
    fn uneven_and_wrong_widths_are_rejected() {
        assert!(matches!(
            problem(ChunkLevel::parse(&T, &blobs(&["00", "010"]))),
            Problem::UnevenWidth { width: 2, .. }
        ));
        let level = ChunkLevel::parse(&T, &blobs(&["000", "010"])).expect("parses");
        // 0x20 bytes would be named with 2 digits.
        assert!(matches!(
            level.fit(&T, 0x20).expect_err("too wide").problem,
            Problem::WrongWidth {
                width: 3,
                want: 2,
                ..
            }
        ));
        level.fit(&T, 0x100).expect("3 digits for 0x100");
    }

    #[test]
    fn gaps_start_and_end_are_checked() {
        assert!(matches!(
            problem(ChunkLevel::parse(&T, &blobs(&["01", "10"]))),
            Problem::FirstNotZero { .. }
        ));
        assert_eq!(problem(ChunkLevel::parse(&T, &[])), Problem::Empty);
        let level = ChunkLevel::parse(&T, &blobs(&["00", "10"])).expect("parses");
        assert!(matches!(
            level.fit(&T, 0x10).expect_err("last entry empty").problem,
            Problem::PastEnd { len: 0x10, .. }
        ));
        // A gap shows as a blob shorter than its span.
        let e = level.check_blob(&T, 0, 0x0c, 0x10).expect_err("gap");
        assert_eq!(
            e.to_string(),
            format!("chunk tree {T}: entry \"00\" is a blob of 12 bytes, but its offsets leave 16")
        );
    }

    #[test]
    fn only_blobs_and_trees_are_entries() {
        for mode in [Mode::Commit, Mode::Symlink, Mode::BlobExecutable] {
            let raw = body(&[(Mode::Blob, "0"), (mode, "1")]);
            assert!(matches!(
                problem(ChunkLevel::parse(&T, &raw)),
                Problem::Mode { name, .. } if name == "1"
            ));
        }
    }

    #[test]
    fn last_path_sums_are_checked_for_overflow() {
        let top = ChunkLevel::parse(
            &T,
            &body(&[
                (Mode::Blob, "0000000000000000"),
                (Mode::Tree, "ffffffffffffffff"),
            ]),
        )
        .expect("parses");
        let sub = ChunkLevel::parse(&T, &blobs(&["0", "8"])).expect("parses");
        let path = [(&T, &top), (&T, &sub)];
        assert!(matches!(
            resolve_last_path(path.iter().map(|(a, b)| (*a, *b)), 1)
                .expect_err("overflow")
                .problem,
            Problem::Overflow { name } if name == "ffffffffffffffff"
        ));
        let ok = [(&T, &sub)];
        assert_eq!(
            resolve_last_path(ok.iter().map(|(a, b)| (*a, *b)), 7),
            Ok(15)
        );
        assert!(matches!(
            resolve_last_path(ok.iter().map(|(a, b)| (*a, *b)), 0)
                .expect_err("empty")
                .problem,
            Problem::EmptyLast { .. }
        ));
    }

    #[test]
    fn depth_is_bounded() {
        let level = ChunkLevel::parse(&T, &body(&[(Mode::Tree, "0")])).expect("parses");
        level.check_depth(&T, 0, MAX_DEPTH - 2).expect("within");
        assert!(matches!(
            level
                .check_depth(&T, 0, MAX_DEPTH - 1)
                .expect_err("too deep")
                .problem,
            Problem::TooDeep { .. }
        ));
    }
}
