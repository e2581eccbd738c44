//! The snapshot's skeleton: the sources checked and arranged into the
//! directories above and around them (the root, each source's parents,
//! graft targets, `--strip`), with dump outputs placed in it. The walk
//! fills it in; the warmer starts from its live directories.

use super::warm::{WarmData, Warmer};
use super::SaveError;
use crate::meta::capture::lstat;
use crate::meta::Timespec;
use crate::source::filter::Filter;
use crate::source::paths::{self, Level, Rerooting};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A directory of the snapshot that is not (only) a walked directory: the
/// root, the parents of each source, graft targets. `merged` are live
/// directories whose entries appear in it (the source itself, or several
/// with `--strip`).
#[derive(Debug, Default)]
pub(super) struct VirtualDir {
    /// The live directory whose metadata this level takes, if any.
    pub real: Option<PathBuf>,
    metadata_conflict: bool,
    pub merged: Vec<PathBuf>,
    pub children: BTreeMap<Vec<u8>, VirtualNode>,
}

#[derive(Debug)]
pub(super) enum VirtualNode {
    Dir(VirtualDir),
    /// A non-directory source, saved under its level name.
    File(PathBuf),
    /// A dump source's output, stored before the walk (see `dump`).
    Dump(super::dump::DumpedFile),
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

/// The sources arranged into the snapshot's directory skeleton, and the
/// warnings about them: a source that does not exist is left out (a daily
/// backup saves what is there; only when no source exists is there nothing
/// to save), and a source that is an unmounted mount point is named.
pub(super) struct Resolved {
    pub root: VirtualDir,
    pub warnings: Vec<String>,
}

/// Checks the sources, drops those inside another source, and arranges them
/// into the snapshot's directory skeleton.
pub(super) fn resolve_sources(
    sources: &[PathBuf],
    rerooting: &Rerooting,
) -> Result<Resolved, SaveError> {
    let cwd = std::env::current_dir().map_err(|source| SaveError::Source {
        path: PathBuf::from("."),
        source,
    })?;
    let mut resolved: Vec<(PathBuf, bool)> = Vec::new();
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut warnings = Vec::new();
    for source in sources {
        let absolute = paths::absolute(source, &cwd);
        // Like bup, a directory given through a symlink is saved under its
        // real path; a symlink to a file is saved as the symlink.
        let st = match std::fs::symlink_metadata(&absolute) {
            Ok(st) => st,
            Err(e) if is_missing(&e) => {
                missing.push(source.clone());
                continue;
            }
            Err(e) => {
                return Err(SaveError::Source {
                    path: source.clone(),
                    source: e,
                })
            }
        };
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
        if is_dir
            && crate::source::mounts::is_unmounted_mount_point(
                &path,
                Path::new(crate::source::mounts::FSTAB),
                Path::new(crate::source::mounts::MOUNTS),
            )
        {
            warnings.push(format!(
                "{}: empty and nothing is mounted there although {} mounts a file system on it; \
                 saved as an empty directory (mount it and save again)",
                path.display(),
                crate::source::mounts::FSTAB
            ));
        }
        resolved.push((path, is_dir));
    }
    if !missing.is_empty() && resolved.is_empty() {
        return Err(SaveError::NoSource { paths: missing });
    }
    for path in &missing {
        warnings.push(format!(
            "{}: no such file or directory; not in this snapshot (the other paths are saved)",
            path.display()
        ));
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
    Ok(Resolved { root, warnings })
}

/// A source that is not there (rather than one that cannot be read): the
/// path or one of its parents does not exist.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// The subdirectory `name` of `dir`, created if missing. When a file source
/// and a directory source want the same name, the directory wins so that
/// nothing below it is lost.
fn child_dir<'d>(dir: &'d mut VirtualDir, name: &[u8]) -> &'d mut VirtualDir {
    let node = dir
        .children
        .entry(name.to_vec())
        .or_insert_with(|| VirtualNode::Dir(VirtualDir::default()));
    if !matches!(node, VirtualNode::Dir(_)) {
        *node = VirtualNode::Dir(VirtualDir::default());
    }
    match node {
        VirtualNode::Dir(d) => d,
        _ => unreachable!("replaced just above"),
    }
}

