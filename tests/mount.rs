//! `rewind mount` through the real kernel: every check uses tools that do not
//! trust rewind (diff, stat, getfattr, cat as another user, bup restore).
//! Needs root-capable FUSE (/dev/fuse and fusermount3); skipped with a
//! message where that is missing, except under CI=true, where that fails
//! (common::require_fuse).

mod common;

use common::{is_mounted, Mount};

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rewind");

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rewind(repo: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("-d").arg(repo).env("TZ", "UTC");
    c
}

/// Deterministic bytes (xorshift), half random, half text: several chunks.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len / 2 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("INSERT INTO t VALUES ({i},'row');\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
    repo: PathBuf,
    mnt: PathBuf,
}

/// A source tree with a multi-chunk file, small files, a symlink, an xattr,
/// a 0600 file and a big directory, saved once as `t` (contents at the
/// snapshot root). Everything is world-traversable so another user can try.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = root.join("src");
    fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    fs::write(src.join("big.bin"), sample(12 << 20, 7)).expect("write");
    fs::write(src.join("a.txt"), b"hello\n").expect("write");
    fs::write(src.join("empty"), b"").expect("write");
    fs::write(src.join("sub/deeper/x"), b"deep\n").expect("write");
    fs::write(src.join("shadow"), b"root:secret:1:0:99999:7:::\n").expect("write");
    fs::set_permissions(src.join("shadow"), fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    for i in 0..300 {
        fs::write(src.join(format!("sub/f{i:04}")), format!("{i}\n")).expect("write");
    }
    if common::require("setfattr") {
        run(Command::new("setfattr")
            .args(["-n", "user.color", "-v", "blue"])
            .arg(src.join("a.txt")));
    }
    let repo = root.join("repo");
    let mnt = root.join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    run(rewind(&repo).arg("init"));
    run(rewind(&repo)
        .args(["save", "-n", "t", "--date", "1700000000", "--strip"])
        .arg(&src));
    Fixture {
        _tmp: tmp,
        root,
        src,
        repo,
        mnt,
    }
}

/// A foreground mount of the fixture's repository on its mount point.
fn mount(fx: &Fixture, extra: &[&str]) -> Mount {
    Mount::at(rewind(&fx.repo), &fx.mnt).args(extra).start()
}

/// `stat` lines for every path under `dir`, relative names, sorted; sizes
/// only for non-directories (a directory's size is the file system's own).
fn stat_tree(dir: &Path, format: &str) -> String {
    let out = run(Command::new("sh").current_dir(dir).arg("-c").arg(format!(
        "find . -mindepth 1 | LC_ALL=C sort | xargs -d '\\n' stat -c '{format}'; \
         find . -mindepth 1 ! -type d | LC_ALL=C sort | xargs -d '\\n' stat -c '%n %s'"
    )));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_same_lines(want: &str, got: &str) {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let missing: Vec<_> = w.iter().filter(|l| !g.contains(l)).take(5).collect();
    let extra: Vec<_> = g.iter().filter(|l| !w.contains(l)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && w.len() == g.len(),
        "differs: expected {missing:?}, got {extra:?}"
    );
}

#[test]
fn mounted_snapshot_matches_source() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let m = mount(&fx, &[]);
    let snap = m.latest("t");
    run(Command::new("diff").arg("-r").arg(&fx.src).arg(&snap));
    // Type+mode, owner, size, mtime and ctime with nanoseconds.
    let fmt = "%n %f %u %g %y %z";
    assert_same_lines(&stat_tree(&fx.src, fmt), &stat_tree(&snap, fmt));
    // Symlink target and xattrs.
    assert_eq!(
        fs::read_link(snap.join("link")).expect("readlink"),
        Path::new("a.txt")
    );
    if common::require("getfattr") {
        let dump = |p: &Path| {
            let out = run(Command::new("getfattr")
                .args(["-d", "--absolute-names", "-m", "user\\."])
                .arg(p));
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let here = dump(&snap.join("a.txt"));
        assert!(here.contains("user.color=\"blue\""), "{here}");
        assert_eq!(dump(&fx.src.join("a.txt")), here);
    }
    // Listings of the top levels.
    let names = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&m.path), ["t"]);
    assert_eq!(names(&m.path.join("t")), ["2023-11-14-221320", "latest"]);
    assert_eq!(
        fs::read_link(m.path.join("t/latest")).expect("latest"),
        Path::new("2023-11-14-221320")
    );
    // Missing is ENOENT; writing is EROFS.
    let missing = fs::metadata(snap.join("nope")).expect_err("missing");
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    let write = fs::OpenOptions::new()
        .write(true)
        .open(snap.join("a.txt"))
        .expect_err("write");
    assert_eq!(write.raw_os_error(), Some(libc::EROFS));
    let mkdir = fs::create_dir(snap.join("newdir")).expect_err("mkdir");
    assert_eq!(mkdir.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn random_ranges_of_a_multichunk_file() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let m = mount(&fx, &["--cache-size", "8M"]);
    let want = fs::read(fx.src.join("big.bin")).expect("read");
    let f = fs::File::open(m.file("t", "big.bin")).expect("open");
    let mut x: u64 = 99;
    for round in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = [1usize, 4096, 100_000, 1 << 20][round % 4];
        let off = (x as usize) % want.len();
        let end = (off + len).min(want.len());
        let mut buf = vec![0u8; end - off];
        f.read_exact_at(&mut buf, off as u64).expect("pread");
        assert!(buf == want[off..end], "bytes differ at {off}+{len}");
    }
    // Past the end: nothing.
    let mut buf = [0u8; 16];
    assert_eq!(
        f.read_at(&mut buf, want.len() as u64 + 10).expect("read"),
        0
    );
}

