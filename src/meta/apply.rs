//! Setting recorded metadata on a node that restore has already created,
//! deciding what to set the way bup 0.33's `Metadata.apply_to_path` does.
//!
//! Order, and why it differs from bup's (times, owner, mode, ACL, attr,
//! xattrs):
//! 1. owner: lchown clears setuid/setgid bits and file capabilities
//!    (`security.capability`), so it must come before mode and xattrs;
//! 2. mode (not on symlinks, which have no mode of their own);
//! 3. POSIX ACL from the ACL record;
//! 4. xattrs. These include bup's raw copy of `system.posix_acl_*`, so,
//!    exactly as with bup, that raw (numeric) copy is what finally stands
//!    when both records exist;
//! 5. atime/mtime with nanoseconds: none of the steps above touches them,
//!    but the next one can forbid setting them;
//! 6. attr flags last, because immutable (`i`) or append-only (`a`) would
//!    make every later step fail with EPERM (bup applies xattrs after attrs
//!    and so fails on immutable files).
//!
//! Every failure is collected with its path and operation; the other steps
//! still run.

use std::ffi::CString;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use super::acl::{self, AclError};
use super::ids::{process_groups, IdNames};
use super::sys::{self, Target};
use super::{FsError, Metadata, S_IFDIR, S_IFMT, S_IFREG};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Restore owners, groups and ACL qualifiers by the recorded numbers,
    /// ignoring the recorded names (bup restore --numeric-ids).
    pub numeric_ids: bool,
}

// chattr flags (linux/fs.h) that bup restores: the user-modifiable set
// "acdeijstuADST" (FS_COMPR_FL .. FS_NOCOW_FL).
const FS_SECRM_FL: u32 = 0x0000_0001;
const FS_UNRM_FL: u32 = 0x0000_0002;
const FS_COMPR_FL: u32 = 0x0000_0004;
const FS_SYNC_FL: u32 = 0x0000_0008;
const FS_IMMUTABLE_FL: u32 = 0x0000_0010;
const FS_APPEND_FL: u32 = 0x0000_0020;
const FS_NODUMP_FL: u32 = 0x0000_0040;
const FS_NOATIME_FL: u32 = 0x0000_0080;
const FS_JOURNAL_DATA_FL: u32 = 0x0000_4000;
const FS_NOTAIL_FL: u32 = 0x0000_8000;
const FS_DIRSYNC_FL: u32 = 0x0001_0000;
const FS_TOPDIR_FL: u32 = 0x0002_0000;
const FS_EXTENT_FL: u32 = 0x0008_0000;
const FS_NOCOW_FL: u32 = 0x0080_0000;

/// The flags bup 0.33 restores, except FS_EXTENT_FL: bup re-requests the
/// extents flag and thereby fails on every file restored to a file system
/// without extents (xfs, tmpfs); how a file is mapped is the target file
/// system's business, so we leave that bit as the kernel set it.
pub const RESTORABLE_ATTR_FLAGS: u32 = FS_APPEND_FL
    | FS_COMPR_FL
    | FS_NODUMP_FL
    | FS_IMMUTABLE_FL
    | FS_JOURNAL_DATA_FL
    | FS_SECRM_FL
    | FS_NOTAIL_FL
    | FS_UNRM_FL
    | FS_NOATIME_FL
    | FS_DIRSYNC_FL
    | FS_SYNC_FL
    | FS_TOPDIR_FL
    | FS_NOCOW_FL;
const _: () = assert!(RESTORABLE_ATTR_FLAGS & FS_EXTENT_FL == 0);

/// Applies metadata to many nodes, caching name lookups and the process's
/// identity.
pub struct Applier {
    opts: ApplyOptions,
    names: IdNames,
    superuser: bool,
    groups: Vec<u32>,
    /// Names of `groups`, looked up on first need (non-root only).
    group_names: Option<Vec<Vec<u8>>>,
}

/// One-off convenience over [`Applier`].
pub fn apply(path: &Path, meta: &Metadata, opts: &ApplyOptions) -> Result<(), Vec<FsError>> {
    Applier::new(*opts).apply(path, meta)
}

impl Applier {
    pub fn new(opts: ApplyOptions) -> Self {
        let superuser = super::ids::euid() == 0;
        Applier {
            opts,
            names: IdNames::default(),
            superuser,
            groups: if superuser {
                Vec::new()
            } else {
                process_groups()
            },
            group_names: None,
        }
    }

