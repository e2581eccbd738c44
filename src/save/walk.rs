//! Walks the sources in a stable (bytewise) order and turns every directory
//! into a git tree with its `.bupm`, bottom-up: a tree is written only after
//! all of its children exist. Per-entry problems (unreadable, vanished) are
//! warnings: the entry is left out and the save goes on.

use super::{ObjectSink, SaveError};
use crate::chunk::tree::{ChunkTreeBuilder, FileObject};
use crate::chunk::{SplitError, Splitter};
use crate::meta::capture::{lstat, Capturer, Stat};
use crate::meta::record::encode_entry;
use crate::meta::Metadata;
use crate::object::tree::{self, mangle, Entry, Mode};
use crate::object::{Kind, ObjectId};
use crate::source::filter::Filter;
use crate::source::paths::{self, Level, Rerooting};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A directory of the snapshot that is not (only) a walked directory: the
/// root, the parents of each source, graft targets. `merged` are live
/// directories whose entries appear in it (the source itself, or several
/// with `--strip`).
#[derive(Debug, Default)]
pub(super) struct VirtualDir {
    real: Option<PathBuf>,
    metadata_conflict: bool,
    merged: Vec<PathBuf>,
    children: BTreeMap<Vec<u8>, VirtualNode>,
}

#[derive(Debug)]
enum VirtualNode {
    Dir(VirtualDir),
    /// A non-directory source, saved under its level name.
    File(PathBuf),
}

impl VirtualDir {
    fn set_real(&mut self, real: &Option<PathBuf>) {
        if self.real.is_none() && !self.metadata_conflict {
            self.real = real.clone();
        } else if self.real != *real {
            // Two sources claim this level with different live
            // directories: like bup, give it no metadata at all.
            self.real = None;
            self.metadata_conflict = true;
        }
    }
}

/// Checks the sources, drops those inside another source, and arranges them
/// into the snapshot's directory skeleton.
pub(super) fn resolve_sources(
    sources: &[PathBuf],
    rerooting: &Rerooting,
) -> Result<VirtualDir, SaveError> {
    let cwd = std::env::current_dir().map_err(|source| SaveError::Source {
        path: PathBuf::from("."),
        source,
    })?;
    let mut resolved: Vec<(PathBuf, bool)> = Vec::new();
    for source in sources {
        let absolute = paths::absolute(source, &cwd);
        // Like bup, a directory given through a symlink is saved under its
        // real path; a symlink to a file is saved as the symlink.
        let st = std::fs::symlink_metadata(&absolute).map_err(|e| SaveError::Source {
            path: source.clone(),
            source: e,
        })?;
        let (path, is_dir) = if st.file_type().is_symlink()
            && std::fs::metadata(&absolute).is_ok_and(|m| m.is_dir())
        {
            let real = std::fs::canonicalize(&absolute).map_err(|e| SaveError::Source {
                path: source.clone(),
                source: e,
            })?;
            (real, true)
        } else {
            (absolute, st.is_dir())
        };
        resolved.push((path, is_dir));
    }
    resolved.sort();
    resolved.dedup();
    let mut root = VirtualDir::default();
    let mut kept: Vec<PathBuf> = Vec::new();
    for (path, is_dir) in resolved {
        if kept.iter().any(|k| path.starts_with(k) && *k != path) {
            continue; // already inside a saved directory
        }
        kept.push(path.clone());
        let levels = paths::snapshot_levels(&path, is_dir, rerooting);
        insert(&mut root, &levels, &path, is_dir);
    }
    Ok(root)
}

fn insert(root: &mut VirtualDir, levels: &[Level], source: &Path, is_dir: bool) {
    let (last, parents) = levels.split_last().expect("at least the root level");
    let mut dir = root;
    if !parents.is_empty() {
        dir.set_real(&parents[0].real);
        for level in &parents[1..] {
            let node = dir
                .children
                .entry(level.name.clone())
                .or_insert_with(|| VirtualNode::Dir(VirtualDir::default()));
            dir = match node {
                VirtualNode::Dir(d) => d,
                // A file source and a directory source want the same name;
                // the directory wins so that nothing below it is lost.
                VirtualNode::File(_) => {
                    *node = VirtualNode::Dir(VirtualDir::default());
                    match node {
                        VirtualNode::Dir(d) => d,
                        VirtualNode::File(_) => unreachable!(),
                    }
                }
            };
            dir.set_real(&level.real);
        }
    }
    if is_dir {
        let target = if parents.is_empty() {
            dir
        } else {
            match dir
                .children
                .entry(last.name.clone())
                .or_insert_with(|| VirtualNode::Dir(VirtualDir::default()))
            {
                VirtualNode::Dir(d) => d,
                node @ VirtualNode::File(_) => {
                    *node = VirtualNode::Dir(VirtualDir::default());
                    match node {
                        VirtualNode::Dir(d) => d,
                        VirtualNode::File(_) => unreachable!(),
                    }
                }
            }
        };
        target.set_real(&last.real);
        target.merged.push(source.to_path_buf());
    } else {
        dir.children
            .entry(last.name.clone())
            .or_insert_with(|| VirtualNode::File(source.to_path_buf()));
    }
}