#[test]
fn two_readers_at_once() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let m = mount(&fx, &[]);
    let want = fs::read(fx.src.join("big.bin")).expect("read");
    let path = m.file("t", "big.bin");
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| s.spawn(|| fs::read(&path).expect("read through mount")))
            .collect();
        for r in readers {
            assert!(r.join().expect("reader") == want);
        }
    });
}

#[test]
fn a_save_while_mounted_appears_within_seconds() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let m = mount(&fx, &[]);
    let latest = m.path.join("t/latest");
    assert_eq!(
        fs::read_link(&latest).expect("latest"),
        Path::new("2023-11-14-221320")
    );
    fs::write(fx.src.join("new.txt"), b"new\n").expect("write");
    run(rewind(&fx.repo)
        .args(["save", "-n", "t", "--date", "1700086400", "--strip"])
        .arg(&fx.src));
    run(rewind(&fx.repo)
        .args(["save", "-n", "other", "--date", "1700086400"])
        .arg(fx.src.join("a.txt")));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let moved = fs::read_link(&latest).is_ok_and(|t| t == Path::new("2023-11-15-221320"));
        if moved && m.path.join("other/latest").exists() {
            break;
        }
        assert!(Instant::now() < deadline, "new save not visible after 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fs::read(latest.join("new.txt")).expect("read"), b"new\n");
    assert!(m.path.join("t/2023-11-14-221320/a.txt").exists());
    assert!(!m.path.join("t/2023-11-14-221320/new.txt").exists());
}

#[test]
fn a_damaged_pack_gives_eio_for_that_file_only() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    // The big file's chunks fill most of the pack: damage its middle.
    damage_pack(&fx.repo);
    let m = mount(&fx, &[]);
    let err = fs::read(m.file("t", "big.bin")).expect_err("damaged file must not read");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // Everything else still serves.
    assert_eq!(fs::read(m.file("t", "a.txt")).expect("a.txt"), b"hello\n");
    assert_eq!(fs::read(m.file("t", "sub/deeper/x")).expect("x"), b"deep\n");
    assert_eq!(fs::read_dir(m.file("t", "sub")).expect("sub").count(), 301);
    let log = m.log_text();
    assert!(
        log.contains("corrupt") && log.contains("big.bin"),
        "log: {log}"
    );
}

