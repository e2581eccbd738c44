//! Capture -> apply round trips on real files, and a byte-for-byte
//! comparison with real bup 0.33. Several tests need root (mknod, chown),
//! setfacl or bup: without them they print "skipped: ..." and return early,
//! except under CI=true, where they fail (crate::test_support::require).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::vint::put_bvec;
use super::*;
use crate::test_support::{cannot_run, require, require_root};

fn is_root() -> bool {
    super::ids::euid() == 0
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    sys::lsetxattr(&c(path), &CString::new(name).unwrap(), value).unwrap();
}

fn set_times(path: &Path, atime: Timespec, mtime: Timespec) {
    sys::lutimens(&c(path), atime, mtime).unwrap();
}

fn mkfifo(path: &Path) {
    // SAFETY: the temporary CString lives to the end of the statement, so
    // the pointer is NUL-terminated and valid for the call, which reads it.
    assert_eq!(unsafe { libc::mkfifo(c(path).as_ptr(), 0o640) }, 0);
}

fn mknod_chr(path: &Path, major: u32, minor: u32) {
    let dev = libc::makedev(major, minor);
    // SAFETY: as in mkfifo: the temporary CString outlives the call.
    let rc = unsafe { libc::mknod(c(path).as_ptr(), libc::S_IFCHR | 0o620, dev) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
}

fn capture(path: &Path) -> Metadata {
    let st = lstat(path).unwrap();
    let (m, warnings) = Capturer::new().capture(path, &st).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    m
}

/// Everything metadata apply restores: not ctime (cannot be set), and not
/// a regular file's size (that is the content's job).
fn restorable(m: &Metadata) -> Metadata {
    Metadata {
        ctime: Timespec::default(),
        size: if m.is_regular() { None } else { m.size },
        ..m.clone()
    }
}

/// Creates an empty node of the same type as `m` at `path`, as restore
/// would, then applies `m`.
fn recreate(path: &Path, m: &Metadata) {
    match m.file_type() {
        S_IFREG => drop(std::fs::File::create(path).unwrap()),
        S_IFDIR => std::fs::create_dir(path).unwrap(),
        S_IFLNK => std::os::unix::fs::symlink(
            std::ffi::OsStr::from_bytes(m.symlink_target.as_ref().unwrap()),
            path,
        )
        .unwrap(),
        S_IFIFO => mkfifo(path),
        S_IFCHR => {
            // SAFETY: as in mkfifo: the temporary CString outlives the call.
            let rc = unsafe { libc::mknod(c(path).as_ptr(), libc::S_IFCHR | 0o600, m.rdev) };
            assert_eq!(rc, 0);
        }
        t => panic!("unexpected type {t:o}"),
    }
    apply(path, m, &ApplyOptions::default()).unwrap_or_else(|e| panic!("{e:?}"));
}

#[test]
fn capture_apply_round_trip_of_each_type() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    let old = Timespec {
        sec: -1_000_000_000,
        nsec: 123_456_789,
    };
    let new = Timespec {
        sec: 1_700_000_000,
        nsec: 987_654_321,
    };

    let file = src.join("file");
    std::fs::write(&file, b"hello").unwrap();
    set_xattr(&file, "user.one", b"1");
    set_xattr(&file, "user.bin", &[0, 255, 10]);
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o4751)).unwrap();
    set_times(&file, old, new);

    let sub = src.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::os::unix::fs::PermissionsExt::from_mode(0o1750)).unwrap();
    set_xattr(&sub, "user.d", b"dir");
    set_times(&sub, new, old);

    let dangling = src.join("dangling");
    std::os::unix::fs::symlink("does/not/exist", &dangling).unwrap();
    set_times(&dangling, old, old);

    let fifo = src.join("fifo");
    mkfifo(&fifo);
    set_times(&fifo, new, new);

    let mut names = vec!["file", "sub", "dangling", "fifo"];
    if require_root("mknod of a device node") {
        mknod_chr(&src.join("chr"), 1, 3);
        names.push("chr");
    }

    for name in names {
        let m = capture(&src.join(name));
        let out = dst.join(name);
        recreate(&out, &m);
        let back = capture(&out);
        assert_eq!(restorable(&back), restorable(&m), "{name}");
    }

    let f = capture(&file);
    assert_eq!(f.size, Some(5));
    assert_eq!(f.mtime, new);
    assert_eq!(f.atime, old);
    assert_eq!(f.mode, 0o104751);
    assert!(f.xattrs.contains(&(b"user.bin".to_vec(), vec![0, 255, 10])));
    let d = capture(&dangling);
    assert_eq!(d.symlink_target.as_deref(), Some(&b"does/not/exist"[..]));
    assert_eq!(d.size, Some(14));
    assert_eq!(
        capture(&sub).size,
        None,
        "bup stores no size for directories"
    );
    assert_eq!(capture(&fifo).size, None);
    if is_root() {
        let chr = capture(&src.join("chr"));
        assert_eq!(chr.rdev, libc::makedev(1, 3));
        assert_eq!(chr.size, None);
    }
}

