//! File metadata as bup 0.33 records it: the `.bupm` record format and its
//! link to the live Linux file system.
//!
//! This module owns:
//! - [`Metadata`], the in-memory form of one `.bupm` entry;
//! - [`record`]: the pure byte format (encode exactly what bup 0.33 writes,
//!   decode everything bup 0.33 writes, including legacy tags);
//! - [`capture`]: reading metadata of one file from the file system (never
//!   following symlinks), the way `bup save` does;
//! - [`apply`]: setting metadata on an already created node, the way
//!   `bup restore` decides what to set;
//! - [`acl`]: POSIX ACLs, between the kernel's binary xattr form and
//!   libacl's short text forms that bup stores.
//!
//! Format facts are in BUP-FORMAT.md section A.6; the behaviour follows
//! bup 0.33's `lib/bup/metadata.py`.

pub mod acl;
pub mod apply;
pub mod capture;
pub(crate) mod ids;
pub mod record;
mod sys;
pub(crate) mod vint;

use std::io;
use std::path::PathBuf;

pub use apply::{apply, Applier, ApplyOptions};
pub use capture::{lstat, Capturer, Stat};
pub use record::{decode_all, encode_entry, BupmReader, DecodeError, DecodeErrorKind};

/// A point in time as bup stores it: `sec` is the floor of the time in
/// seconds, `nsec` is always in `0..1_000_000_000`, so a time before 1970
/// has a negative `sec` and a positive `nsec`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    /// A wall-clock time (`None` before 1970, which a clock of ours never
    /// reads).
    pub fn from_system_time(t: std::time::SystemTime) -> Option<Timespec> {
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(Timespec {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        })
    }

    /// Builds a normalised time from seconds and a possibly out-of-range
    /// nanosecond count (kernel values are already normal; decoded values
    /// may not be). Returns None on overflow.
    pub fn normalized(sec: i64, nsec: i128) -> Option<Timespec> {
        let total = i128::from(sec) * 1_000_000_000 + nsec;
        let s = total.div_euclid(1_000_000_000);
        let ns = total.rem_euclid(1_000_000_000);
        Some(Timespec {
            sec: i64::try_from(s).ok()?,
            nsec: u32::try_from(ns).ok()?,
        })
    }
}

/// POSIX ACLs as bup's `posix1e_acl_v2` record holds them: libacl's short
/// text form (`u::rw-,u:alice:r--,g::r--,m::r--,o::r--`) once with names and
/// once with numeric ids, for the access ACL and, on directories, the
/// default ACL (empty strings when a directory has none, and always empty
/// for non-directories).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PosixAcl {
    pub access_text: Vec<u8>,
    pub access_numeric: Vec<u8>,
    pub default_text: Vec<u8>,
    pub default_numeric: Vec<u8>,
}

/// One `.bupm` entry. Field order and optionality mirror bup's records;
/// `Metadata::default()` has `mode == 0`, which bup treats as "no common
/// record" (it is not written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Owner and group names at save time; empty when the id had no name.
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    /// Device number for character and block devices, 0 otherwise.
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    /// Written as -1 when None. bup stores a size only for regular files
    /// and symlinks; `ls` and FUSE sizes come from here, so it must be
    /// accurate.
    pub size: Option<u64>,
    pub symlink_target: Option<Vec<u8>>,
    /// Archive path of the first member of this file's hard-link set.
    pub hardlink_target: Option<Vec<u8>>,
    /// chattr flags (FS_IOC_GETFLAGS); None when zero or not captured.
    pub linux_attr: Option<u32>,
    /// Every extended attribute in `llistxattr` order, including the
    /// `system.posix_acl_*` ones (bup stores those twice: here raw, and
    /// decoded in `acl`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub acl: Option<PosixAcl>,
}

/// File type bits of `st_mode` (`S_IFMT`), kept here so pure code does not
/// depend on libc's per-platform types.
pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFSOCK: u32 = 0o140000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFBLK: u32 = 0o060000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFCHR: u32 = 0o020000;
pub(crate) const S_IFIFO: u32 = 0o010000;

impl Metadata {
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }
    pub fn is_regular(&self) -> bool {
        self.file_type() == S_IFREG
    }
}

/// A file-system operation on one path that failed. Capture returns these
/// as warnings (the file is still saved with what could be read); apply
/// returns them as the list of things it could not set.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FsError {
    pub path: PathBuf,
    /// What was being done, e.g. "lgetxattr user.foo", "lchown".
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub(crate) fn new(path: &std::path::Path, op: impl Into<String>, source: io::Error) -> Self {
        FsError {
            path: path.to_path_buf(),
            op: op.into(),
            source,
        }
    }
}

/// A problem with one file that does not stop the run (see [`FsError`]).
pub type Warning = FsError;

/// `ls -l` style mode string: type letter then rwx triplets with setuid,
/// setgid and sticky shown as s/S and t/T.
pub fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match mode & S_IFMT {
        S_IFREG => '-',
        S_IFDIR => 'd',
        S_IFCHR => 'c',
        S_IFBLK => 'b',
        S_IFIFO => 'p',
        S_IFLNK => 'l',
        S_IFSOCK => 's',
        _ => '?',
    });
    // (read bit, write bit, exec bit, special bit, letter when special+exec)
    let triplets = [
        (0o400, 0o200, 0o100, 0o4000, 's'),
        (0o040, 0o020, 0o010, 0o2000, 's'),
        (0o004, 0o002, 0o001, 0o1000, 't'),
    ];
    for (r, w, x, special, letter) in triplets {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        let exec = mode & x != 0;
        s.push(match (mode & special != 0, exec) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_ls() {
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o104750), "-rwsr-x---");
        assert_eq!(mode_string(0o104650), "-rwSr-x---");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o020666), "crw-rw-rw-");
        assert_eq!(mode_string(0o060660), "brw-rw----");
        assert_eq!(mode_string(0o010644), "prw-r--r--");
        assert_eq!(mode_string(0o140755), "srwxr-xr-x");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
        assert_eq!(mode_string(0o041776), "drwxrwxrwT");
        assert_eq!(mode_string(0o102770), "-rwxrws---");
        assert_eq!(mode_string(0o000644), "?rw-r--r--");
    }

    #[test]
    fn timespec_normalizes_negative_and_large_ns() {
        assert_eq!(
            Timespec::normalized(0, -1),
            Some(Timespec {
                sec: -1,
                nsec: 999_999_999
            })
        );
        assert_eq!(
            Timespec::normalized(5, 2_500_000_000),
            Some(Timespec {
                sec: 7,
                nsec: 500_000_000
            })
        );
        assert_eq!(Timespec::normalized(i64::MAX, 1_000_000_000), None);
    }
}

#[cfg(test)]
mod tests_fs;
