//! Reading one file's metadata from the live file system, as `bup save`
//! does (`metadata.from_path(..., normalized=True)`).
//!
//! Everything is lstat-based and never follows a symlink. Only a failure
//! that makes the entry meaningless (reading a symlink's target) is an
//! error; a failure to read xattrs, ACLs or attr flags of one file is a
//! [`Warning`] and the entry is returned without that part.

use std::ffi::CString;
use std::io;
use std::path::Path;

use super::ids::IdNames;
use super::{
    acl, sys, FsError, Metadata, Timespec, Warning, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT,
    S_IFREG,
};

/// The lstat fields the save walker and metadata need, with nanosecond
/// times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

impl Stat {
    pub fn from_libc(st: &libc::stat) -> Stat {
        // The kernel keeps tv_nsec in 0..1e9, so these are already bup's
        // floor-seconds form; normalizing only guards odd file systems.
        let t = |sec: i64, nsec: i64| {
            Timespec::normalized(sec, i128::from(nsec)).unwrap_or(Timespec { sec, nsec: 0 })
        };
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size.max(0) as u64,
            atime: t(st.st_atime, st.st_atime_nsec),
            mtime: t(st.st_mtime, st.st_mtime_nsec),
            ctime: t(st.st_ctime, st.st_ctime_nsec),
        }
    }

    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
}

/// lstat(2) of a path, so a walker can stat once and pass the result to
/// [`Capturer::capture`].
pub fn lstat(path: &Path) -> io::Result<Stat> {
    let c = sys::cpath(path)?;
    Ok(Stat::from_libc(&sys::lstat(&c)?))
}

/// [`lstat`] of `name` in the open directory `dir`: no path lookup from
/// the root per entry when a whole directory is stat-ed.
pub fn lstat_at(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<Stat> {
    Ok(Stat::from_libc(&sys::lstat_at(dir, name)?))
}

/// Captures metadata, caching uid/gid name lookups across files.
#[derive(Default)]
pub struct Capturer {
    names: IdNames,
}

/// errno values meaning "this file system has no such feature"; bup treats
/// them as silence, not as a problem.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTTY) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

impl Capturer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata of `path`, given its lstat result `st`. Sizes are kept only
    /// for regular files and symlinks (bup's `normalized=True`), and
    /// `hardlink_target` is left for the caller, who knows the link sets.
    pub fn capture(&mut self, path: &Path, st: &Stat) -> Result<(Metadata, Vec<Warning>), FsError> {
        let cpath: CString = sys::cpath(path).map_err(|e| FsError::new(path, "open", e))?;
        let mut warnings = Vec::new();
        let kind = st.file_type();
        let mut m = Metadata {
            mode: st.mode,
            uid: st.uid,
            gid: st.gid,
            user: self
                .names
                .user_name(st.uid)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
            group: self
                .names
                .group_name(st.gid)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
            // bup keeps rdev only for devices: other types' st_rdev is not
            // stable on every platform and it is only needed for mknod.
            rdev: if kind == S_IFCHR || kind == S_IFBLK {
                st.rdev
            } else {
                0
            },
            atime: st.atime,
            mtime: st.mtime,
            ctime: st.ctime,
            size: if kind == S_IFREG { Some(st.size) } else { None },
            ..Metadata::default()
        };

        if kind == S_IFLNK {
            let target = sys::readlink(path).map_err(|e| FsError::new(path, "readlink", e))?;
            // The link read may differ from the one stat saw; bup sizes it
            // by what was read.
            m.size = Some(target.len() as u64);
            m.symlink_target = Some(target);
        } else {
            match acl::capture(&cpath, st.mode, kind == S_IFDIR, &mut self.names) {
                Ok(a) => m.acl = a,
                Err(e) => warnings.push(FsError::new(path, "read POSIX ACL", e)),
            }
        }

        if kind == S_IFREG || kind == S_IFDIR {
            match sys::get_flags(&cpath) {
                Ok(0) => {}
                Ok(flags) => m.linux_attr = Some(flags),
                Err(e) if unsupported(&e) => {}
                Err(e) => warnings.push(FsError::new(path, "read Linux attr flags", e)),
            }
        }

        match sys::llistxattr(&cpath) {
            Ok(names) => {
                for name in names {
                    let cname = match CString::new(name.clone()) {
                        Ok(c) => c,
                        Err(_) => continue, // cannot happen: names come NUL-split
                    };
                    match sys::lgetxattr(&cpath, &cname) {
                        Ok(Some(value)) => m.xattrs.push((name, value)),
                        Ok(None) => {} // removed since the listing
                        Err(e) => warnings.push(FsError::new(
                            path,
                            format!("lgetxattr {}", String::from_utf8_lossy(&name)),
                            e,
                        )),
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => warnings.push(FsError::new(path, "llistxattr", e)),
        }

        Ok((m, warnings))
    }
}
