//! Thin wrappers over the Linux calls metadata needs, on paths or on open
//! descriptors ([`Target`]). None of them follows a symlink at the final
//! path component.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Timespec;

pub(crate) fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn lstat(path: &CStr) -> io::Result<libc::stat> {
    // SAFETY: libc::stat is a C struct of plain integers, for which
    // all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and outlives the call; st is a live
    // exclusive borrow of a whole struct stat, which lstat(2) fills.
    check(unsafe { libc::lstat(path.as_ptr(), &mut st) })?;
    Ok(st)
}

/// lstat(2) of `name` relative to the open directory `dir`.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: libc::stat is a C struct of plain integers, for which
    // all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: dir is a borrowed descriptor, so open for the whole call;
    // name is NUL-terminated and outlives it; st is a live exclusive borrow
    // of a whole struct stat, which fstatat(2) fills.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// Names of all extended attributes, in the order the kernel lists them.
pub(crate) fn llistxattr(path: &CStr) -> io::Result<Vec<Vec<u8>>> {
    let buf = grow_read(|buf, len| {
        // SAFETY: path is NUL-terminated and outlives the call; grow_read
        // passes either (null, 0), which only asks for the size, or a live
        // buffer of exactly len bytes, of which the kernel writes at most len.
        unsafe { libc::llistxattr(path.as_ptr(), buf.cast(), len) }
    })?
    .unwrap_or_default();
    Ok(split_names(&buf))
}

/// The names in a listxattr(2) buffer: NUL-terminated, one after another.
fn split_names(buf: &[u8]) -> Vec<Vec<u8>> {
    buf.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Value of one extended attribute; None if it does not exist (it may have
/// been removed between listing and reading).
pub(crate) fn lgetxattr(path: &CStr, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    grow_read(|buf, len| {
        // SAFETY: path and name are NUL-terminated and outlive the call;
        // grow_read passes either (null, 0), which only asks for the size,
        // or a live buffer of exactly len bytes, written at most len bytes.
        unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.cast(), len) }
    })
}

/// Calls a size-query-then-read syscall until the value fits (it may grow
/// between the two calls). ENODATA means "absent". `call` gets either a
/// null pointer with length 0 or a pointer to a live buffer of exactly the
/// length given, which it must not write past.
fn grow_read(mut call: impl FnMut(*mut u8, usize) -> isize) -> io::Result<Option<Vec<u8>>> {
    for _ in 0..16 {
        let need = call(std::ptr::null_mut(), 0);
        if need < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENODATA) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let mut buf = vec![0u8; need as usize];
        if need == 0 {
            return Ok(Some(buf));
        }
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => continue,
            Some(libc::ENODATA) => return Ok(None),
            _ => return Err(e),
        }
    }
    Err(io::Error::other("extended attribute keeps changing size"))
}

pub(crate) fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: path and name are NUL-terminated and outlive the call; the
    // kernel reads exactly value.len() bytes from value, a live slice.
    check(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// Removes an attribute; an absent one is not an error.
pub(crate) fn lremovexattr(path: &CStr, name: &CStr) -> io::Result<()> {
    // SAFETY: path and name are NUL-terminated and outlive the call, which
    // only reads them.
    match check(unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        other => other,
    }
}

pub(crate) fn readlink(path: &Path) -> io::Result<Vec<u8>> {
    Ok(std::fs::read_link(path)?.into_os_string().into_vec())
}

use std::os::unix::ffi::OsStringExt;

/// Opens a regular file or directory read-only for the flags ioctl. Like
/// bup it asks for O_NOATIME (so a backup does not touch atimes) and
/// retries without it when not the owner (EPERM). O_NOFOLLOW and
/// O_NONBLOCK guard against a path swapped for a symlink or fifo since the
/// lstat. (std's File owns and closes the descriptor, and adds O_CLOEXEC.)
fn open_for_flags(path: &CStr) -> io::Result<File> {
    let path = Path::new(OsStr::from_bytes(path.to_bytes()));
    let open = |extra| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY | extra)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    }
}

/// FS_IOC_GETFLAGS. The kernel writes an int, FUSE a long; like bup we pass
/// a zeroed long and keep the low 32 bits (little-endian assumption, as in
/// bup, which disables attrs on big-endian 64-bit).
pub(crate) fn get_flags(path: &CStr) -> io::Result<u32> {
    let fd = open_for_flags(path)?;
    get_flags_fd(fd.as_fd())
}

fn get_flags_fd(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut attr: libc::c_long = 0;
    // SAFETY: fd is borrowed, so open for the call; FS_IOC_GETFLAGS
    // writes one int (a long through FUSE) to its argument, and attr is a
    // live exclusive borrow of a long, big enough for either.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut attr) })?;
    Ok(attr as u32)
}

/// Reads the current flags and lets `decide` compute the new ones from
/// them; only calls FS_IOC_SETFLAGS when they differ.
pub(crate) fn update_flags(path: &CStr, decide: impl FnOnce(u32) -> u32) -> io::Result<()> {
    let fd = open_for_flags(path)?;
    update_flags_fd(fd.as_fd(), decide)
}

fn update_flags_fd(fd: BorrowedFd<'_>, decide: impl FnOnce(u32) -> u32) -> io::Result<()> {
    let current = get_flags_fd(fd)?;
    let wanted = decide(current);
    if wanted == current {
        return Ok(());
    }
    let attr: libc::c_long = wanted as libc::c_long;
    // SAFETY: fd is borrowed, so open for the call; FS_IOC_SETFLAGS reads
    // one int (a long through FUSE) from its argument, and attr is a live
    // long.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &attr) })
}

