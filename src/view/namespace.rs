//! The namespace of a repository, one for `ls`, `cat-file`, `restore` and
//! the mount:
//!
//! ```text
//! /                       backup names, and .tag when there are tags
//! /.tag/<tag>             what the tag points at, peeled: a commit's tree
//!                         or a tree is a directory, a blob a file
//! /<name>/                its snapshots, sorted by name, and latest
//! /<name>/<snapshot>/...  the snapshot's root and what it holds
//! /<name>/latest          a symlink to the tip's snapshot
//! ```
//!
//! It answers three questions: what a name in a directory stands for
//! ([`lookup`], and [`resolve`] for a whole path), what a directory of the
//! namespace holds ([`list`]: names, types, times), and where `latest`
//! points. It keeps nothing: refs and listings come from a [`Source`],
//! which [`Direct`] reads from the repository for one command and the
//! mount keeps for a while; inode numbers, lifetimes and errnos are the
//! mount's business.
//!
//! Snapshots are named as bup 0.33 names them (see [`super::snapshots`])
//! and listed sorted by name, as bup lists them, whatever order `--date`
//! gave their commits; `latest` is the branch's tip, not the newest date.
//! Times are the author times of commits: a backup name's is its tip's,
//! `latest`'s the tip's, a snapshot's its commit's.

use super::snapshots::{self, Snapshot};
use super::{list_dir_quiet, ContentReader, Directory, Node, NodeType, ViewError};
use crate::locks::lock;
use crate::object::{Kind, ObjectId};
use crate::repo::Repo;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Tags of tags followed before giving up.
const MAX_TAG_DEPTH: usize = 16;

/// A backup name (a branch).
#[derive(Clone, Debug)]
pub struct Backup {
    pub name: String,
    pub tip: ObjectId,
    /// The tip's author time; `None` when the tip cannot be read (the
    /// name's lookup reports why).
    pub time: Option<i64>,
}

/// A tag, lightweight or annotated.
#[derive(Clone, Debug)]
pub struct Tag {
    pub name: String,
    /// What the ref holds: for an annotated tag, the tag object.
    pub id: ObjectId,
    /// What it points at once tag objects are followed; `None` when that
    /// cannot be read (the tag's lookup reports why).
    pub target: Option<(Kind, ObjectId)>,
    /// A tagged commit's author time.
    pub time: Option<i64>,
}

/// A backup name's snapshots, sorted by name, and which one is the tip.
#[derive(Clone, Debug, Default)]
pub struct Snapshots {
    by_name: Vec<Snapshot>,
    latest: Option<usize>,
}

impl Snapshots {
    /// From a history listed oldest first with the tip last
    /// ([`snapshots::snapshots`]).
    pub fn new(history: Vec<Snapshot>) -> Snapshots {
        let tip = history.last().map(|s| s.commit);
        let mut by_name = history;
        by_name.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let latest = tip.and_then(|t| by_name.iter().position(|s| s.commit == t));
        Snapshots { by_name, latest }
    }

    pub fn by_name(&self) -> &[Snapshot] {
        &self.by_name
    }

    /// The tip's snapshot, which `latest` names.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.latest.and_then(|i| self.by_name.get(i))
    }

    pub fn find(&self, name: &[u8]) -> Option<&Snapshot> {
        self.by_name
            .binary_search_by(|s| s.name.as_bytes().cmp(name))
            .ok()
            .map(|i| &self.by_name[i])
    }
}

/// Where the namespace gets refs and listings. Every answer must be what
/// the repository holds now, or was a moment ago: the mount keeps them
/// for a second, [`Direct`] for the one command it answers.
pub trait Source {
    fn repo(&self) -> &dyn Repo;
    /// [`read_backups`], sorted by name.
    fn backups(&self) -> Result<Arc<Vec<Backup>>, ViewError>;
    /// [`read_tags`], sorted by name.
    fn tags(&self) -> Result<Arc<Vec<Tag>>, ViewError>;
    /// [`read_snapshots`] of `backup`'s tip.
    fn snapshots(&self, backup: &Backup) -> Result<Arc<Snapshots>, ViewError>;
    /// A saved directory ([`super::list_dir`]); warnings about its
    /// entries are the source's to give or not.
    fn directory(&self, tree: &ObjectId) -> Result<Arc<Directory>, ViewError>;
}