/// Flips a byte in the middle of the repository's (only) pack, where the
/// big file's chunks are.
fn damage_pack(repo: &Path) {
    let pack_dir = repo.join("objects/pack");
    let pack = fs::read_dir(&pack_dir)
        .expect("pack dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .expect("a pack");
    let mut bytes = fs::read(&pack).expect("read pack");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::File::create(&pack)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write pack");
}

#[test]
fn a_detached_mount_logs_damage_to_its_log_file() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    damage_pack(&fx.repo);
    let log = fx.root.join("mount.log");
    fs::write(&log, "earlier line\n").expect("write");
    run(rewind(&fx.repo)
        .arg("mount")
        .arg("--log-file")
        .arg(&log)
        .arg(&fx.mnt));
    let read = fs::read(fx.mnt.join("t/latest/big.bin"));
    let text = || fs::read_to_string(&log).unwrap_or_default();
    // The forwarding thread may need a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !text().contains("corrupt") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    run(rewind(&fx.repo).arg("umount").arg(&fx.mnt));
    assert_eq!(read.expect_err("damaged").raw_os_error(), Some(libc::EIO));
    let text = text();
    assert!(text.starts_with("earlier line\n"), "not appended: {text}");
    let line = text
        .lines()
        .find(|l| l.contains("corrupt"))
        .unwrap_or_else(|| panic!("no damage line: {text}"));
    assert!(line.contains("big.bin"), "{line}");
    assert!(!line.contains('\x1b'), "colour codes in the file: {line}");
    // It names the damaged object: an id the pack's index lists.
    let id = line
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 40)
        .unwrap_or_else(|| panic!("no object id: {line}"));
    let idx = fs::read_dir(fx.repo.join("objects/pack"))
        .expect("pack dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("an idx");
    let listed = run(Command::new("git")
        .arg("show-index")
        .stdin(fs::File::open(idx).expect("idx")));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(id),
        "{id} is not in the pack"
    );
}

#[test]
fn sigterm_unmounts_cleanly() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let mut m = mount(&fx, &[]);
    let mut child = m.take_child();
    // SAFETY: kill(2) takes only integers and touches no memory. The pid is
    // our child's, not yet waited for, so it cannot have been reused.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status}: {}", m.log_text());
    assert!(!is_mounted(&fx.mnt), "still mounted after SIGTERM");
    assert!(fs::metadata(&fx.mnt).is_ok(), "mount point left stale");
}

#[test]
fn stale_mount_point_is_detected_and_umount_clears_it() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let mut m = mount(&fx, &[]);
    let mut child = m.take_child();
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The kernel may answer from its attribute cache for up to a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    let stale = loop {
        match fs::metadata(&fx.mnt) {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => panic!("mount point still answers after its process died"),
        }
    };
    assert_eq!(stale.raw_os_error(), Some(libc::ENOTCONN));
    let out = rewind(&fx.repo)
        .args(["mount", "--foreground"])
        .arg(&fx.mnt)
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("stale") && msg.contains("rewind umount"),
        "{msg}"
    );
    run(rewind(&fx.repo).arg("umount").arg(&fx.mnt));
    assert!(fs::metadata(&fx.mnt).is_ok());
    let again = mount(&fx, &[]);
    assert!(again.file("t", "a.txt").exists());
}

#[test]
fn daemon_mode_detaches_after_mounting() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let out = rewind(&fx.repo)
        .arg("mount")
        .arg(&fx.mnt)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Mounted when the command returns, not later.
    assert!(is_mounted(&fx.mnt));
    assert_eq!(
        fs::read(fx.mnt.join("t/latest/a.txt")).expect("read"),
        b"hello\n"
    );
    run(rewind(&fx.repo).arg("umount").arg(&fx.mnt));
    assert!(!is_mounted(&fx.mnt));
    // A mount point that does not exist is an error the caller sees.
    let out = rewind(&fx.repo)
        .arg("mount")
        .arg(fx.root.join("absent"))
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(2));
}

/// Regression: a session that ended because it was unmounted from outside
/// must not unmount, on its way out, a new mount made at the same place.
#[test]
fn remounting_right_after_an_external_unmount_stays_mounted() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let mut first = mount(&fx, &[]);
    let mut old = first.take_child();
    // Its guard must not touch the mount point that the second one uses.
    std::mem::forget(first);
    run(Command::new("fusermount3").arg("-u").arg(&fx.mnt));
    let second = mount(&fx, &[]);
    let status = old.wait().expect("old mount process");
    assert!(status.success(), "{status}");
    assert!(
        is_mounted(&fx.mnt),
        "the old session unmounted the new mount"
    );
    assert_eq!(
        fs::read(second.file("t", "a.txt")).expect("read"),
        b"hello\n"
    );
}

fn as_nobody(args: &[&str], path: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(args)
        .arg(path)
        .output()
        .expect("setpriv")
}

