//! `.bupm` metadata -> FUSE attributes.

use super::inodes::NodeInfo;
use crate::meta::Timespec;
use crate::view::NodeType;
use fuser::{FileAttr, FileType, INodeNo};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Advertised I/O size: `cp` and friends size their buffers from it.
const BLKSIZE: u32 = 128 * 1024;

pub fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        // nsec counts forward from `sec`, also before 1970.
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec.into())
    }
}

pub fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// The kernel's 32-bit device encoding (`new_decode_dev`) of a saved
/// `st_rdev` (glibc's 64-bit encoding).
fn kernel_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev as libc::dev_t);
    let minor = libc::minor(rdev as libc::dev_t);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Attributes of a directory that exists only in the view (root, `.tag`, a
/// backup name): readable by all, owned by whoever mounted.
pub fn synthetic_dir(ino: u64, uid: u32, gid: u32, time: SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 1,
        uid,
        gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// bup's `latest`: mode 0120755, size of the target; dated `time`, its
/// snapshot's (bup shows 1970).
pub fn latest_link(ino: u64, target_len: usize, uid: u32, gid: u32, time: SystemTime) -> FileAttr {
    FileAttr {
        size: target_len as u64,
        kind: FileType::Symlink,
        ..synthetic_dir(ino, uid, gid, time)
    }
}

/// Attributes of a saved node. `size` is the content size for files and
/// symlinks, `nlink` its hardlink group's size (both resolved by the caller).
pub fn node_attr(ino: u64, info: &NodeInfo, size: u64, nlink: u32, uid: u32, gid: u32) -> FileAttr {
    let node = &info.node;
    let mode = node.mode();
    // Saved without metadata (plain git, bup split): what ls -l shows and
    // restore applies, owned by whoever mounted.
    let time = info.snapshot.as_ref().map_or(0, |s| s.time);
    let unsaved;
    let meta = match &node.meta {
        Some(m) => m,
        None => {
            unsaved = node.unsaved_meta(time, uid, gid);
            &unsaved
        }
    };
    let (uid, gid) = (meta.uid, meta.gid);
    let size = match node.node_type {
        NodeType::Regular | NodeType::Symlink => size,
        NodeType::Directory | NodeType::Special => 0,
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: system_time(meta.atime),
        mtime: system_time(meta.mtime),
        ctime: system_time(meta.ctime),
        crtime: system_time(meta.ctime),
        kind: file_type(mode),
        perm: (mode & 0o7777) as u16,
        // Directories say 1 ("unknown"), so `find` does not use the link
        // count to skip subdirectories.
        nlink: if node.node_type == NodeType::Directory {
            1
        } else {
            nlink.max(1)
        },
        uid,
        gid,
        rdev: kernel_rdev(meta.rdev),
        blksize: BLKSIZE,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        let dev = libc::makedev(8, 1);
        assert_eq!(kernel_rdev(dev), (8 << 8) | 1);
        let big = libc::makedev(259, 300);
        assert_eq!(
            kernel_rdev(big),
            (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12)
        );
    }

    #[test]
    fn times_before_1970_keep_their_nanoseconds() {
        let t = system_time(Timespec { sec: -2, nsec: 5 });
        assert_eq!(
            UNIX_EPOCH.duration_since(t).unwrap(),
            Duration::new(1, 999_999_995)
        );
    }
}
