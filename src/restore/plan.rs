//! What a restore would do, without doing it (`rewind restore --dry-run`):
//! the same walk of the snapshot as [`super::Restorer`], in the same order,
//! with the target only looked at (`fstatat`, and directories opened
//! without following symlinks), so that each entry is reported as the
//! restore would treat it: created, replaced, or (with `--no-clobber`)
//! kept. Nothing is created, not even the target.

use super::{at, RestoreError};
use crate::object::tree;
use crate::repo::Repo;
use crate::view::{self, Node, NodeType};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the restore would do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing has its name in the target: it would be created.
    Create,
    /// Something has its name and would be removed for it (the default).
    Replace,
    /// Something has its name and stays (`--no-clobber`); a directory
    /// kept so is not entered.
    Keep,
}

/// One entry of the plan: where it would go and what would happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub path: PathBuf,
    pub is_dir: bool,
    pub action: Action,
}

/// Walks what a restore into `target` would write and hands each entry to
/// `out`, in restore order. An existing directory where a directory is
/// restored is entered silently (the restore adds to it).
pub struct Planner<'r> {
    repo: &'r dyn Repo,
    no_clobber: bool,
    /// The target, when it exists as a directory.
    root: Option<OwnedFd>,
    root_path: PathBuf,
}

impl<'r> Planner<'r> {
    pub fn new(repo: &'r dyn Repo, target: &Path, no_clobber: bool) -> Planner<'r> {
        Planner {
            repo,
            no_clobber,
            root: at::open_root(target).ok(),
            root_path: target.to_path_buf(),
        }
    }

    /// The plan for restoring `node` under its own name.
    pub fn entry(
        &self,
        node: &Node,
        out: &mut dyn FnMut(Planned) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let root = self.root.as_ref().and_then(|r| r.try_clone().ok());
        self.visit(root.as_ref(), &self.root_path, node, out)
    }

    /// The plan for restoring the entries of directory `node` into the
    /// target itself.
    pub fn contents(
        &self,
        node: &Node,
        out: &mut dyn FnMut(Planned) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let dir = view::list_dir(self.repo, &node.id)?;
        for child in &dir.entries {
            self.visit(self.root.as_ref(), &self.root_path, child, out)?;
        }
        Ok(())
    }

    /// `node` going into `parent` (shown as `parent_path`), which exists
    /// when `parent` is `Some`.
    fn visit(
        &self,
        parent: Option<&OwnedFd>,
        parent_path: &Path,
        node: &Node,
        out: &mut dyn FnMut(Planned) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let shown = parent_path.join(OsStr::from_bytes(&node.name));
        tree::check_name(&node.name).map_err(|reason| RestoreError::UnsafeName {
            path: shown.clone(),
            reason,
        })?;
        let looked = |source| RestoreError::Read {
            path: shown.clone(),
            source,
        };
        let name = at::cname(&node.name).map_err(looked)?;
        let existing = match parent {
            Some(dir) => at::stat_at(dir.as_fd(), &name).map_err(looked)?,
            None => None,
        };
        let is_dir = node.node_type == NodeType::Directory;
        let action = match (parent, &existing) {
            (Some(dir), Some(st)) if is_dir && at::is_dir(st) => {
                // Added to: not an entry of its own in the plan.
                let inside = at::open_dir_at(dir.as_fd(), &name).map_err(looked)?;
                return self.children(Some(&inside), &shown, node, out);
            }
            (_, None) => Action::Create,
            (_, Some(_)) if self.no_clobber => Action::Keep,
            (_, Some(_)) => Action::Replace,
        };
        out(Planned {
            path: shown.clone(),
            is_dir,
            action,
        })?;
        if is_dir && action != Action::Keep {
            // A new or replacing directory: everything below is created.
            self.children(None, &shown, node, out)?;
        }
        Ok(())
    }

    fn children(
        &self,
        dir: Option<&OwnedFd>,
        shown: &Path,
        node: &Node,
        out: &mut dyn FnMut(Planned) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let listing = view::list_dir(self.repo, &node.id)?;
        for child in &listing.entries {
            self.visit(dir, shown, child, out)?;
        }
        Ok(())
    }
}