#[test]
fn other_users_get_only_what_saved_permissions_allow() {
    if !common::require_fuse()
        || !common::require("setpriv")
        || !common::require_root("switching to the user nobody")
    {
        return;
    }
    let fx = fixture();
    {
        let m = mount(&fx, &["--allow-other"]);
        let readable = as_nobody(&["cat"], &m.file("t", "a.txt"));
        assert!(readable.status.success(), "{readable:?}");
        assert_eq!(readable.stdout, b"hello\n");
        let secret = as_nobody(&["cat"], &m.file("t", "shadow"));
        assert!(!secret.status.success(), "nobody read a 0600 root file");
        assert!(String::from_utf8_lossy(&secret.stderr).contains("Permission denied"));
        // Root still reads it.
        assert!(fs::read(m.file("t", "shadow")).is_ok());
    }
    let m = mount(&fx, &[]);
    let ls = as_nobody(&["ls"], &m.path);
    assert!(!ls.status.success(), "another user entered a private mount");
    assert!(fs::read_dir(&m.path).is_ok());
}

#[test]
fn a_bup_written_repository_matches_bup_restore() {
    if !common::require_fuse() || !common::require("bup") {
        return;
    }
    let fx = fixture();
    let bup_dir = fx.root.join("bup");
    let bup = |args: &[&str]| {
        let mut c = Command::new("bup");
        c.args(args).env("BUP_DIR", &bup_dir).env("TZ", "UTC");
        c
    };
    run(&mut bup(&["init"]));
    run(bup(&["index"]).arg(&fx.src));
    run(bup(&["save", "-n", "b", "--strip", "-d", "1700000000"]).arg(&fx.src));
    let restored = fx.root.join("restored");
    run(bup(&["restore", "-C"]).arg(&restored).arg("b/latest/."));
    let m = Mount::at(rewind(&bup_dir), &fx.mnt)
        .log(&fx.root.join("bup-mount.log"))
        .start();
    let snap = m.path.join("b/latest");
    run(Command::new("diff").arg("-r").arg(&restored).arg(&snap));
    let fmt = "%n %f %u %g %y";
    assert_same_lines(&stat_tree(&restored, fmt), &stat_tree(&snap, fmt));
}

/// `stat -c '%h %i'` of each path, polled until the link counts settle (a
/// group's size may be provisional for a moment while it is counted).
fn links_and_inodes(paths: &[PathBuf], want_links: &[u64]) -> Vec<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(Command::new("stat").args(["-c", "%h %i"]).args(paths));
        let got: Vec<(u64, u64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (h, i) = l.split_once(' ').expect("two fields");
                (h.parse().expect("nlink"), i.parse().expect("ino"))
            })
            .collect();
        let links: Vec<u64> = got.iter().map(|g| g.0).collect();
        if links == want_links || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn hardlink_groups_share_an_inode_and_count_their_members() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    // A group of three and a pair, spread over directories, next to the
    // fixture's ordinary files; saved as a second snapshot.
    for d in ["hl/a", "hl/b", "hl/c"] {
        fs::create_dir_all(fx.src.join(d)).expect("mkdir");
    }
    fs::write(fx.src.join("hl/a/three"), b"three\n").expect("write");
    fs::hard_link(fx.src.join("hl/a/three"), fx.src.join("hl/b/three")).expect("link");
    fs::hard_link(fx.src.join("hl/a/three"), fx.src.join("hl/c/other-name")).expect("link");
    fs::write(fx.src.join("hl/a/two"), b"two\n").expect("write");
    fs::hard_link(fx.src.join("hl/a/two"), fx.src.join("hl/c/two")).expect("link");
    fs::write(fx.src.join("hl/b/one"), b"two\n").expect("write");
    run(rewind(&fx.repo)
        .args(["save", "-n", "t", "--date", "1700086400", "--strip"])
        .arg(&fx.src));
    let m = mount(&fx, &[]);
    let hl = m.file("t", "hl");
    let paths: Vec<PathBuf> = [
        "a/three",
        "b/three",
        "c/other-name",
        "a/two",
        "c/two",
        "b/one",
    ]
    .iter()
    .map(|p| hl.join(p))
    .collect();
    let got = links_and_inodes(&paths, &[3, 3, 3, 2, 2, 1]);
    let links: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(links, [3, 3, 3, 2, 2, 1]);
    assert!(got[0].1 == got[1].1 && got[1].1 == got[2].1, "{got:?}");
    assert_eq!(got[3].1, got[4].1, "{got:?}");
    assert_ne!(got[0].1, got[3].1);
    assert!(got[5].1 != got[0].1 && got[5].1 != got[3].1);
    // readdir's d_ino agrees with lookup's (find -inum walks readdir).
    let listed = run(Command::new("ls").arg("-i").arg(hl.join("b")));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&format!("{} three", got[0].1)),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // `cp -a` out of the mount recreates the groups.
    let copy = fx.root.join("copy");
    run(Command::new("cp").arg("-a").arg(&hl).arg(&copy));
    let ino = |p: &str| fs::metadata(copy.join(p)).expect("stat copy").ino();
    let nlink = |p: &str| fs::metadata(copy.join(p)).expect("stat copy").nlink();
    assert!(ino("a/three") == ino("b/three") && ino("b/three") == ino("c/other-name"));
    assert_eq!(ino("a/two"), ino("c/two"));
    assert_ne!(ino("a/three"), ino("a/two"));
    assert_eq!(
        (nlink("a/three"), nlink("a/two"), nlink("b/one")),
        (3, 2, 1)
    );
    run(Command::new("diff")
        .arg("-r")
        .arg(fx.src.join("hl"))
        .arg(&copy));
}