/// One entry of a directory being built.
struct Stored {
    name: Vec<u8>,
    mode: Mode,
    id: ObjectId,
    chunked: bool,
    /// `None` for subdirectories, whose metadata lives in their own `.bupm`.
    meta: Option<Metadata>,
}

/// A regular file already stored during this save, for hardlink siblings.
struct LinkedFile {
    target: Vec<u8>,
    object: FileObject,
    size: u64,
}

pub(super) struct Walker<'f> {
    filter: &'f Filter,
    one_file_system: bool,
    splitter: Splitter,
    capturer: Capturer,
    hardlinks: HashMap<(u64, u64), LinkedFile>,
    pub warnings: Vec<String>,
    pub files: u64,
    pub directories: u64,
    pub bytes_read: u64,
}

impl<'f> Walker<'f> {
    pub fn new(filter: &'f Filter, one_file_system: bool) -> Walker<'f> {
        Walker {
            filter,
            one_file_system,
            splitter: Splitter::new(),
            capturer: Capturer::new(),
            hardlinks: HashMap::new(),
            warnings: Vec::new(),
            files: 0,
            directories: 0,
            bytes_read: 0,
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    pub fn save_root(
        &mut self,
        root: &VirtualDir,
        sink: &mut ObjectSink,
    ) -> Result<ObjectId, SaveError> {
        self.save_virtual(root, sink)
    }

    fn capture(&mut self, path: &Path, st: &Stat) -> Option<Metadata> {
        match self.capturer.capture(path, st) {
            Ok((meta, warnings)) => {
                for w in warnings {
                    self.warn(w.to_string());
                }
                Some(meta)
            }
            Err(e) => {
                self.warn(format!("{e}"));
                None
            }
        }
    }

    fn save_virtual(
        &mut self,
        dir: &VirtualDir,
        sink: &mut ObjectSink,
    ) -> Result<ObjectId, SaveError> {
        let own = match &dir.real {
            Some(real) => match lstat(real) {
                Ok(st) => self.capture(real, &st),
                Err(e) => {
                    self.warn(format!("{}: cannot stat: {e}", real.display()));
                    None
                }
            },
            None => None,
        };
        let mut entries: BTreeMap<Vec<u8>, Stored> = BTreeMap::new();
        for merged in &dir.merged {
            let device = self.one_file_system.then(|| device_of(merged)).flatten();
            for stored in self.save_children(merged, device, sink)? {
                entries.entry(stored.name.clone()).or_insert(stored);
            }
        }
        for (name, node) in &dir.children {
            let stored = match node {
                VirtualNode::Dir(child) => {
                    let id = self.save_virtual(child, sink)?;
                    Some(Stored {
                        name: name.clone(),
                        mode: Mode::Tree,
                        id,
                        chunked: false,
                        meta: None,
                    })
                }
                VirtualNode::File(path) => self.save_entry(path, name.clone(), None, sink)?,
            };
            // Explicit sources override a same-named entry of a merged dir.
            if let Some(stored) = stored {
                entries.insert(name.clone(), stored);
            }
        }
        self.directories += 1;
        write_directory(
            own.as_ref(),
            entries.into_values().collect(),
            sink,
            &mut self.splitter,
        )
    }

    /// Saves the entries of a live directory, in bytewise name order.
    fn save_children(
        &mut self,
        dir: &Path,
        device: Option<u64>,
        sink: &mut ObjectSink,
    ) -> Result<Vec<Stored>, SaveError> {
        let mut names: Vec<Vec<u8>> = match std::fs::read_dir(dir) {
            Ok(iter) => {
                let mut names = Vec::new();
                for entry in iter {
                    match entry {
                        Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                        Err(e) => {
                            self.warn(format!("{}: cannot list directory: {e}", dir.display()));
                            return Ok(Vec::new());
                        }
                    }
                }
                names
            }
            Err(e) => {
                self.warn(format!("{}: cannot list directory: {e}", dir.display()));
                return Ok(Vec::new());
            }
        };
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(OsStr::from_bytes(&name));
            if self.filter.excludes(&path) {
                continue;
            }
            if let Some(stored) = self.save_entry(&path, name, device, sink)? {
                out.push(stored);
            }
        }
        Ok(out)
    }

    /// Saves one live path of any type; `None` when it was skipped.
    fn save_entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        device: Option<u64>,
        sink: &mut ObjectSink,
    ) -> Result<Option<Stored>, SaveError> {
        let st = match lstat(path) {
            Ok(st) => st,
            Err(e) => {
                self.warn(format!("{}: cannot stat: {e}", path.display()));
                return Ok(None);
            }
        };
        let file_type = st.file_type();
        if file_type == libc::S_IFDIR {
            // Metadata first: listing the directory may change its atime.
            let Some(own) = self.capture(path, &st) else {
                return Ok(None);
            };
            let children = if device.is_some_and(|d| d != st.dev) {
                Vec::new() // a mount point under --one-file-system: kept empty
            } else {
                self.save_children(path, device, sink)?
            };
            self.directories += 1;
            let own = Some(own);
            let id = write_directory(own.as_ref(), children, sink, &mut self.splitter)?;
            return Ok(Some(Stored {
                name,
                mode: Mode::Tree,
                id,
                chunked: false,
                meta: None,
            }));
        }
        let Some(mut meta) = self.capture(path, &st) else {
            return Ok(None);
        };
        let (mode, id, chunked) = if file_type == libc::S_IFREG {
            match self.save_file(path, &st, &mut meta, sink)? {
                Some(FileObject::Blob(id)) => (Mode::Blob, id, false),
                Some(FileObject::Tree(id)) => (Mode::Tree, id, true),
                None => return Ok(None),
            }
        } else if file_type == libc::S_IFLNK {
            // Capture already read the target (it fails if it cannot).
            let target = meta.symlink_target.clone().unwrap_or_default();
            (Mode::Symlink, sink.put(Kind::Blob, &target)?, false)
        } else if [libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK].contains(&file_type)
        {
            // bup stores special files as the empty blob; the type, and the
            // device number, live in .bupm.
            (Mode::Blob, sink.put(Kind::Blob, b"")?, false)
        } else {
            self.warn(format!("{}: unknown file type, skipped", path.display()));
            return Ok(None);
        };
        self.files += 1;
        Ok(Some(Stored {
            name,
            mode,
            id,
            chunked,
            meta: Some(meta),
        }))
    }

    /// Stores a regular file's content; `None` if it could not be read.
    fn save_file(
        &mut self,
        path: &Path,
        st: &Stat,
        meta: &mut Metadata,
        sink: &mut ObjectSink,
    ) -> Result<Option<FileObject>, SaveError> {
        let key = (st.dev, st.ino);
        if st.nlink > 1 {
            if let Some(linked) = self.hardlinks.get(&key) {
                meta.hardlink_target = Some(linked.target.clone());
                meta.size = Some(linked.size);
                return Ok(Some(linked.object));
            }
        }
        let file = match open_for_reading(path) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!("{}: cannot read: {e}", path.display()));
                return Ok(None);
            }
        };
        let (object, size) = match store_stream(file, sink, &mut self.splitter) {
            Ok(stored) => stored,
            Err(StreamError::Read(e)) => {
                self.warn(format!("{}: cannot read: {e}", path.display()));
                return Ok(None);
            }
            Err(StreamError::Save(e)) => return Err(e),
        };
        self.bytes_read += size;
        // The size bup shows (and FUSE uses) is what was actually stored,
        // even if the file changed while it was read.
        meta.size = Some(size);
        if st.nlink > 1 {
            let target = path.as_os_str().as_bytes().to_vec();
            meta.hardlink_target = Some(target.clone());
            self.hardlinks.insert(
                key,
                LinkedFile {
                    target,
                    object,
                    size,
                },
            );
        }
        Ok(Some(object))
    }
}