/// lchown(2); None leaves that id unchanged.
pub(crate) fn lchown(path: &CStr, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    std::os::unix::fs::lchown(OsStr::from_bytes(path.to_bytes()), uid, gid)
}

/// chmod without following a symlink at the path. glibc implements
/// AT_SYMLINK_NOFOLLOW for non-symlinks; where it cannot (EOPNOTSUPP on an
/// old kernel or C library) we fall back to chmod after checking the node
/// is not a symlink.
pub(crate) fn lchmod(path: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: path is NUL-terminated and outlives the call, which only
    // reads it; AT_FDCWD needs no open descriptor.
    let rc = unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            path.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(rc) {
        Err(e)
            if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                || e.raw_os_error() == Some(libc::ENOSYS) =>
        {
            if lstat(path)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
                return Err(e);
            }
            // SAFETY: path is NUL-terminated and outlives the call, which
            // only reads it.
            check(unsafe { libc::chmod(path.as_ptr(), mode as libc::mode_t) })
        }
        other => other,
    }
}

pub(crate) fn lutimens(path: &CStr, atime: Timespec, mtime: Timespec) -> io::Result<()> {
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: path is NUL-terminated and outlives the call; utimensat(2)
    // reads exactly two timespecs from ts, a live array of two.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// The node metadata is applied to: a path (never followed at its last
/// component), or a descriptor restore holds open, which needs no path
/// lookup at all (a lookup through `/proc/self/fd` costs more than the
/// call it serves, tens of thousands of times per restore).
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Path(&'a CStr),
    Open(BorrowedFd<'a>),
}

impl Target<'_> {
    pub(crate) fn stat(self) -> io::Result<libc::stat> {
        match self {
            Target::Path(path) => lstat(path),
            Target::Open(fd) => {
                // SAFETY: libc::stat is a C struct of plain integers, for
                // which all-zero bytes are a valid value.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: fd is borrowed, so open for the call; st is a live
                // exclusive borrow of a whole struct stat, which fstat fills.
                check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
                Ok(st)
            }
        }
    }

    /// chown; None leaves that id unchanged.
    pub(crate) fn chown(self, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        match self {
            Target::Path(path) => lchown(path, uid, gid),
            Target::Open(fd) => std::os::unix::fs::fchown(fd, uid, gid),
        }
    }

    pub(crate) fn chmod(self, mode: u32) -> io::Result<()> {
        match self {
            Target::Path(path) => lchmod(path, mode),
            // SAFETY: fd is borrowed, so open for the call.
            Target::Open(fd) => check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }),
        }
    }

    pub(crate) fn set_times(self, atime: Timespec, mtime: Timespec) -> io::Result<()> {
        match self {
            Target::Path(path) => lutimens(path, atime, mtime),
            Target::Open(fd) => {
                let ts = [timespec(atime), timespec(mtime)];
                // SAFETY: fd is borrowed, so open for the call; futimens(3)
                // reads exactly two timespecs from ts, a live array of two.
                check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
            }
        }
    }

    /// [`update_flags`] of this node.
    pub(crate) fn update_flags(self, decide: impl FnOnce(u32) -> u32) -> io::Result<()> {
        match self {
            Target::Path(path) => update_flags(path, decide),
            Target::Open(fd) => update_flags_fd(fd, decide),
        }
    }

    pub(crate) fn list_xattrs(self) -> io::Result<Vec<Vec<u8>>> {
        match self {
            Target::Path(path) => llistxattr(path),
            Target::Open(fd) => {
                let buf = grow_read(|buf, len| {
                    // SAFETY: fd is borrowed, so open for the call; grow_read
                    // passes either (null, 0), which only asks for the size,
                    // or a live buffer of exactly len bytes, written at most
                    // len bytes.
                    unsafe { libc::flistxattr(fd.as_raw_fd(), buf.cast(), len) }
                })?
                .unwrap_or_default();
                Ok(split_names(&buf))
            }
        }
    }

    pub(crate) fn get_xattr(self, name: &CStr) -> io::Result<Option<Vec<u8>>> {
        match self {
            Target::Path(path) => lgetxattr(path, name),
            Target::Open(fd) => grow_read(|buf, len| {
                // SAFETY: fd is borrowed, so open for the call; name is
                // NUL-terminated and outlives it; grow_read passes either
                // (null, 0) or a live buffer of exactly len bytes.
                unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.cast(), len) }
            }),
        }
    }

    pub(crate) fn set_xattr(self, name: &CStr, value: &[u8]) -> io::Result<()> {
        match self {
            Target::Path(path) => lsetxattr(path, name, value),
            // SAFETY: fd is borrowed, so open for the call; name is
            // NUL-terminated and outlives it; the kernel reads exactly
            // value.len() bytes from value, a live slice.
            Target::Open(fd) => check(unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }),
        }
    }

    /// Removes an attribute; an absent one is not an error.
    pub(crate) fn remove_xattr(self, name: &CStr) -> io::Result<()> {
        match self {
            Target::Path(path) => lremovexattr(path, name),
            Target::Open(fd) => {
                // SAFETY: fd is borrowed, so open for the call; name is
                // NUL-terminated and outlives it.
                match check(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) }) {
                    Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
                    other => other,
                }
            }
        }
    }
}

fn timespec(t: Timespec) -> libc::timespec {
    libc::timespec {
        tv_sec: t.sec as libc::time_t,
        tv_nsec: t.nsec as libc::c_long,
    }
}
