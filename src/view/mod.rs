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
pub use file::{content_size, split_content, Content, ContentReader, Piece};
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
    /// An object missing on the way to, or inside, a path that was asked
    /// for: named with that path, so that the user learns which backup or
    /// file is damaged, not only an object id.
    #[error("{path}: object {id} is missing from the repository (damaged or incomplete; `rewind fsck` names every snapshot it breaks)")]
    Missing { path: String, id: ObjectId },
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
}

impl ViewError {
    /// Names `path` in an error about a missing object met while reading
    /// it; other errors already say what they are about.
    pub fn reached_from(self, path: &[u8]) -> ViewError {
        match self {
            ViewError::Repo(crate::repo::Error::NotFound(id)) => ViewError::Missing {
                path: String::from_utf8_lossy(path).into_owned(),
                id,
            },
            other => other,
        }
    }
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
    /// The mode of its git tree entry: with no `.bupm` record, whether a
    /// file is executable is known only from here.
    pub git_mode: Mode,
    /// From `.bupm`. For directories, filled only by [`list_dir_with_meta`]
    /// or when the directory itself is listed.
    pub meta: Option<Metadata>,
}

impl Node {
    /// A directory node for a tree that is not an entry of another tree
    /// (a snapshot's root, a tag's tree).
    pub fn directory(name: &[u8], tree: ObjectId, meta: Option<Metadata>) -> Node {
        Node {
            name: name.to_vec(),
            node_type: NodeType::Directory,
            id: tree,
            chunked: false,
            git_mode: Mode::Tree,
            meta,
        }
    }

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

    /// The st_mode to show: from `.bupm`, else from the git mode: 0755
    /// directories and symlinks, 0644 files and 0755 executable ones (bup
    /// shows those as 0644 and so loses the executable bit).
    pub fn mode(&self) -> u32 {
        match (&self.meta, self.node_type) {
            (Some(m), _) => m.mode,
            (None, NodeType::Directory) => libc::S_IFDIR | 0o755,
            (None, NodeType::Symlink) => libc::S_IFLNK | 0o755,
            (None, _) if self.git_mode == Mode::BlobExecutable => libc::S_IFREG | 0o755,
            (None, _) => libc::S_IFREG | 0o644,
        }
    }

    /// What stands for the metadata of an entry that has none saved
    /// (written by plain git, `bup split`, a `--graft` directory): the
    /// mode [`Node::mode`] shows, `time` (its snapshot's) for every time,
    /// and the owner given (whoever reads or restores it). ls, the mount
    /// and restore all show and apply this, so that they agree.
    pub fn unsaved_meta(&self, time: i64, uid: u32, gid: u32) -> Metadata {
        let time = crate::meta::Timespec { sec: time, nsec: 0 };
        Metadata {
            mode: self.mode(),
            uid,
            gid,
            atime: time,
            mtime: time,
            ctime: time,
            ..Metadata::default()
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
    if *id == ObjectId::EMPTY_TREE {
        // Present in every repository as far as git is concerned, stored
        // or not; gitlinks are served as it.
        return Ok(Vec::new());
    }
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
        let node = if mode == Mode::Commit {
            // A gitlink (submodule) names a commit of another repository:
            // an empty directory, as `git checkout` leaves it.
            Node::directory(&name, ObjectId::EMPTY_TREE, None)
        } else {
            Node {
                node_type: node_type_for(mode, chunked, meta.as_ref()),
                name,
                id,
                chunked,
                git_mode: mode,
                meta,
            }
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