/// The backup names now, sorted, with their tips' times.
pub fn read_backups(repo: &dyn Repo) -> Result<Vec<Backup>, ViewError> {
    Ok(snapshots::backups(repo)?
        .into_iter()
        .map(|(name, tip)| Backup {
            time: snapshots::read_commit(repo, &tip)
                .ok()
                .map(|c| c.author.time),
            name,
            tip,
        })
        .collect())
}

/// The tags now, sorted, each peeled to what it points at.
pub fn read_tags(repo: &dyn Repo) -> Result<Vec<Tag>, ViewError> {
    Ok(snapshots::tags(repo)?
        .into_iter()
        .map(|(name, id)| {
            let target = peel(repo, &id).ok();
            let time = match target {
                Some((Kind::Commit, c)) => {
                    snapshots::read_commit(repo, &c).ok().map(|c| c.author.time)
                }
                _ => None,
            };
            Tag {
                name,
                id,
                target,
                time,
            }
        })
        .collect())
}

/// The snapshots of the branch whose tip is `tip`.
pub fn read_snapshots(repo: &dyn Repo, tip: &ObjectId) -> Result<Snapshots, ViewError> {
    Ok(Snapshots::new(snapshots::snapshots(repo, tip)?))
}

/// Follows tag objects from `id` to what they finally point at.
pub fn peel(repo: &dyn Repo, id: &ObjectId) -> Result<(Kind, ObjectId), ViewError> {
    let mut at = *id;
    for _ in 0..MAX_TAG_DEPTH {
        let (kind, _) = repo.objects().read_header(&at)?;
        if kind != Kind::Tag {
            return Ok((kind, at));
        }
        let object = repo.objects().read(&at)?;
        at = object
            .data
            .strip_prefix(b"object ")
            .and_then(|rest| rest.get(..40))
            .and_then(ObjectId::from_hex)
            .ok_or_else(|| ViewError::Malformed {
                id: at,
                detail: "a tag object without an `object` line".into(),
            })?;
    }
    Err(ViewError::Malformed {
        id: *id,
        detail: format!("tags of tags nest deeper than {MAX_TAG_DEPTH}"),
    })
}

/// Reads the repository for one command: the refs once, and of saved
/// directories only the one it listed last, so that a path walk reads
/// each directory once (a directory's own metadata is the first record of
/// its listing).
pub struct Direct<'a> {
    repo: &'a dyn Repo,
    last: Mutex<Option<(ObjectId, Arc<Directory>)>>,
    /// The backup names and tags as first read: a Direct answers one
    /// command, and reading them again for every lookup made `ls .tag`
    /// peel every tag once per tag.
    backups: Mutex<Option<Arc<Vec<Backup>>>>,
    tags: Mutex<Option<Arc<Vec<Tag>>>>,
}

impl<'a> Direct<'a> {
    pub fn new(repo: &'a dyn Repo) -> Direct<'a> {
        Direct {
            repo,
            last: Mutex::new(None),
            backups: Mutex::new(None),
            tags: Mutex::new(None),
        }
    }
}

/// What `slot` holds, or what `read` gives, kept there (an error is not).
fn read_once<T>(
    slot: &Mutex<Option<Arc<T>>>,
    read: impl FnOnce() -> Result<T, ViewError>,
) -> Result<Arc<T>, ViewError> {
    let mut held = lock(slot);
    if let Some(value) = &*held {
        return Ok(value.clone());
    }
    let value = Arc::new(read()?);
    *held = Some(value.clone());
    Ok(value)
}

impl Source for Direct<'_> {
    fn repo(&self) -> &dyn Repo {
        self.repo
    }

    fn backups(&self) -> Result<Arc<Vec<Backup>>, ViewError> {
        read_once(&self.backups, || read_backups(self.repo))
    }

    fn tags(&self) -> Result<Arc<Vec<Tag>>, ViewError> {
        read_once(&self.tags, || read_tags(self.repo))
    }

    fn snapshots(&self, backup: &Backup) -> Result<Arc<Snapshots>, ViewError> {
        Ok(Arc::new(read_snapshots(self.repo, &backup.tip)?))
    }

