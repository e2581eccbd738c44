//! File contents as a stream: a plain blob, or the blobs of a chunk tree in
//! order. Used by `cat-file`, restore and `.bupm` reading; the mount reads
//! at offsets instead ([`super::random`]). Both hold chunk trees to the one
//! definition in [`crate::chunk::parse`] and fail with the same error on the
//! same damage: the stream finds the file's size first (bup's rule, as the
//! mount does), fits each level to its range as it descends, and checks
//! each blob against the gap its offsets leave before handing out any of
//! its bytes. Memory is one blob plus one tree per level.

use super::ViewError;
use crate::chunk::parse::{resolve_last_path, ChunkLevel, ChunkTreeError, LevelEntry};
use crate::object::{Kind, ObjectId};
use crate::repo::Objects;
use std::io::{self, Read};
use std::sync::Arc;

/// What a file's content is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Blob(ObjectId),
    ChunkTree(ObjectId),
}

impl From<ChunkTreeError> for ViewError {
    fn from(e: ChunkTreeError) -> ViewError {
        ViewError::Malformed {
            id: e.tree,
            detail: format!("chunk tree {}", e.problem),
        }
    }
}

/// One open chunk-tree level of a [`ContentReader`].
struct Frame {
    tree: ObjectId,
    level: ChunkLevel,
    /// Index of the next entry to read.
    next: usize,
    /// Index past the last entry to read: the level's length, except
    /// for the top level of a [`ContentReader::part`].
    end: usize,
    /// Length of this level's data: the file's size for the top level,
    /// else the gap its parent's offsets leave it.
    len: u64,
}

pub struct ContentReader<'s> {
    store: &'s dyn Objects,
    /// The content still to open; `None` once it is.
    root: Option<Content>,
    /// Open levels, the top level first.
    stack: Vec<Frame>,
    current: Vec<u8>,
    pos: usize,
    /// The size the file's metadata gives; the content must have it.
    recorded: Option<u64>,
    /// Depth of the first level on the stack (not 0 for a piece).
    depth_base: usize,
}

fn io_error(e: impl Into<ViewError>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.into())
}

/// Reads chunk tree `id` (whose entry `wrong_kind` describes it, if it is
/// not a tree) and parses it.
fn read_level(
    store: &dyn Objects,
    id: &ObjectId,
    wrong_kind: impl FnOnce(Kind) -> ViewError,
) -> Result<ChunkLevel, ViewError> {
    let object = store.read(id)?;
    if object.kind != Kind::Tree {
        return Err(wrong_kind(object.kind));
    }
    Ok(ChunkLevel::parse(id, &object.data)?)
}

/// The content's size must be the one the file's metadata records, if it
/// records one.
fn check_recorded(recorded: Option<u64>, id: ObjectId, content: u64) -> Result<(), ViewError> {
    match recorded {
        Some(recorded) if recorded != content => Err(ViewError::SizeDisagrees {
            id,
            content,
            recorded,
        }),
        _ => Ok(()),
    }
}

/// Tells the store which objects a level's entries will need, in order
/// (a server streams them; a local store reads ahead).
fn announce(store: &dyn Objects, level: &ChunkLevel) {
    let ids: Vec<ObjectId> = level.entries().iter().map(|e| e.id).collect();
    store.will_need(&ids);
}

fn root_kind(id: ObjectId, expected: &'static str) -> impl FnOnce(Kind) -> ViewError {
    move |_| ViewError::WrongKind { id, expected }
}