#[test]
fn apply_replaces_stale_xattrs_and_refuses_a_different_type() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, b"").unwrap();
    set_xattr(&a, "user.keep", b"k");
    let m = capture(&a);
    let b = dir.path().join("b");
    std::fs::write(&b, b"").unwrap();
    set_xattr(&b, "user.stale", b"s");
    set_xattr(&b, "user.keep", b"old");
    apply(&b, &m, &ApplyOptions::default()).unwrap();
    assert_eq!(
        capture(&b).xattrs,
        vec![(b"user.keep".to_vec(), b"k".to_vec())]
    );

    // A symlink where a file was expected is never followed.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let before = capture(&a);
    let errs = apply(
        &link,
        &Metadata {
            mode: 0o100600,
            ..m.clone()
        },
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, link);
    assert_eq!(capture(&a), before);

    let missing = dir.path().join("missing");
    let errs = apply(&missing, &m, &ApplyOptions::default()).unwrap_err();
    assert_eq!(errs[0].op, "lstat");
}

#[test]
fn owner_by_name_unless_numeric_ids() {
    if !require_root("lchown to other users") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"").unwrap();
    let mut m = capture(&p);
    // Recorded id 12345 under the name "nobody", which exists here.
    m.uid = 12345;
    m.gid = 12346;
    m.user = b"nobody".to_vec();
    m.group = b"no such group here".to_vec();
    apply(&p, &m, &ApplyOptions::default()).unwrap();
    let st = lstat(&p).unwrap();
    assert_eq!(
        (st.uid, st.gid),
        (65534, 12346),
        "name wins for uid; unknown group name keeps gid"
    );
    apply(&p, &m, &ApplyOptions { numeric_ids: true }).unwrap();
    let st = lstat(&p).unwrap();
    assert_eq!((st.uid, st.gid), (12345, 12346));
    // Id 0 is never remapped by name.
    m.uid = 0;
    apply(&p, &m, &ApplyOptions::default()).unwrap();
    assert_eq!(lstat(&p).unwrap().uid, 0);

    // Capture records names; lchown-then-chmod keeps setuid.
    m.uid = 65534;
    m.mode = 0o104755;
    apply(&p, &m, &ApplyOptions::default()).unwrap();
    let back = capture(&p);
    assert_eq!(back.user, b"nobody");
    assert_eq!(back.mode, 0o104755);
}