    /// Without warnings: a bad entry of a directory on a path's way is not
    /// news about the path asked for (a listing of it warns).
    fn directory(&self, tree: &ObjectId) -> Result<Arc<Directory>, ViewError> {
        let mut last = lock(&self.last);
        if let Some((id, dir)) = &*last {
            if id == tree {
                return Ok(dir.clone());
            }
        }
        let dir = Arc::new(list_dir_quiet(self.repo, tree)?);
        *last = Some((*tree, dir.clone()));
        Ok(dir)
    }
}

/// What a name of the namespace stands for.
#[derive(Clone, Debug)]
pub enum Item {
    /// `/`: the backup names (and `.tag`).
    Root,
    /// `/.tag`.
    Tags,
    /// `/<name>`: its snapshots.
    Backup(Backup),
    /// `/<name>/latest`, a symlink to the tip's snapshot.
    Latest {
        backup: String,
        /// The tip's snapshot name.
        target: String,
        tip: ObjectId,
        time: i64,
    },
    /// A snapshot's root, a tag's target, or anything inside them.
    Node(Box<Node>),
}

/// A name looked up in a directory of the namespace.
#[derive(Clone, Debug)]
pub struct Found {
    pub item: Item,
    /// What the name stands for where that can change while the name
    /// stays: a snapshot's commit, a tag's ref, `latest`'s tip.
    pub id: Option<ObjectId>,
    /// The author time of the commit behind it: a backup name's tip, a
    /// snapshot, `latest`'s tip, a tagged commit.
    pub time: Option<i64>,
}

/// One entry of a directory of the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    /// Directory, Regular (a tagged blob) or Symlink (`latest`).
    pub node_type: NodeType,
    /// As [`Found::id`].
    pub id: Option<ObjectId>,
    /// As [`Found::time`].
    pub time: Option<i64>,
    /// `latest`'s target.
    pub link: Option<Vec<u8>>,
}