impl<'s> ContentReader<'s> {
    pub fn new(store: &'s dyn Objects, content: Content) -> ContentReader<'s> {
        ContentReader {
            store,
            root: Some(content),
            stack: Vec::new(),
            current: Vec::new(),
            pos: 0,
            recorded: None,
            depth_base: 0,
        }
    }

    /// The content of a file node, held to the size its metadata records,
    /// as the mount holds it: a disagreement is an error before any byte.
    pub fn of_node(store: &'s dyn Objects, node: &super::Node) -> ContentReader<'s> {
        ContentReader {
            recorded: node.recorded_size(),
            ..ContentReader::new(store, node.content())
        }
    }

    /// The bytes of one piece of a file (see [`split_content`]), checked
    /// as a whole read checks them. Several pieces may be read at once (a
    /// restore writing one large file on several threads).
    pub fn part(store: &'s dyn Objects, piece: &Piece) -> ContentReader<'s> {
        let level = &piece.level;
        ContentReader {
            store,
            root: None,
            stack: vec![Frame {
                tree: level.tree,
                level: level.level.clone(),
                next: piece.entry,
                end: piece.entry + 1,
                len: level.len,
            }],
            depth_base: level.depth,
            current: Vec::new(),
            pos: 0,
            recorded: None,
        }
    }

    fn check_recorded(&self, id: ObjectId, content: u64) -> Result<(), ViewError> {
        check_recorded(self.recorded, id, content)
    }

    /// Loads the next blob; false at the end.
    fn advance(&mut self) -> Result<bool, ViewError> {
        match self.root.take() {
            Some(Content::Blob(id)) => {
                let object = self.store.read(&id)?;
                if object.kind != Kind::Blob {
                    return Err(root_kind(id, "blob")(object.kind));
                }
                self.check_recorded(id, object.data.len() as u64)?;
                self.current = object.data;
                self.pos = 0;
                return Ok(true);
            }
            // The size first, as the mount has it before its first read:
            // then every level is checked against a known range, in the
            // same order as there.
            Some(Content::ChunkTree(id)) => {
                let (len, level) = size_and_top(self.store, id, true)?;
                self.check_recorded(id, len)?;
                self.stack.push(Frame {
                    tree: id,
                    end: level.entries().len(),
                    level,
                    next: 0,
                    len,
                });
            }
            None => {}
        }
        loop {
            let depth = self.depth_base + self.stack.len().saturating_sub(1);
            let Some(frame) = self.stack.last_mut() else {
                return Ok(false);
            };
            let i = frame.next;
            let Some(&entry) = frame.level.entries()[..frame.end].get(i) else {
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            let span = frame.level.span(i, frame.len);
            if entry.is_tree {
                frame.level.check_depth(&frame.tree, i, depth)?;
                let level = read_level(self.store, &entry.id, |kind| {
                    frame.level.wrong_kind(&frame.tree, i, kind).into()
                })?;
                level.fit(&entry.id, span)?;
                announce(self.store, &level);
                self.stack.push(Frame {
                    tree: entry.id,
                    end: level.entries().len(),
                    level,
                    next: 0,
                    len: span,
                });
                continue;
            }
            let object = self.store.read(&entry.id)?;
            if object.kind != Kind::Blob {
                return Err(frame.level.wrong_kind(&frame.tree, i, object.kind).into());
            }
            frame
                .level
                .check_blob(&frame.tree, i, object.data.len() as u64, span)?;
            self.current = object.data;
            self.pos = 0;
            return Ok(true);
        }
    }

    /// The next piece of content, or an empty slice at the end. Lets
    /// callers consume whole blobs without an extra copy.
    pub fn next_piece(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.current.len() {
            if !self.advance().map_err(io_error)? {
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
            if !self.advance().map_err(io_error)? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One level of a file's chunk tree, checked against the range its parent
/// gives it, and where that range starts in the file.
pub struct Level {
    tree: ObjectId,
    level: ChunkLevel,
    /// Length of the level's data.
    len: u64,
    /// Where the level's data starts in the file.
    base: u64,
    /// Nesting depth (the top level is 0).
    depth: usize,
}

/// A piece of a file: entry `entry` (a chunk or a subtree) of one level
/// of its chunk tree, read with [`ContentReader::part`].
#[derive(Clone)]
pub struct Piece {
    level: Arc<Level>,
    entry: usize,
}

impl Piece {
    fn at(&self) -> LevelEntry {
        self.level.level.entries()[self.entry]
    }

    /// Where the piece starts in the file.
    pub fn offset(&self) -> u64 {
        self.level.base + self.at().offset
    }

    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        self.level.level.span(self.entry, self.level.len)
    }

    /// The pieces of every entry of `level`, in order.
    fn all_of(level: Arc<Level>) -> impl Iterator<Item = Piece> {
        (0..level.level.entries().len()).map(move |entry| Piece {
            level: level.clone(),
            entry,
        })
    }
}

/// The content of file `node` stored as a chunk tree, cut into about
/// `want` pieces (fewer if its tree has fewer entries), in file order,
/// with the file's size held to the one its metadata records (as
/// [`ContentReader::of_node`] holds it); `None` if the content is a single
/// blob. Every level read here is checked as a whole read checks it, and
/// the entries of each are announced to the store: the pieces are read
/// next.
pub fn split_content(
    store: &dyn Objects,
    node: &super::Node,
    want: usize,
) -> Result<Option<(u64, Vec<Piece>)>, ViewError> {
    let Content::ChunkTree(tree) = node.content() else {
        return Ok(None);
    };
    let (size, top) = size_and_top(store, tree, true)?;
    check_recorded(node.recorded_size(), tree, size)?;
    let top = Arc::new(Level {
        tree,
        len: size,
        base: 0,
        depth: 0,
        level: top,
    });
    let mut pieces: Vec<Piece> = Piece::all_of(top).collect();
    // The largest subtree is replaced by its entries until there are
    // enough pieces (a top level often has a few entries of very
    // different sizes).
    while pieces.len() < want {
        let Some(k) = (0..pieces.len())
            .filter(|&k| pieces[k].at().is_tree)
            .max_by_key(|&k| pieces[k].size())
        else {
            break;
        };
        let piece = &pieces[k];
        let (parent, i) = (&piece.level, piece.entry);
        parent.level.check_depth(&parent.tree, i, parent.depth)?;
        let id = piece.at().id;
        let level = read_level(store, &id, |kind| {
            parent.level.wrong_kind(&parent.tree, i, kind).into()
        })?;
        level.fit(&id, piece.size())?;
        announce(store, &level);
        let sub = Arc::new(Level {
            tree: id,
            len: piece.size(),
            base: piece.offset(),
            depth: parent.depth + 1,
            level,
        });
        pieces.splice(k..k + 1, Piece::all_of(sub));
    }
    Ok(Some((size, pieces)))
}

/// The size of a file without reading its data: bup's rule of following the
/// last entry of each chunk-tree level and summing the offsets, with every
/// level on that path checked (see [`resolve_last_path`]).
pub fn content_size(store: &dyn Objects, content: Content) -> Result<u64, ViewError> {
    match content {
        Content::Blob(id) => Ok(store.read_header(&id)?.1),
        Content::ChunkTree(id) => Ok(size_and_top(store, id, false)?.0),
    }
}

/// The size of the file stored as chunk tree `root`, and its top level
/// (parsed and fitted to that size). With `reading`, the top level's
/// entries are announced to the store before the size is worked out: the
/// caller reads them all next, and a server then sends the last path
/// with them instead of one round trip per level.
fn size_and_top(
    store: &dyn Objects,
    root: ObjectId,
    reading: bool,
) -> Result<(u64, ChunkLevel), ViewError> {
    let top = read_level(store, &root, root_kind(root, "tree"))?;
    if reading {
        announce(store, &top);
    }
    let mut path = vec![(root, top)];
    loop {
        let depth = path.len() - 1;
        let (tree, level) = &path[depth];
        // parse() guarantees at least one entry.
        let i = level.entries().len() - 1;
        let entry = level.entries()[i];
        if entry.is_tree {
            level.check_depth(tree, i, depth)?;
            let sub = read_level(store, &entry.id, |kind| {
                level.wrong_kind(tree, i, kind).into()
            })?;
            path.push((entry.id, sub));
            continue;
        }
        let (kind, len) = store.read_header(&entry.id)?;
        if kind != Kind::Blob {
            return Err(level.wrong_kind(tree, i, kind).into());
        }
        let size = resolve_last_path(path.iter().map(|(t, l)| (t, l)), len)?;
        path.truncate(1);
        let (_, top) = path.swap_remove(0);
        return Ok((size, top));
    }
}