#[test]
fn attr_flags_are_restored_after_times() {
    if !require_root("setting the immutable flag") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"x").unwrap();
    let cp = c(&p);
    match sys::get_flags(&cp) {
        Ok(_) => {}
        Err(e) => {
            cannot_run(
                &format!("a temp dir file system with attr flags ({e})"),
                "point TMPDIR at ext4, xfs or btrfs",
            );
            return;
        }
    }
    let immutable = 0x10;
    let nodump = 0x40;
    let mut m = capture(&p);
    m.linux_attr = Some(m.linux_attr.unwrap_or(0) | immutable | nodump);
    m.mtime = Timespec {
        sec: 1_000_000_000,
        nsec: 5,
    };
    m.xattrs = vec![(b"user.x".to_vec(), b"y".to_vec())];
    let q = dir.path().join("g");
    std::fs::write(&q, b"x").unwrap();
    let result = apply(&q, &m, &ApplyOptions::default());
    let back = capture(&q);
    // Let the temp dir be removed whatever happened.
    sys::update_flags(&c(&q), |f| f & !immutable).unwrap();
    result.unwrap();
    assert_eq!(
        back.linux_attr.unwrap() & (immutable | nodump),
        immutable | nodump
    );
    assert_eq!(back.mtime, m.mtime);
    assert_eq!(back.xattrs, m.xattrs);
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files with ACLs made by setfacl, shared by the ACL tests.
fn acl_fixture(root: &Path) -> (PathBuf, PathBuf) {
    let file = root.join("aclfile");
    std::fs::write(&file, b"acl").unwrap();
    run(Command::new("setfacl")
        .args(["-m", "u:nobody:r,g:daemon:rw"])
        .arg(&file));
    let dir = root.join("acldir");
    std::fs::create_dir(&dir).unwrap();
    run(Command::new("setfacl")
        .args(["-d", "-m", "g:daemon:rx"])
        .arg(&dir));
    (file, dir)
}

#[test]
fn acls_capture_like_libacl_and_restore() {
    if !require("setfacl") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (file, dir) = acl_fixture(root.path());
    let f = capture(&file);
    let acl = f.acl.clone().unwrap();
    assert_eq!(
        acl.access_text,
        b"u::rw-,u:nobody:r--,g::r--,g:daemon:rw-,m::rw-,o::r--"
    );
    assert_eq!(
        acl.access_numeric,
        b"u::rw-,u:65534:r--,g::r--,g:1:rw-,m::rw-,o::r--"
    );
    assert!(acl.default_text.is_empty());
    let d = capture(&dir);
    let dacl = d.acl.clone().unwrap();
    assert_eq!(dacl.access_text, b"u::rwx,g::r-x,o::r-x");
    assert_eq!(
        dacl.default_text,
        b"u::rwx,g::r-x,g:daemon:r-x,m::r-x,o::r-x"
    );
    assert_eq!(dacl.default_numeric, b"u::rwx,g::r-x,g:1:r-x,m::r-x,o::r-x");

    // Restore from the ACL record alone (no raw xattr copy) and from both.
    for keep_xattrs in [false, true] {
        let out = root.path().join(format!("out{keep_xattrs}"));
        std::fs::create_dir(&out).unwrap();
        for (name, m) in [("f", &f), ("d", &d)] {
            let mut m = m.clone();
            if !keep_xattrs {
                m.xattrs.clear();
            }
            recreate(&out.join(name), &m);
            let back = capture(&out.join(name));
            assert_eq!(back.acl, m.acl, "{name} keep_xattrs={keep_xattrs}");
            assert_eq!(back.mode, m.mode);
        }
    }
    // A plain file has no ACL record.
    let plain = root.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    assert_eq!(capture(&plain).acl, None);
}