fn not_found(name: &[u8]) -> ViewError {
    ViewError::NotFound(String::from_utf8_lossy(name).into_owned())
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// The root of a snapshot or tagged tree, named `name`, with the metadata
/// its own `.bupm` gives it.
fn top(src: &dyn Source, tree: ObjectId, name: &[u8]) -> Result<Node, ViewError> {
    let meta = src.directory(&tree)?.meta.clone();
    Ok(Node::directory(name, tree, meta))
}

/// What `tag` points at, as a node named after it.
fn tag_node(src: &dyn Source, tag: &Tag) -> Result<Node, ViewError> {
    let (kind, id) = match tag.target {
        Some(t) => t,
        // Peeled again for the error.
        None => peel(src.repo(), &tag.id)?,
    };
    let name = tag.name.as_bytes();
    match kind {
        Kind::Commit => top(src, snapshots::read_commit(src.repo(), &id)?.tree, name),
        Kind::Tree => top(src, id, name),
        Kind::Blob => Ok(Node {
            name: name.to_vec(),
            node_type: NodeType::Regular,
            id,
            chunked: false,
            git_mode: crate::object::tree::Mode::Blob,
            meta: None,
        }),
        Kind::Tag => Err(ViewError::WrongKind {
            id,
            expected: "commit, tree or blob",
        }),
    }
}

/// The entry `name` of a saved directory, a directory's own metadata
/// filled in.
pub fn child(src: &dyn Source, dir: &Node, name: &[u8]) -> Result<Node, ViewError> {
    if dir.node_type != NodeType::Directory {
        return Err(ViewError::NotADirectory(lossy(&dir.name)));
    }
    let listing = src.directory(&dir.id)?;
    let i = listing
        .entries
        .binary_search_by(|n| n.name.as_slice().cmp(name))
        .map_err(|_| not_found(name))?;
    let mut node = listing.entries[i].clone();
    if node.node_type == NodeType::Directory {
        // From the subdirectory's whole listing: a walk lists it next, and
        // its tree and `.bupm` are then read once, not twice.
        node.meta = src.directory(&node.id)?.meta.clone();
    }
    Ok(node)
}

/// What `name` stands for in the directory `parent`.
pub fn lookup(src: &dyn Source, parent: &Item, name: &[u8]) -> Result<Found, ViewError> {
    let found = |item, id, time| Ok(Found { item, id, time });
    match parent {
        Item::Root => {
            if name == b".tag" {
                return found(Item::Tags, None, None);
            }
            let backups = src.backups()?;
            let b = backups
                .iter()
                .find(|b| b.name.as_bytes() == name)
                .ok_or_else(|| not_found(name))?;
            // A tip that cannot be read is an error here, not a name
            // without a time.
            let time = match b.time {
                Some(t) => t,
                None => snapshots::read_commit(src.repo(), &b.tip)?.author.time,
            };
            found(Item::Backup(b.clone()), None, Some(time))
        }
        Item::Tags => {
            let tags = src.tags()?;
            let tag = tags
                .iter()
                .find(|t| t.name.as_bytes() == name)
                .ok_or_else(|| not_found(name))?;
            let node = tag_node(src, tag)?;
            found(Item::Node(Box::new(node)), Some(tag.id), tag.time)
        }
        Item::Backup(backup) => {
            let list = src.snapshots(backup)?;
            if name == b"latest" {
                let tip = list.latest().ok_or_else(|| not_found(name))?;
                let item = Item::Latest {
                    backup: backup.name.clone(),
                    target: tip.name.clone(),
                    tip: tip.commit,
                    time: tip.time,
                };
                return found(item, Some(tip.commit), Some(tip.time));
            }
            let snap = list.find(name).ok_or_else(|| not_found(name))?;
            let node = top(src, snap.tree, name)?;
            found(
                Item::Node(Box::new(node)),
                Some(snap.commit),
                Some(snap.time),
            )
        }
        Item::Latest { .. } => Err(ViewError::NotADirectory("latest".into())),
        Item::Node(dir) => found(Item::Node(Box::new(child(src, dir, name)?)), None, None),
    }
}

/// The entries of a directory of the namespace, in the order `ls` shows
/// them: backup names then `.tag`; tags; snapshots by name then `latest`.
/// A saved directory lists its entries with their types (no ids or
/// times: those are its nodes' business).
pub fn list(src: &dyn Source, dir: &Item) -> Result<Vec<Entry>, ViewError> {
    let entry = |name: &[u8], node_type, id, time| Entry {
        name: name.to_vec(),
        node_type,
        id,
        time,
        link: None,
    };
    Ok(match dir {
        Item::Root => {
            let mut v: Vec<Entry> = src
                .backups()?
                .iter()
                .map(|b| entry(b.name.as_bytes(), NodeType::Directory, None, b.time))
                .collect();
            if !src.tags()?.is_empty() {
                v.push(entry(b".tag", NodeType::Directory, None, None));
            }
            v
        }
        Item::Tags => src
            .tags()?
            .iter()
            .map(|t| {
                let node_type = match t.target {
                    Some((Kind::Blob, _)) => NodeType::Regular,
                    _ => NodeType::Directory,
                };
                entry(t.name.as_bytes(), node_type, Some(t.id), t.time)
            })
            .collect(),
        Item::Backup(backup) => {
            let list = src.snapshots(backup)?;
            let mut v: Vec<Entry> = list
                .by_name()
                .iter()
                .map(|s| {
                    let (id, time) = (Some(s.commit), Some(s.time));
                    entry(s.name.as_bytes(), NodeType::Directory, id, time)
                })
                .collect();
            if let Some(tip) = list.latest() {
                v.push(Entry {
                    link: Some(tip.name.as_bytes().to_vec()),
                    ..entry(
                        b"latest",
                        NodeType::Symlink,
                        Some(tip.commit),
                        Some(tip.time),
                    )
                });
            }
            v
        }
        Item::Latest { .. } => return Err(ViewError::NotADirectory("latest".into())),
        Item::Node(node) => {
            if node.node_type != NodeType::Directory {
                return Err(ViewError::NotADirectory(lossy(&node.name)));
            }
            src.directory(&node.id)?
                .entries
                .iter()
                .map(|n| entry(&n.name, n.node_type, None, None))
                .collect()
        }
    })
}

/// Symlink targets read from content stop here.
const MAX_LINK: u64 = 64 * 1024;

/// Where a symlink points: from its metadata, else its content (at most
/// 64 KiB, more than any system's PATH_MAX).
pub fn symlink_target(repo: &dyn Repo, node: &Node) -> Result<Vec<u8>, ViewError> {
    if let Some(t) = node.meta.as_ref().and_then(|m| m.symlink_target.clone()) {
        return Ok(t);
    }
    let mut target = Vec::new();
    ContentReader::new(repo.objects(), node.content())
        .take(MAX_LINK)
        .read_to_end(&mut target)
        .map_err(|e| ViewError::Malformed {
            id: node.id,
            detail: format!("symlink target: {e}"),
        })?;
    Ok(target)
}

fn split_path(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

/// Resolves a path like `etc/latest/etc/hosts`. `latest` is followed when
/// it is not the last component, and as the last one too when
/// `follow_last` (as `ls` and `cp` follow a symlink named on the command
/// line). Errors name the whole path.
pub fn resolve(src: &dyn Source, path: &[u8], follow_last: bool) -> Result<Item, ViewError> {
    Ok(resolve_timed(src, path, follow_last)?.0)
}

/// [`resolve`], with the author time of the snapshot or tagged commit the
/// path goes through (0 where none is: a tag of a tree or blob): the time
/// that entries saved without metadata get (see [`Node::unsaved_meta`]).
pub fn resolve_timed(
    src: &dyn Source,
    path: &[u8],
    follow_last: bool,
) -> Result<(Item, i64), ViewError> {
    let parts = split_path(path);
    let whole = |e| match e {
        ViewError::NotFound(_) => ViewError::NotFound(lossy(path)),
        ViewError::NotADirectory(_) => ViewError::NotADirectory(lossy(path)),
        other => other,
    };
    let mut item = Item::Root;
    let mut time = 0;
    for (i, &part) in parts.iter().enumerate() {
        let mut next = lookup(src, &item, part).map_err(whole)?;
        if let Item::Latest { target, .. } = &next.item {
            if follow_last || i + 1 < parts.len() {
                next = lookup(src, &item, target.as_bytes()).map_err(whole)?;
            }
        }
        if let Some(t) = next.time {
            time = t;
        }
        item = next.item;
    }
    Ok((item, time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;

    /// A tag object's body pointing at `target` of `kind`.
    fn tag_body(target: &ObjectId, kind: Kind, name: &str) -> Vec<u8> {
        format!(
            "object {}\ntype {}\ntag {name}\ntagger T <t@h> 1700000000 +0000\n\nm\n",
            target.to_hex(),
            kind.name()
        )
        .into_bytes()
    }

    /// Tag objects come from the repository: one without an `object`
    /// line, and a chain of tags deeper than the limit, are errors of
    /// their own tags (named by object), while the other tags still list
    /// and resolve.
    #[test]
    fn damaged_and_endless_tags_are_errors_of_their_own() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(&tmp.path().join("repo")).expect("init");
        let mut w = repo.pack_writer().expect("writer");
        let blob = w.write(Kind::Blob, b"content\n").expect("blob");
        let good = w
            .write(Kind::Tag, &tag_body(&blob, Kind::Blob, "good"))
            .expect("tag");
        let bad = w
            .write(Kind::Tag, b"type blob\ntag bad\n\nno object line\n")
            .expect("tag");
        let mut deep = blob;
        for i in 0..=MAX_TAG_DEPTH {
            let kind = if i == 0 { Kind::Blob } else { Kind::Tag };
            deep = w
                .write(Kind::Tag, &tag_body(&deep, kind, "deep"))
                .expect("tag");
        }
        w.finish().expect("publish");
        for (name, id) in [("good", good), ("bad", bad), ("deep", deep)] {
            repo.update_ref(&format!("refs/tags/{name}"), id, None)
                .expect("ref");
        }
        let src = Direct::new(&repo);
        let listed = list(&src, &Item::Tags).expect("list");
        let names: Vec<&[u8]> = listed.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"bad"[..], b"deep", b"good"]);
        assert_eq!(listed[2].node_type, NodeType::Regular);
        match lookup(&src, &Item::Tags, b"good").expect("good").item {
            Item::Node(node) => assert_eq!(node.id, blob),
            other => panic!("{other:?}"),
        }
        match lookup(&src, &Item::Tags, b"bad") {
            Err(ViewError::Malformed { id, .. }) => assert_eq!(id, bad),
            other => panic!("{other:?}"),
        }
        match lookup(&src, &Item::Tags, b"deep") {
            Err(ViewError::Malformed { id, detail }) => {
                assert_eq!(id, deep);
                assert!(detail.contains("nest deeper"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