    /// Applies `meta` to the existing node at `path`. The node's file type
    /// must match the recorded one (restore created it from this record);
    /// otherwise nothing is changed, so a node swapped for a symlink is
    /// never followed.
    pub fn apply(&mut self, path: &Path, meta: &Metadata) -> Result<(), Vec<FsError>> {
        let cpath = sys::cpath(path).map_err(|e| vec![FsError::new(path, "open", e)])?;
        self.apply_to(Target::Path(&cpath), path, meta)
    }

    /// [`Applier::apply`] to the node open as `fd` (a regular file or a
    /// directory restore created): no path is looked up. Problems name
    /// `shown`.
    pub fn apply_open(
        &mut self,
        fd: BorrowedFd<'_>,
        shown: &Path,
        meta: &Metadata,
    ) -> Result<(), Vec<FsError>> {
        self.apply_to(Target::Open(fd), shown, meta)
    }

    fn apply_to(
        &mut self,
        node: Target<'_>,
        path: &Path,
        meta: &Metadata,
    ) -> Result<(), Vec<FsError>> {
        let fail = |op: &str, e: io::Error| vec![FsError::new(path, op, e)];
        if meta.mode == 0 {
            let e = io::Error::new(io::ErrorKind::InvalidData, "no metadata recorded (mode 0)");
            return Err(fail("apply metadata", e));
        }
        let st = node.stat().map_err(|e| fail("lstat", e))?;
        if st.st_mode & S_IFMT != meta.mode & S_IFMT {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "node is {:o}, metadata is for {:o}",
                    st.st_mode & S_IFMT,
                    meta.mode & S_IFMT
                ),
            );
            return Err(fail("apply metadata", e));
        }

        let mut problems = Vec::new();
        let mut report = |op: String, e: io::Error| problems.push(FsError::new(path, op, e));

        let (uid, gid) = self.decide_owner(meta);
        if uid.is_some() || gid.is_some() {
            if let Err(e) = node.chown(uid, gid) {
                let what = format!("lchown to {}:{}", fmt_id(uid), fmt_id(gid));
                report(what, e);
            }
        }

        if !meta.is_symlink() {
            if let Err(e) = node.chmod(meta.mode & 0o7777) {
                report(format!("chmod {:o}", meta.mode & 0o7777), e);
            }
        }

        if let Some(a) = &meta.acl {
            // bup applies ACLs to every type but symlinks never have them.
            let is_dir = meta.is_dir();
            self.apply_acl(
                node,
                &a.access_text,
                &a.access_numeric,
                acl::XATTR_ACCESS,
                &mut report,
            );
            // bup treats an empty default ACL as "no default ACL record"
            // and leaves the directory's default ACL alone.
            if is_dir && !a.default_text.is_empty() {
                self.apply_acl(
                    node,
                    &a.default_text,
                    &a.default_numeric,
                    acl::XATTR_DEFAULT,
                    &mut report,
                );
            }
        }

        if !meta.xattrs.is_empty() {
            apply_xattrs(node, &meta.xattrs, &mut report);
        }

        if let Err(e) = node.set_times(meta.atime, meta.mtime) {
            report("utimensat".to_string(), e);
        }

        if let Some(want) = meta.linux_attr.filter(|&f| f != 0) {
            // bup only reads flags of regular files and directories; the
            // ioctl needs an open(2) that a device or fifo must not get.
            let kind = meta.mode & S_IFMT;
            if kind == S_IFREG || kind == S_IFDIR {
                let bits = want & RESTORABLE_ATTR_FLAGS;
                let r = node.update_flags(|current| (current & !RESTORABLE_ATTR_FLAGS) | bits);
                match r {
                    Ok(()) => {}
                    // Nothing we would set: a file system without flags
                    // support is not a problem.
                    Err(e) if bits == 0 && unsupported(&e) => {}
                    Err(e) => report(format!("set Linux attr flags {want:#x}"), e),
                }
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Owner and group to set, None meaning "leave as is" (bup's
    /// `_apply_common_rec`):
    /// - root: the recorded ids, but a recorded name that exists here wins
    ///   over the id, except for id 0 and unless `numeric_ids`;
    /// - others: only the group, and only to a group the process is in,
    ///   found by id or (unless `numeric_ids`) by name.
    fn decide_owner(&mut self, meta: &Metadata) -> (Option<u32>, Option<u32>) {
        let numeric = self.opts.numeric_ids;
        if self.superuser {
            let mut uid = meta.uid;
            let mut gid = meta.gid;
            if !numeric {
                if meta.uid != 0 && !meta.user.is_empty() {
                    if let Some(u) = self.names.uid_of(&meta.user) {
                        uid = u;
                    }
                }
                if meta.gid != 0 && !meta.group.is_empty() {
                    if let Some(g) = self.names.gid_of(&meta.group) {
                        gid = g;
                    }
                }
            }
            return (Some(uid), Some(gid));
        }
        let mut gid = self.groups.contains(&meta.gid).then_some(meta.gid);
        if !numeric && meta.gid != 0 && !meta.group.is_empty() {
            if self.group_names.is_none() {
                let mut names = Vec::new();
                for g in self.groups.clone() {
                    if let Some(n) = self.names.group_name(g) {
                        names.push(n.to_vec());
                    }
                }
                self.group_names = Some(names);
            }
            if self
                .group_names
                .as_ref()
                .is_some_and(|n| n.contains(&meta.group))
            {
                if let Some(g) = self.names.gid_of(&meta.group) {
                    gid = Some(g);
                }
            }
        }
        (None, gid)
    }

    /// bup applies the named text form (or the numeric one with
    /// `numeric_ids`) through libacl, which fails with EINVAL for a name
    /// unknown here and then sets nothing. We report that and fall back to
    /// the recorded numeric form, which is what bup's raw xattr copy then
    /// restores anyway.
    fn apply_acl(
        &mut self,
        node: Target<'_>,
        text: &[u8],
        numeric: &[u8],
        xattr_name: &str,
        report: &mut impl FnMut(String, io::Error),
    ) {
        let names = &mut self.names;
        let parsed = if self.opts.numeric_ids {
            acl::parse_text(numeric, |_, _| None)
        } else {
            let by_name = acl::parse_text(text, |is_user, name| {
                if is_user {
                    names.uid_of(name)
                } else {
                    names.gid_of(name)
                }
            });
            match by_name {
                Err(e @ AclError::UnknownName { .. }) => {
                    report(
                        format!("restore {xattr_name} by name"),
                        io::Error::new(io::ErrorKind::NotFound, e),
                    );
                    acl::parse_text(numeric, |_, _| None)
                }
                other => other,
            }
        };
        let entries = match parsed {
            Ok(entries) => entries,
            Err(e) => {
                report(
                    format!("parse {xattr_name}"),
                    io::Error::new(io::ErrorKind::InvalidData, e),
                );
                return;
            }
        };
        let value = acl::encode_xattr(&entries);
        let cname = CString::new(xattr_name).expect("constant has no NUL");
        if let Err(e) = node.set_xattr(&cname, &value) {
            report(format!("lsetxattr {xattr_name}"), e);
        }
    }
}

fn fmt_id(id: Option<u32>) -> String {
    id.map_or_else(|| "-".to_string(), |i| i.to_string())
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTTY) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

/// bup's `_apply_linux_xattr_rec`: set every recorded attribute whose value
/// differs, then remove attributes the node has that the record lacks.
fn apply_xattrs(
    node: Target<'_>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    report: &mut impl FnMut(String, io::Error),
) {
    let mut existing = match node.list_xattrs() {
        Ok(names) => names,
        Err(e) => {
            report("llistxattr".to_string(), e);
            return;
        }
    };
    for (name, value) in xattrs {
        let shown = String::from_utf8_lossy(name);
        let Ok(cname) = CString::new(name.clone()) else {
            let e = io::Error::new(io::ErrorKind::InvalidData, "xattr name contains a NUL byte");
            report(format!("lsetxattr {shown}"), e);
            continue;
        };
        let same =
            existing.contains(name) && matches!(node.get_xattr(&cname), Ok(Some(v)) if &v == value);
        if !same {
            if let Err(e) = node.set_xattr(&cname, value) {
                report(format!("lsetxattr {shown}"), e);
            }
        }
        existing.retain(|n| n != name);
    }
    for name in existing {
        let shown = String::from_utf8_lossy(&name).into_owned();
        if let Ok(cname) = CString::new(name) {
            if let Err(e) = node.remove_xattr(&cname) {
                report(format!("lremovexattr {shown}"), e);
            }
        }
    }
}
