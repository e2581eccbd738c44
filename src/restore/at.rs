//! File-system calls relative to directory descriptors, none of which
//! follows a symlink.
//!
//! Restore opens its target once and then reaches every entry through
//! descriptors of directories it opened itself with `O_NOFOLLOW`, never
//! through a path. So neither a symlink the restore has just created from
//! the snapshot nor one that was already inside the target (or is swapped
//! in while the restore runs) can redirect a write or a removal: the worst
//! it can do is make one call fail.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing
    // else holds it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A name as a C string; a NUL byte makes it no name at all.
pub fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Opens the restore target. It may be a symlink: the user named it.
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let c = cname(path.as_os_str().as_bytes())?;
    // SAFETY: plain open(2) on a NUL-terminated path.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// lstat of `name` in `dir`; None when there is no such entry.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: stat is plain data, filled by fstatat on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, st lives across the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(rc) {
        Ok(()) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Opens the directory `name` in `dir`; fails (ELOOP, ENOTDIR) rather than
/// follow a symlink or open anything but a directory.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor and NUL-terminated name.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
}

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

/// Creates a new regular file `name` in `dir`, failing if anything (a
/// symlink included) already has that name.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<File> {
    // SAFETY: valid descriptor and NUL-terminated name; O_CREAT takes the
    // mode as a variadic argument, passed as c_uint like the C ABI wants.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    Ok(File::from(fd))
}

pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a valid descriptor.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

pub fn mknod_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    rdev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) })
}

/// Hard-links `old_name` in `old_dir` as `new_name` in `new_dir`. Flags 0:
/// a symlink at `old_name` is linked itself, never followed.
pub fn link_at(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    // SAFETY: valid descriptors and NUL-terminated names.
    check(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            old_name.as_ptr(),
            new_dir.as_raw_fd(),
            new_name.as_ptr(),
            0,
        )
    })
}

/// Removes the entry `name` of `dir`, a directory with everything in it.
/// Only ever unlinks inside `dir`: a symlink is removed, never followed,
/// and a directory is emptied through a descriptor opened with
/// `O_NOFOLLOW`.
pub fn remove_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let Some(st) = stat_at(dir, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        // SAFETY: valid descriptor and NUL-terminated name.
        return check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) });
    }
    let sub = open_dir_at(dir, name)?;
    for child in read_names(sub.try_clone()?)? {
        remove_at(sub.as_fd(), &child)?;
    }
    drop(sub);
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
}

/// The names in a directory, without `.` and `..`. Takes ownership of
/// `dir` (readdir's stream closes it).
fn read_names(dir: OwnedFd) -> io::Result<Vec<CString>> {
    let raw = dir.into_raw_fd();
    // SAFETY: raw is an open directory descriptor we own; on success the
    // stream owns it, on failure we close it.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so the descriptor is still ours.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: stream is a valid, open directory stream.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: d_name of a dirent from readdir is NUL-terminated and
        // valid until the next readdir on this stream; we copy it now.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    };
    // SAFETY: stream is valid and closed exactly once.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn c(name: &str) -> CString {
        CString::new(name).expect("no NUL")
    }

    #[test]
    fn remove_at_removes_symlinks_and_never_what_they_point_at() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        let target = tmp.path().join("target");
        fs::create_dir_all(outside.join("sub")).expect("mkdir");
        fs::write(outside.join("sub/kept"), b"kept").expect("write");
        fs::create_dir_all(target.join("d/e")).expect("mkdir");
        symlink(&outside, target.join("link")).expect("symlink");
        symlink(&outside, target.join("d/link")).expect("symlink");
        symlink(outside.join("sub"), target.join("d/e/link")).expect("symlink");
        fs::write(target.join("d/e/f"), b"f").expect("write");

        let root = open_root(&target).expect("open target");
        remove_at(root.as_fd(), &c("link")).expect("remove link");
        remove_at(root.as_fd(), &c("d")).expect("remove d");
        remove_at(root.as_fd(), &c("absent")).expect("absent is no error");

        assert_eq!(fs::read_dir(&target).expect("read").count(), 0);
        assert_eq!(fs::read(outside.join("sub/kept")).expect("kept"), b"kept");
    }

    #[test]
    fn open_dir_at_refuses_a_symlink_to_a_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("real")).expect("mkdir");
        symlink(tmp.path().join("real"), tmp.path().join("link")).expect("symlink");
        let root = open_root(tmp.path()).expect("open");
        assert!(open_dir_at(root.as_fd(), &c("real")).is_ok());
        let e = open_dir_at(root.as_fd(), &c("link")).expect_err("followed a symlink");
        // With O_DIRECTORY the kernel says ENOTDIR; ELOOP without it.
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)),
            "{e}"
        );
    }
}