#[test]
fn hardlink_groups_are_per_snapshot() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    fs::write(fx.src.join("x1"), b"x\n").expect("write");
    fs::hard_link(fx.src.join("x1"), fx.src.join("x2")).expect("link");
    for date in ["1700086400", "1700172800"] {
        run(rewind(&fx.repo)
            .args(["save", "-n", "t", "--date", date, "--strip"])
            .arg(&fx.src));
    }
    let m = mount(&fx, &[]);
    let p = |snap: &str, f: &str| m.path.join("t").join(snap).join(f);
    let got = links_and_inodes(
        &[
            p("2023-11-15-221320", "x1"),
            p("2023-11-15-221320", "x2"),
            p("2023-11-16-221320", "x1"),
        ],
        &[2, 2, 2],
    );
    assert_eq!(got[0], got[1]);
    assert_ne!(got[0].1, got[2].1, "a group spans snapshots: {got:?}");
}

/// The pack files the repository has now (names only).
fn pack_names(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(repo.join("objects/pack"))
        .expect("list packs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack"))
        .collect();
    v.sort();
    v
}

/// Drops the kernel's cached pages of every file under `dir`, so the next
/// reads reach the mount (no root needed, unlike drop_caches).
fn forget_pages(dir: &Path) {
    for entry in fs::read_dir(dir).expect("readdir") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        if meta.is_dir() {
            forget_pages(&path);
        } else if meta.is_file() {
            let f = fs::File::open(&path).expect("open");
            forget_file_pages(&f);
        }
    }
}

