//! A read-only file-system view of a repository, shared by ls, restore and
//! mount (which adds only the FUSE plumbing): the names above the
//! snapshots ([`namespace`]: backup names, snapshots, `latest`, tags), and
//! the saved directories and files below them (here, and [`file`],
//! [`random`]).
//!
//! Directory entries are git tree entries demangled (bup's `.bup`, `.bupl`)
//! and zipped with the records of the directory's `.bupm`. The same code
//! reads what rewind and what bup 0.33 wrote.

pub mod file;
pub mod namespace;
pub mod random;
pub mod snapshots;

use crate::meta::record::BupmReader;
use crate::meta::Metadata;
use crate::object::tree::{self, demangle, Demangled, Mode};
use crate::object::{Kind, ObjectId};
use crate::repo::Repo;
pub use file::{content_size, Content, ContentReader};
pub use namespace::Item;
pub use snapshots::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}: no such backup, snapshot or path (see `rewind ls`)")]
    NotFound(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("object {id} should be a {expected}")]
    WrongKind {
        id: ObjectId,
        expected: &'static str,
    },
    #[error("object {id} is malformed: {detail}")]
    Malformed { id: ObjectId, detail: String },
    /// A file's content and the size its `.bupm` record gives disagree: one
    /// of them is damaged, and no reader can tell which bytes are right.
    #[error("object {id} holds {content} bytes, but the file's metadata says {recorded}: the repository is damaged")]
    SizeDisagrees {
        id: ObjectId,
        content: u64,
        recorded: u64,
    },
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
}

/// What a node of a snapshot is, decided by its metadata when present and by
/// its git mode otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Directory,
    Regular,
    Symlink,
    /// Fifo, socket or device: `metadata.mode` says which.
    Special,
}

/// One entry of a saved directory.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: Vec<u8>,
    pub node_type: NodeType,
    /// The tree of a directory, or the file's content.
    pub id: ObjectId,
    pub chunked: bool,
    /// From `.bupm`. For directories, filled only by [`list_dir_with_meta`]
    /// or when the directory itself is listed.
    pub meta: Option<Metadata>,
}

impl Node {
    /// The size the file's `.bupm` record gives, which every reader holds
    /// its content to (the mount serves exactly this many bytes).
    pub fn recorded_size(&self) -> Option<u64> {
        match self.node_type {
            NodeType::Regular => self.meta.as_ref().and_then(|m| m.size),
            _ => None,
        }
    }

    pub fn content(&self) -> Content {
        if self.chunked {
            Content::ChunkTree(self.id)
        } else {
            Content::Blob(self.id)
        }
    }

    /// The st_mode to show: from `.bupm`, else bup's defaults for the git
    /// mode (0644 files, 0755 directories and symlinks).
    pub fn mode(&self) -> u32 {
        match (&self.meta, self.node_type) {
            (Some(m), _) => m.mode,
            (None, NodeType::Directory) => libc::S_IFDIR | 0o755,
            (None, NodeType::Symlink) => libc::S_IFLNK | 0o755,
            (None, _) => libc::S_IFREG | 0o644,
        }
    }
}

fn node_type_for(mode: Mode, chunked: bool, meta: Option<&Metadata>) -> NodeType {
    if mode.is_tree() && !chunked {
        return NodeType::Directory;
    }
    match meta.map(|m| m.mode & libc::S_IFMT) {
        Some(libc::S_IFREG) => NodeType::Regular,
        Some(libc::S_IFLNK) => NodeType::Symlink,
        Some(libc::S_IFDIR) | None => {
            if mode == Mode::Symlink {
                NodeType::Symlink
            } else {
                NodeType::Regular
            }
        }
        Some(_) => NodeType::Special,
    }
}

/// A saved directory: its own metadata and its entries in name order.
pub struct Directory {
    pub meta: Option<Metadata>,
    /// Entries whose names passed [`tree::check_name`] and are unique.
    pub entries: Vec<Node>,
    /// Entries left out because their names are unsafe or ambiguous;
    /// already logged as warnings by [`list_dir`]. Non-empty means the
    /// directory is served only in part.
    pub skipped: Vec<SkippedEntry>,
}

/// A tree entry the view does not serve: its name cannot be a file name in
/// one directory, or it shares its name with another entry (after
/// demangling) so that neither can be told to be the real one.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "tree {tree}: entry \"{}\" left out: {reason} (damaged or hostile repository; \
     the rest of the directory is still served)",
    stored.escape_ascii()
)]
pub struct SkippedEntry {
    pub tree: ObjectId,
    /// The name as stored in the tree, before demangling.
    pub stored: Vec<u8>,
    pub reason: String,
}

fn read_tree(repo: &dyn Repo, id: &ObjectId) -> Result<Vec<tree::Entry>, ViewError> {
    let object = repo.objects().read(id)?;
    if object.kind != Kind::Tree {
        return Err(ViewError::WrongKind {
            id: *id,
            expected: "tree",
        });
    }
    tree::decode(&object.data).map_err(|e| ViewError::Malformed {
        id: *id,
        detail: e.to_string(),
    })
}