fn insert(root: &mut VirtualDir, levels: &[Level], source: &Path, is_dir: bool) {
    let (last, parents) = levels.split_last().expect("at least the root level");
    let mut dir = root;
    if !parents.is_empty() {
        dir.set_real(&parents[0].real);
        for level in &parents[1..] {
            dir = child_dir(dir, &level.name);
            dir.set_real(&level.real);
        }
    }
    if is_dir {
        let target = if parents.is_empty() {
            dir
        } else {
            child_dir(dir, &last.name)
        };
        target.set_real(&last.real);
        target.merged.push(source.to_path_buf());
    } else {
        dir.children
            .entry(last.name.clone())
            .or_insert_with(|| VirtualNode::File(source.to_path_buf()));
    }
}

/// Starts listing and `lstat`-ing the trees under `root` ahead of the
/// walk, before the save is ready to walk: what a save waits for first (a
/// server's answer, a dump) overlaps with the disk's first round trips.
/// `previous_start` is [`super::index::previous_start`]'s hint.
pub(super) fn start_warming(
    root: &VirtualDir,
    filter: &Filter,
    one_file_system: bool,
    previous_start: Option<Timespec>,
) -> Warmer {
    let mut roots = Vec::new();
    walked_dirs(root, one_file_system, &mut roots);
    let data = match previous_start {
        Some(t) => WarmData::ChangedSince(t),
        None => WarmData::All,
    };
    Warmer::start(roots, filter.clone(), data)
}

/// The live directories the walk of `dir` lists first-hand, in walk order,
/// each with the device it stays on under `--one-file-system`.
fn walked_dirs(dir: &VirtualDir, one_file_system: bool, out: &mut Vec<(PathBuf, Option<u64>)>) {
    for merged in &dir.merged {
        let device = one_file_system.then(|| device_of(merged)).flatten();
        out.push((merged.clone(), device));
    }
    for node in dir.children.values() {
        if let VirtualNode::Dir(child) = node {
            walked_dirs(child, one_file_system, out);
        }
    }
}

pub(super) fn device_of(path: &Path) -> Option<u64> {
    lstat(path).ok().map(|st| st.dev)
}

/// Dump sources in the skeleton (the running is `dump`'s).
impl VirtualDir {
    /// Why a dump cannot be stored at the path made of `names`, or `None`.
    /// A dump never goes inside a walked directory: it would hide, or be
    /// hidden by, a live entry of the same name.
    pub(super) fn dump_conflict(&self, names: &[Vec<u8>]) -> Option<String> {
        let mut dir = self;
        let mut at = PathBuf::from("/");
        for (i, name) in names.iter().enumerate() {
            if let Some(saved) = dir.merged.first() {
                let stored = if *saved == at {
                    String::new()
                } else {
                    format!(", stored as {}", at.display())
                };
                return Some(format!(
                    "it would be inside the saved directory {}{stored}; put the dump \
                     outside the saved paths, or in a backup of its own",
                    saved.display(),
                ));
            }
            at.push(OsStr::from_bytes(name));
            let last = i + 1 == names.len();
            match dir.children.get(name) {
                None => return None,
                Some(VirtualNode::Dir(d)) if !last => dir = d,
                Some(VirtualNode::Dir(_)) => {
                    return Some(format!(
                        "the saved paths need {} as a directory",
                        at.display()
                    ))
                }
                Some(VirtualNode::File(path)) if last => {
                    return Some(format!("the saved file {} is stored there", path.display()))
                }
                Some(VirtualNode::File(path)) => {
                    return Some(format!(
                        "the saved file {} is stored at {}, where the dump needs a directory",
                        path.display(),
                        at.display()
                    ))
                }
                Some(VirtualNode::Dump(_)) => {
                    return Some(format!("another dump is stored at {}", at.display()))
                }
            }
        }
        None
    }

    /// Stores a dump at the path made of `names`, creating the missing
    /// directories above it as synthetic ones (bup's empty record).
    pub(super) fn place_dump(
        &mut self,
        names: &[Vec<u8>],
        dumped: super::dump::DumpedFile,
    ) -> Result<(), String> {
        if let Some(reason) = self.dump_conflict(names) {
            return Err(reason);
        }
        let (last, parents) = names.split_last().ok_or("no file name")?;
        let mut dir = self;
        for name in parents {
            dir = child_dir(dir, name);
        }
        dir.children.insert(last.clone(), VirtualNode::Dump(dumped));
        Ok(())
    }
}