fn forget_file_pages(f: &fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is borrowed, so its descriptor stays open for the call;
    // posix_fadvise takes only integers and touches no memory.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

/// Packs the mount daemon still holds open although they were deleted.
fn deleted_packs_held(pid: u32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list fds")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.contains(".pack") && t.ends_with("(deleted)"))
        .collect()
}

/// A gc that removes packs while mounted must not break reads of snapshots
/// that still exist: `git repack -a -d` replaces every pack the mount has
/// open (with deltas, as git writes them) and `git prune-packed` drops loose
/// objects. Every file, one of them held open across the repack, must
/// still read as saved; the mount must let go of the removed packs (their
/// space is freed) and a later save (whose object table covered the old
/// packs) must still land and show.
#[test]
fn reads_survive_a_repack_that_replaces_every_pack() {
    if !common::require_fuse() || !common::require("git") {
        return;
    }
    let fx = fixture();
    // A second snapshot, so the repack merges two packs into a new one.
    fs::write(fx.src.join("second.bin"), sample(3 << 20, 11)).expect("write");
    run(rewind(&fx.repo)
        .args(["save", "-n", "t", "--date", "1700000100", "--strip"])
        .arg(&fx.src));
    let before = pack_names(&fx.repo);
    assert_eq!(before.len(), 2, "{before:?}");
    // A cache smaller than big.bin: reads after the repack reach the packs.
    let m = mount(&fx, &["--cache-size", "4M"]);
    let snap = m.latest("t");
    run(Command::new("diff").arg("-r").arg(&fx.src).arg(&snap));

    let want = fs::read(fx.src.join("big.bin")).expect("read");
    let held = fs::File::open(snap.join("big.bin")).expect("open");
    let half = want.len() / 2;
    let mut head = vec![0u8; half];
    held.read_exact_at(&mut head, 0).expect("read first half");
    assert!(head == want[..half]);

    run(Command::new("git")
        .arg("-C")
        .arg(&fx.repo)
        .args(["repack", "-a", "-d", "-q"]));
    run(Command::new("git")
        .arg("-C")
        .arg(&fx.repo)
        .arg("prune-packed"));
    let after = pack_names(&fx.repo);
    assert!(
        !after.is_empty() && after.iter().all(|p| !before.contains(p)),
        "every pack should be new: {before:?} -> {after:?}"
    );

    // The rest of the held file, then all of it again, from the new pack.
    forget_file_pages(&held);
    let mut tail = vec![0u8; want.len() - half];
    held.read_exact_at(&mut tail, half as u64)
        .expect("read second half after the repack");
    assert!(tail == want[half..], "second half differs after the repack");
    forget_file_pages(&held);
    let mut all = vec![0u8; want.len()];
    held.read_exact_at(&mut all, 0).expect("read again");
    assert!(all == want, "big.bin differs after the repack");
    forget_pages(&snap);
    run(Command::new("diff").arg("-r").arg(&fx.src).arg(&snap));

    // The daemon notices the gc (within a second) and closes removed packs.
    let pid = m.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        forget_file_pages(&held);
        held.read_exact_at(&mut all[..4096], 0).expect("read");
        let held_packs = deleted_packs_held(pid);
        if held_packs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mount still holds removed packs: {held_packs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A save after the gc (its object table named the removed packs) lands
    // complete and the mount shows it.
    fs::write(fx.src.join("third.txt"), b"after the gc\n").expect("write");
    run(rewind(&fx.repo)
        .args(["save", "-n", "t", "--date", "1700000200", "--strip"])
        .arg(&fx.src));
    run(Command::new("git")
        .arg("-C")
        .arg(&fx.repo)
        .args(["fsck", "--strict"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_link(m.path.join("t/latest")).ok() != Some(PathBuf::from("2023-11-14-221640")) {
        assert!(Instant::now() < deadline, "third snapshot did not appear");
        std::thread::sleep(Duration::from_millis(100));
    }
    forget_pages(&snap);
    run(Command::new("diff")
        .arg("-r")
        .arg(&fx.src)
        .arg(m.path.join("t/latest")));
    assert!(
        !m.log_text().contains("ERROR"),
        "mount logged errors: {}",
        m.log_text()
    );
}

/// Tags show as what they point at (a tagged blob is a file, a commit or a
/// tree a directory, through annotated tags), and `latest` and the backup
/// name are dated by the tip's commit instead of 1970 or the mount's
/// start.
#[test]
fn tags_keep_their_types_and_latest_its_date() {
    if !common::require_fuse() {
        return;
    }
    let fx = fixture();
    let git = |args: &[&str]| {
        let out = run(Command::new("git")
            .arg("--git-dir")
            .arg(&fx.repo)
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@h")
            .args(args));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let blob = git(&["rev-parse", "t:a.txt"]);
    git(&["tag", "blobtag", &blob]);
    git(&["tag", "-a", "-m", "a blob", "annblob", &blob]);
    git(&["tag", "-a", "-m", "a commit", "ann", "t"]);
    git(&["tag", "treetag", "t^{tree}"]);
    let m = mount(&fx, &[]);
    let tags = m.path.join(".tag");
    let mut listed: Vec<(String, bool)> = fs::read_dir(&tags)
        .expect("readdir .tag")
        .map(|e| {
            let e = e.expect("entry");
            let is_dir = e.file_type().expect("d_type").is_dir();
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    listed.sort();
    let want = [
        ("ann", true),
        ("annblob", false),
        ("blobtag", false),
        ("treetag", true),
    ];
    let want: Vec<(String, bool)> = want.iter().map(|(n, d)| (n.to_string(), *d)).collect();
    assert_eq!(listed, want);
    for (name, is_dir) in &want {
        let st = fs::metadata(tags.join(name)).expect("stat tag");
        assert_eq!(st.is_dir(), *is_dir, "{name}");
        if !is_dir {
            assert!(st.is_file(), "{name}");
            assert_eq!(fs::read(tags.join(name)).expect("read"), b"hello\n");
        }
    }
    assert_eq!(fs::read(tags.join("ann/a.txt")).expect("read"), b"hello\n");
    let latest = fs::symlink_metadata(m.path.join("t/latest")).expect("lstat latest");
    assert!(latest.file_type().is_symlink());
    assert_eq!(latest.mtime(), 1_700_000_000);
    assert_eq!(
        fs::metadata(m.path.join("t")).expect("stat t").mtime(),
        1_700_000_000
    );
}