fn device_of(path: &Path) -> Option<u64> {
    lstat(path).ok().map(|st| st.dev)
}

/// Opens without updating the access time where the kernel allows it.
fn open_for_reading(path: &Path) -> io::Result<File> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_NOFOLLOW)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    }
}

enum StreamError {
    Read(io::Error),
    Save(SaveError),
}

/// Splits a stream into chunks, stores them, and shapes the chunk tree.
fn store_stream(
    reader: impl Read,
    sink: &mut ObjectSink,
    splitter: &mut Splitter,
) -> Result<(FileObject, u64), StreamError> {
    let mut builder = ChunkTreeBuilder::new();
    let size = splitter
        .split(reader, |chunk: &[u8]| -> Result<(), SaveError> {
            let id = sink.put(Kind::Blob, chunk)?;
            builder.push(id, chunk.len() as u64, &mut |body: &[u8]| {
                sink.put(Kind::Tree, body)
            })
        })
        .map_err(|e| match e {
            SplitError::Read(e) => StreamError::Read(e),
            SplitError::Sink(e) => StreamError::Save(e),
        })?;
    let object = builder
        .finish(&mut |body: &[u8]| sink.put(Kind::Tree, body))
        .map_err(StreamError::Save)?;
    Ok((object, size))
}

/// Writes a directory's `.bupm` and tree. `own` is the directory's own
/// metadata (`None` writes bup's empty record, for synthetic parents).
fn write_directory(
    own: Option<&Metadata>,
    mut children: Vec<Stored>,
    sink: &mut ObjectSink,
    splitter: &mut Splitter,
) -> Result<ObjectId, SaveError> {
    // .bupm records follow the bytewise order of the unmangled names.
    children.sort_by(|a, b| a.name.cmp(&b.name));
    let mut bupm = Vec::new();
    encode_entry(own, &mut bupm);
    for child in &children {
        if let Some(meta) = &child.meta {
            encode_entry(Some(meta), &mut bupm);
        }
    }
    // A large .bupm is chunked like a file (bup does the same), so that a
    // change to one entry of a huge directory stores little.
    let (bupm_object, _) = match store_stream(&bupm[..], sink, splitter) {
        Ok(stored) => stored,
        Err(StreamError::Save(e)) => return Err(e),
        Err(StreamError::Read(e)) => unreachable!("reading from memory cannot fail: {e}"),
    };
    let mut entries: Vec<Entry> = children
        .into_iter()
        .map(|c| Entry {
            mode: c.mode,
            name: mangle(&c.name, c.chunked),
            id: c.id,
        })
        .collect();
    entries.push(match bupm_object {
        FileObject::Blob(id) => Entry {
            mode: Mode::Blob,
            name: b".bupm".to_vec(),
            id,
        },
        FileObject::Tree(id) => Entry {
            mode: Mode::Tree,
            name: b".bupm".to_vec(),
            id,
        },
    });
    sink.put(Kind::Tree, &tree::encode(&mut entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Timespec;
    use crate::repo::Repository;

    fn meta(mode: u32, size: Option<u64>) -> Metadata {
        let t = |sec| Timespec {
            sec,
            nsec: 123_456_789,
        };
        Metadata {
            mode,
            uid: 1000,
            gid: 100,
            user: b"alice".to_vec(),
            group: b"users".to_vec(),
            atime: t(1_700_000_000),
            mtime: t(1_700_000_001),
            ctime: t(1_700_000_002),
            size,
            ..Metadata::default()
        }
    }

    /// Pins the encoding of a directory (tree entries, mangling, `.bupm`
    /// order and bytes). If this id changes, snapshots written before and
    /// after stop sharing trees and the format has changed: never update
    /// the expected value without a format version plan.
    #[test]
    fn golden_directory_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let mut sink = ObjectSink::new(&repo).unwrap();
        let mut splitter = Splitter::new();
        let blob = sink.put(Kind::Blob, b"hello\n").unwrap();
        let mut link = meta(libc::S_IFLNK | 0o777, Some(5));
        link.symlink_target = Some(b"hello".to_vec());
        let mut fifo = meta(libc::S_IFIFO | 0o600, None);
        fifo.xattrs = vec![(b"user.k".to_vec(), b"v".to_vec())];
        let sub = write_directory(
            Some(&meta(libc::S_IFDIR | 0o700, None)),
            Vec::new(),
            &mut sink,
            &mut splitter,
        )
        .unwrap();
        let children = vec![
            Stored {
                name: b"two.bin.a".to_vec(),
                mode: Mode::Blob,
                id: blob,
                chunked: false,
                meta: Some(meta(libc::S_IFREG | 0o644, Some(6))),
            },
            Stored {
                name: b"two.bin".to_vec(),
                mode: Mode::Tree,
                id: sub,
                chunked: true,
                meta: Some(meta(libc::S_IFREG | 0o600, Some(6))),
            },
            Stored {
                name: b"x.bup".to_vec(),
                mode: Mode::Blob,
                id: blob,
                chunked: false,
                meta: Some(meta(libc::S_IFREG | 0o755, Some(6))),
            },
            Stored {
                name: b"link".to_vec(),
                mode: Mode::Symlink,
                id: blob,
                chunked: false,
                meta: Some(link),
            },
            Stored {
                name: b"fifo".to_vec(),
                mode: Mode::Blob,
                id: ObjectId::EMPTY_BLOB,
                chunked: false,
                meta: Some(fifo),
            },
            Stored {
                name: b"sub".to_vec(),
                mode: Mode::Tree,
                id: sub,
                chunked: false,
                meta: None,
            },
        ];
        let root = write_directory(
            Some(&meta(libc::S_IFDIR | 0o755, None)),
            children,
            &mut sink,
            &mut splitter,
        )
        .unwrap();
        assert_eq!(sub.to_string(), GOLDEN_SUB);
        assert_eq!(root.to_string(), GOLDEN_ROOT);
    }

    const GOLDEN_SUB: &str = "629f953d456f4f44bf604391825707705a58e6b2";
    const GOLDEN_ROOT: &str = "9ab7d6be5c801cefb64ca3dc7efb03c3b1c96455";
}