/// `bup meta --create` writes, per path, a path record then exactly the
/// records of Metadata.encode(); compare ours byte for byte. bup meta does
/// not apply save's size normalization, so sizes are set as it sees them.
#[test]
fn encoding_matches_real_bup() {
    if !require("bup") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    std::fs::write(p.join("file"), b"some content").unwrap();
    set_xattr(&p.join("file"), "user.note", b"hello");
    set_times(
        &p.join("file"),
        Timespec {
            sec: -86_400,
            nsec: 1,
        },
        Timespec {
            sec: 1_600_000_000,
            nsec: 999_999_999,
        },
    );
    std::fs::create_dir(p.join("dir")).unwrap();
    std::os::unix::fs::symlink("nowhere", p.join("link")).unwrap();
    mkfifo(&p.join("fifo"));
    let mut names = vec!["file", "dir", "link", "fifo"];
    if require_root("mknod of a device node") {
        mknod_chr(&p.join("chr"), 1, 5);
        names.push("chr");
    }
    if require("setfacl") {
        acl_fixture(p);
        names.extend(["aclfile", "acldir"]);
    }

    // Reading a symlink or listing a directory moves its atime once
    // (relatime), and bup meta does both after its lstat. A first run
    // settles the atimes so that both captures below see the same ones.
    let out = p.join("out.meta");
    let bup_meta = || {
        run(Command::new("bup")
            .current_dir(p)
            .args(["meta", "--create", "-f"])
            .arg(&out)
            .args(&names));
        std::fs::read(&out).unwrap()
    };
    bup_meta();

    let mut ours = Vec::new();
    let mut capturer = Capturer::new();
    let mut expected_meta = Vec::new();
    for name in &names {
        let path = p.join(name);
        let st = lstat(&path).unwrap();
        let (mut m, warnings) = capturer.capture(&path, &st).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        if m.size.is_none() {
            m.size = Some(st.size);
        }
        // bup meta names directories with a trailing slash.
        let mut archive = name.as_bytes().to_vec();
        if st.is_dir() {
            archive.push(b'/');
        }
        let mut inner = Vec::new();
        put_bvec(&mut inner, &archive);
        ours.push(1);
        put_bvec(&mut ours, &inner);
        encode_entry(Some(&m), &mut ours);
        expected_meta.push(Some(m));
    }
    let bup_bytes = bup_meta();
    if ours != bup_bytes {
        panic!(
            "encoding differs from bup's\nours: {}\nbup:  {}",
            hex(&ours),
            hex(&bup_bytes)
        );
    }
    assert_eq!(decode_all(&bup_bytes).unwrap(), expected_meta);
    eprintln!(
        "bup cross-check: {} entries, {} bytes identical ({names:?})",
        names.len(),
        bup_bytes.len()
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A real `bup save` writes each tree's `.bupm` with save's normalization
/// (no size for directories, fifos, devices). Decode the root `.bupm` bup
/// wrote and compare it with our capture of the same paths, and our
/// encoding with bup's bytes.
#[test]
fn bupm_written_by_bup_save_matches_our_capture() {
    if !require("bup") || !require("git") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("b-file"), b"data").unwrap();
    set_xattr(&src.join("b-file"), "user.k", b"v");
    std::fs::create_dir(src.join("c-dir")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", src.join("d-link")).unwrap();
    mkfifo(&src.join("a-fifo"));
    if require("setfacl") {
        run(Command::new("setfacl")
            .args(["-m", "u:nobody:rw"])
            .arg(src.join("b-file")));
    }
    // Settle atimes that the first readlink/readdir would move (relatime).
    run(Command::new("ls").arg("-laR").arg(&src));
    capture(&src.join("d-link"));

    let repo = root.path().join("repo");
    let bup = |args: &[&str]| {
        run(Command::new("bup")
            .env("BUP_DIR", &repo)
            .current_dir(root.path())
            .args(args));
    };
    bup(&["init"]);
    bup(&["index", "src"]);
    bup(&["save", "--strip", "-n", "t", "src"]);
    // bup hashsplits every .bupm: the root one is usually one blob, but
    // when a split point falls inside it (its times differ on every run) it
    // is a chunk tree, whose blobs, in name order (fixed-width hex offsets),
    // make up the content.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let bupm = match &git(&["cat-file", "-t", "t:.bupm"])[..] {
        b"blob\n" => git(&["cat-file", "blob", "t:.bupm"]),
        _ => String::from_utf8(git(&["ls-tree", "-r", "--object-only", "t:.bupm"]))
            .unwrap()
            .lines()
            .flat_map(|id| git(&["cat-file", "blob", id]))
            .collect(),
    };

    // Entry order: the directory itself, then non-directories by name.
    let mut expected = vec![Some(capture(&src))];
    for name in ["a-fifo", "b-file", "d-link"] {
        expected.push(Some(capture(&src.join(name))));
    }
    let decoded = decode_all(&bupm).unwrap();
    assert_eq!(decoded, expected);
    let mut ours = Vec::new();
    for m in &expected {
        encode_entry(m.as_ref(), &mut ours);
    }
    assert_eq!(hex(&ours), hex(&bupm));
    eprintln!(
        "bup save cross-check: .bupm of {} entries, {} bytes identical",
        expected.len(),
        bupm.len()
    );
}