/// Lists a saved directory (a git tree), zipping its entries with `.bupm`.
///
/// Entries whose demangled names are unsafe ([`tree::check_name`]) or
/// shared by two entries are left out and logged, here, so that ls, restore
/// and the mount serve exactly the same entries and none of them can be
/// steered outside a directory by a name from the repository.
pub fn list_dir(repo: &dyn Repo, tree_id: &ObjectId) -> Result<Directory, ViewError> {
    let dir = list_dir_quiet(repo, tree_id)?;
    for skipped in &dir.skipped {
        tracing::warn!("{skipped}");
    }
    Ok(dir)
}

/// [`list_dir`] without the warnings, for path resolution: a bad entry of a
/// directory on the way is not news about the path asked for.
fn list_dir_quiet(repo: &dyn Repo, tree_id: &ObjectId) -> Result<Directory, ViewError> {
    let raw = read_tree(repo, tree_id)?;
    let mut bupm = None;
    let mut entries = Vec::with_capacity(raw.len());
    for e in raw {
        let (name, kind) = demangle(&e.name, e.mode);
        match kind {
            Demangled::Metadata => {
                bupm = Some(if e.mode.is_tree() {
                    Content::ChunkTree(e.id)
                } else {
                    Content::Blob(e.id)
                })
            }
            Demangled::Chunked => entries.push((name.to_vec(), e.mode, e.id, true, e.name)),
            Demangled::Normal => entries.push((name.to_vec(), e.mode, e.id, false, e.name)),
        }
    }
    // .bupm records follow the demangled names' bytewise order, which can
    // differ from git's order of the mangled names. The sort is stable, so
    // entries sharing a demangled name end up side by side.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut records =
        bupm.map(|content| BupmReader::new(ContentReader::new(repo.objects(), content)));
    let malformed = |detail: String| ViewError::Malformed {
        id: *tree_id,
        detail,
    };
    let next_record =
        |records: &mut Option<BupmReader<ContentReader>>| -> Result<Option<Metadata>, ViewError> {
            match records {
                Some(r) => Ok(r
                    .next_entry()
                    .map_err(|e| malformed(format!(".bupm: {e}")))?
                    .flatten()),
                None => Ok(None),
            }
        };
    let own = next_record(&mut records)?;
    let mut nodes = Vec::with_capacity(entries.len());
    for (name, mode, id, chunked, stored) in entries {
        let is_dir = mode.is_tree() && !chunked;
        // A left-out entry still takes its .bupm record, so that the
        // entries after it keep theirs.
        let meta = if is_dir {
            None
        } else {
            next_record(&mut records)?
        };
        let node = Node {
            node_type: node_type_for(mode, chunked, meta.as_ref()),
            name,
            id,
            chunked,
            meta,
        };
        nodes.push((node, stored));
    }
    let mut served = Vec::with_capacity(nodes.len());
    let mut skipped = Vec::new();
    let mut skip = |stored: Vec<u8>, reason: String| {
        skipped.push(SkippedEntry {
            tree: *tree_id,
            stored,
            reason,
        })
    };
    let mut nodes = nodes.into_iter().peekable();
    while let Some((node, stored)) = nodes.next() {
        let mut twins = Vec::new();
        while let Some(twin) = nodes.next_if(|(n, _)| n.name == node.name) {
            twins.push(twin.1);
        }
        if !twins.is_empty() {
            let reason = format!(
                "{} entries are named \"{}\" once demangled",
                twins.len() + 1,
                node.name.escape_ascii()
            );
            skip(stored, reason.clone());
            for stored in twins {
                skip(stored, reason.clone());
            }
        } else if let Err(e) = tree::check_name(&node.name) {
            let reason = format!("it demangles to \"{}\": {e}", node.name.escape_ascii());
            skip(stored, reason);
        } else {
            served.push(node);
        }
    }
    Ok(Directory {
        meta: own,
        entries: served,
        skipped,
    })
}

/// The metadata of a saved directory: the first record of its `.bupm`.
pub fn dir_meta(repo: &dyn Repo, tree_id: &ObjectId) -> Result<Option<Metadata>, ViewError> {
    let raw = read_tree(repo, tree_id)?;
    let Some(e) = raw.iter().find(|e| e.name == b".bupm") else {
        return Ok(None);
    };
    let content = if e.mode.is_tree() {
        Content::ChunkTree(e.id)
    } else {
        Content::Blob(e.id)
    };
    let mut reader = BupmReader::new(ContentReader::new(repo.objects(), content));
    Ok(reader
        .next_entry()
        .map_err(|err| ViewError::Malformed {
            id: *tree_id,
            detail: format!(".bupm: {err}"),
        })?
        .flatten())
}

/// Like [`list_dir`], with each subdirectory's own metadata filled in (for
/// `ls -l` and restore).
pub fn list_dir_with_meta(repo: &dyn Repo, tree_id: &ObjectId) -> Result<Directory, ViewError> {
    let mut dir = list_dir(repo, tree_id)?;
    for node in &mut dir.entries {
        if node.node_type == NodeType::Directory {
            node.meta = dir_meta(repo, &node.id)?;
        }
    }
    Ok(dir)
}
