//! Mount points that are not mounted. A source path that `/etc/fstab`
//! mounts a file system on, found empty because nothing is mounted there
//! (a disk that failed to come up, an NFS share that timed out), would be
//! saved as an empty directory without a word; the save warns instead.
//!
//! The rule, kept simple so that it cannot be wrong in the other direction:
//! the directory is empty, `/etc/fstab` names it as a mount point, and
//! `/proc/self/mounts` does not (or, without `/proc`, it is on the same
//! device as its parent). An empty directory that is not in fstab is an
//! empty directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the file systems that should be mounted are listed.
pub const FSTAB: &str = "/etc/fstab";
/// Where the kernel lists what is mounted now (for this process).
pub const MOUNTS: &str = "/proc/self/mounts";

/// The mount points (second field) of an fstab(5) or /proc/mounts text.
/// Comments, blank lines and swap entries ("none", "swap") are skipped;
/// octal escapes (`\040` for a space) are decoded.
pub fn mount_points(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with('/'))
        .map(|p| PathBuf::from(std::ffi::OsString::from(unescape(p))))
        .collect()
}

/// Decodes fstab's `\ooo` octal escapes; anything else is kept as written.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `dir` (absolute, a directory) looks like a mount point with
/// nothing mounted on it, judged from the fstab at `fstab` and the mount
/// table at `mounts`. Any file that cannot be read makes the answer "no":
/// this only adds a warning, it never stops a save.
pub fn is_unmounted_mount_point(dir: &Path, fstab: &Path, mounts: &Path) -> bool {
    let Ok(fstab_text) = std::fs::read_to_string(fstab) else {
        return false;
    };
    if !mount_points(&fstab_text).iter().any(|p| same_path(p, dir)) {
        return false;
    }
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if !empty {
        return false;
    }
    match std::fs::read_to_string(mounts) {
        Ok(text) => !mount_points(&text).iter().any(|p| same_path(p, dir)),
        Err(_) => same_device_as_parent(dir),
    }
}

/// fstab may spell a mount point with a trailing slash.
fn same_path(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

fn same_device_as_parent(dir: &Path) -> bool {
    let Some(parent) = dir.parent() else {
        return false;
    };
    match (std::fs::metadata(dir), std::fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() == p.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FSTAB_TEXT: &str = "# /etc/fstab\n\
        UUID=1234 / ext4 errors=remount-ro 0 1\n\
        \n\
        /dev/sdb1   /srv/data   ext4 defaults 0 2\n\
        server:/export /mnt/with\\040space/ nfs defaults 0 0\n\
        /swapfile none swap sw 0 0\n";

    #[test]
    fn fstab_mount_points_skip_comments_and_swap_and_decode_escapes() {
        assert_eq!(
            mount_points(FSTAB_TEXT),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/srv/data"),
                PathBuf::from("/mnt/with space/"),
            ]
        );
        // A backslash not followed by three octal digits stays as written.
        assert_eq!(unescape("/a\\9b\\04"), "/a\\9b\\04");
    }

    #[test]
    fn empty_mount_point_named_by_fstab_and_not_mounted_is_flagged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = tmp.path().join("data");
        std::fs::create_dir(&mount).expect("mkdir");
        let fstab = tmp.path().join("fstab");
        let mounts = tmp.path().join("mounts");
        std::fs::write(
            &fstab,
            format!("/dev/sdb1 {}/ ext4 defaults 0 2\n", mount.display()),
        )
        .expect("fstab");
        std::fs::write(&mounts, "/dev/sda1 / ext4 rw 0 0\n").expect("mounts");
        assert!(is_unmounted_mount_point(&mount, &fstab, &mounts));
        // Mounted: listed in the mount table.
        std::fs::write(
            &mounts,
            format!("/dev/sdb1 {} ext4 rw 0 0\n", mount.display()),
        )
        .expect("mounts");
        assert!(!is_unmounted_mount_point(&mount, &fstab, &mounts));
        // Without a mount table: on its parent's device, so not mounted.
        let no_table = tmp.path().join("no-such-mounts");
        assert!(is_unmounted_mount_point(&mount, &fstab, &no_table));
        // Not empty: something is there, whatever fstab says.
        std::fs::write(mount.join("f"), b"x").expect("file");
        assert!(!is_unmounted_mount_point(&mount, &fstab, &no_table));
        // An empty directory fstab does not name is just empty.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        assert!(!is_unmounted_mount_point(&other, &fstab, &no_table));
    }
}
