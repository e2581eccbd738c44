//! Helpers shared by the unit tests of several modules, and by the
//! integration tests (`tests/common` includes this file by path, so no test
//! code ships in the library).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Deterministic pseudo-random bytes (xorshift from `seed | 1`),
/// incompressible for zlib.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a file of `len` bytes with `pieces` of data at their offsets (the
/// rest holes), synced; the file, still open.
pub fn write_pieces(path: &Path, pieces: &[(u64, Vec<u8>)], len: u64) -> File {
    let f = File::create(path).expect("create");
    f.set_len(len).expect("set_len");
    for (at, data) in pieces {
        f.write_all_at(data, *at).expect("write");
    }
    f.sync_all().expect("sync");
    f
}

/// Drops `file`'s clean pages from the page cache, so the next read is cold.
pub fn drop_cached(file: &File) {
    // SAFETY: `file` is borrowed, so its descriptor stays open for the
    // call; posix_fadvise takes only integers and touches no memory.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Everything `reader` gives, read `piece` bytes at a time (a buffer
/// pre-filled with garbage, so bytes a reader claims but does not write
/// show up).
pub fn read_in_pieces(mut reader: impl Read, piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0xaau8; piece];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Whether the tests run under CI (`CI` set to anything but `false` or
/// `0`, as CI services and `.ci/run` set it). There every test must run: a
/// green run that skipped the FUSE or bup tests would prove nothing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A test that cannot run here because `missing` is absent (e.g. "bup
/// (not found on the PATH)"); `fix` says what makes it present (e.g.
/// "apt-get install bup in .ci/run"). Under CI this fails the test with
/// both; elsewhere it prints "skipped: ..." and returns false, for
/// `if !require(..) { return; }`.
#[track_caller]
pub fn cannot_run(missing: &str, fix: &str) -> bool {
    if in_ci() {
        panic!("CI=true and this test needs {missing}: {fix} (tests must not pass by skipping)");
    }
    eprintln!("skipped: needs {missing}; {fix} (under CI=true this fails)");
    false
}

/// The executable `tool` on the PATH (or in /usr/sbin, /sbin, where daemons
/// such as sshd live and a non-root PATH may not reach).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The Debian package that provides `tool`, for the failure message.
fn package_of(tool: &str) -> &str {
    match tool {
        "setfattr" | "getfattr" => "attr",
        "setfacl" | "getfacl" => "acl",
        "chattr" | "lsattr" => "e2fsprogs",
        "setpriv" | "runuser" | "mount" | "umount" => "util-linux",
        "fusermount3" => "fuse3",
        "groff" => "groff-base",
        "systemd-analyze" => "systemd",
        "sshd" => "openssh-server",
        "ssh" => "openssh-client",
        "initdb" | "pg_ctl" | "postgres" => "postgresql",
        "psql" | "pg_dump" => "postgresql-client",
        other => other,
    }
}

/// Whether `tool` is installed; if not, see [`cannot_run`].
#[track_caller]
pub fn require(tool: &str) -> bool {
    find_tool(tool).is_some()
        || cannot_run(
            &format!("{tool} (not found on the PATH)"),
            &format!("apt-get install {} in .ci/run", package_of(tool)),
        )
}

/// Whether FUSE mounts can be made here: the /dev/fuse device and the
/// fusermount3 helper; if not, see [`cannot_run`].
#[allow(dead_code)] // the integration tests' only
#[track_caller]
pub fn require_fuse() -> bool {
    if !Path::new("/dev/fuse").exists() {
        return cannot_run(
            "/dev/fuse (no FUSE device)",
            "apt-get install fuse3 in .ci/run, and give a container --device /dev/fuse",
        );
    }
    require("fusermount3")
}

/// The effective user and group ids of the test process.
#[allow(dead_code)] // the integration tests' only
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid(2) and getegid(2) take no arguments, touch no memory
    // and cannot fail; the libc crate marks every foreign call unsafe.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether the test runs as root, which `why` needs; if not, see
/// [`cannot_run`] (CI runs as root).
#[track_caller]
pub fn require_root(why: &str) -> bool {
    // SAFETY: as in effective_ids.
    let euid = unsafe { libc::geteuid() };
    euid == 0
        || cannot_run(
            &format!("root ({why})"),
            "run the tests as root, as CI does",
        )
}
