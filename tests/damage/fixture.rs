//! The test repository: a small one written by the real binary (two
//! branches, a `rewind run`, every cache rewind keeps), a copy of it with
//! packed refs, and what the undamaged repository gives to each command.

use crate::cases::{variant_of, variant_repo, Kind};
use crate::common::{self, git, noise, run_limited, Out, Rw};
use crate::mount_read::{mount_read, MountRead};
use crate::LIMIT;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Snapshots of `two`: more than the 64 commits after which a listing
/// writes the commit cache.
const TWO_SNAPSHOTS: usize = 66;

pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    /// Saved as `one` with `--strip` (twice: `a.txt` changed between).
    pub src: PathBuf,
    pub loose: PathBuf,
    pub packed: PathBuf,
    /// The damaged file for each kind, relative to the repository.
    pub files: BTreeMap<Kind, PathBuf>,
    /// The first snapshot of `one`, which has the old `a.txt`.
    old_snapshot: String,
    pub expect: Expect,
}

/// What the undamaged repository gives.
pub struct Expect {
    pub reads: Vec<Vec<u8>>,
    pub restore: String,
    /// `find` through the mount, and the SHA-1 of each of [`READ_BACK`].
    pub mount_listing: String,
    pub mount_files: BTreeMap<String, String>,
}

pub fn rw(fx_home: &Path, repo: &Path) -> Rw {
    Rw::bare(fx_home).arg("-d").arg(repo)
}

/// Runs a command that must succeed while building the fixture.
#[track_caller]
pub fn must(cmd: &mut Command) -> Out {
    let out = run_limited(cmd, LIMIT).expect("a fixture command finishes");
    assert_eq!(
        out.code,
        0,
        "{} failed: {}{}",
        out.what,
        out.stdout_str(),
        out.stderr
    );
    out
}

fn pack_names(repo: &Path) -> BTreeSet<String> {
    common::pack_dir_listing(repo)
        .into_iter()
        .filter(|n| n.ends_with(".pack"))
        .collect()
}

/// The one pack `repo` gained since `before`.
fn new_pack(repo: &Path, before: &BTreeSet<String>) -> PathBuf {
    let after = pack_names(repo);
    let new: Vec<&String> = after.difference(before).collect();
    assert_eq!(new.len(), 1, "one new pack expected, got {new:?}");
    PathBuf::from("objects/pack").join(new[0])
}

/// A scratch directory on tmpfs when there is one: hundreds of repository
/// copies are written and removed.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::Builder::new().prefix("rwdmg").tempdir_in(shm) {
            return t;
        }
    }
    common::tempdir()
}

pub fn fixture() -> Fixture {
    let tmp = scratch();
    let root = common::canon(tmp.path());
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = root.join("home");
    let src = root.join("src");
    let src2 = root.join("src2");
    let loose = root.join("loose");
    for d in [&home, &src.join("d/e"), &src2] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(src.join("a.txt"), b"hello, version 1\n").expect("write");
    fs::write(src.join("empty"), b"").expect("write");
    // Incompressible and several hundred KiB: dozens of chunks under a
    // chunk tree.
    fs::write(src.join("big.bin"), noise(11, 384 << 10)).expect("write");
    fs::write(src.join("d/e/f"), b"deep\n").expect("write");
    fs::write(src.join("d/g.txt"), b"private\n").expect("write");
    fs::set_permissions(src.join("d/g.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    fs::write(src2.join("x.txt"), b"two\n").expect("write");

    let rwl = || rw(&home, &loose);
    must(&mut rwl().arg("init").command());
    let save = |name: &str, date: u64, path: &Path| {
        must(
            &mut rwl()
                .args(["save", "-n", name, "--date", &date.to_string(), "--strip"])
                .arg(path)
                .command(),
        );
    };
    let before = pack_names(&loose);
    save("one", 1_700_000_000, &src);
    let chunks_pack = new_pack(&loose, &before);
    fs::write(src.join("a.txt"), b"hello, version 2, a little longer\n").expect("write");
    let changed = Instant::now();
    for i in 0..TWO_SNAPSHOTS as u64 {
        save("two", 1_700_001_000 + 60 * i, &src2);
    }
    // `rewind run` writes the run records; its backup is `three`.
    let config = root.join("rewind.toml");
    fs::write(
        &config,
        format!(
            "repository = \"{}\"\n[[backup]]\nname = \"three\"\npaths = [\"{}\"]\n",
            loose.display(),
            src.join("d").display()
        ),
    )
    .expect("write config");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");
    must(
        &mut Rw::bare(&home)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .command(),
    );
    // Paths changed within two seconds of a save stay out of the change
    // index; wait so that the last save of `one` records every path.
    let margin = Duration::from_millis(3100);
    if let Some(rest) = margin.checked_sub(changed.elapsed()) {
        std::thread::sleep(rest);
    }
    let before = pack_names(&loose);
    save("one", 1_700_100_000, &src);
    let tip_pack = new_pack(&loose, &before);
    // A listing of more than 64 commits writes the commit cache.
    must(&mut rwl().args(["ls", "two"]).command());

    let packed = root.join("packed");
    copy_tree(&loose, &packed);
    must(git(&packed).args(["pack-refs", "--all"]));

    let mut files = BTreeMap::new();
    files.insert(Kind::PackTip, tip_pack.clone());
    files.insert(Kind::PackChunks, chunks_pack.clone());
    files.insert(Kind::IdxTip, tip_pack.with_extension("idx"));
    files.insert(Kind::IdxChunks, chunks_pack.with_extension("idx"));
    files.insert(Kind::LooseRef, PathBuf::from("refs/heads/one"));
    files.insert(Kind::PackedRefs, PathBuf::from("packed-refs"));
    files.insert(Kind::Head, PathBuf::from("HEAD"));
    files.insert(Kind::Config, PathBuf::from("config"));
    files.insert(Kind::ChangeIndex, PathBuf::from("rewind/index/one"));
    files.insert(Kind::ObjectTable, PathBuf::from("rewind/objects.midx"));
    files.insert(Kind::CommitCache, PathBuf::from("rewind/commits.cache"));
    files.insert(Kind::RunRecords, PathBuf::from("rewind/runs.toml"));
    for kind in Kind::ALL {
        let repo = variant_repo(&loose, &packed, variant_of(kind));
        let path = repo.join(&files[&kind]);
        let len = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()))
            .len();
        assert!(len > 0, "{} is empty", path.display());
    }
    // The change index must hold entries, not only its header: the last
    // save recorded every path.
    assert!(
        fs::metadata(loose.join("rewind/index/one"))
            .expect("index")
            .len()
            > 200,
        "the change index of `one` records the saved paths"
    );
    assert!(
        !packed.join("refs/heads/one").exists(),
        "git pack-refs moved the loose refs"
    );

    let old_snapshot = must(&mut rwl().args(["ls", "one"]).command())
        .lines()
        .into_iter()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .find(|l| common::is_snapshot_name(l))
        .expect("a snapshot of one");

    let mut fx = Fixture {
        _tmp: tmp,
        root,
        home,
        src,
        loose,
        packed,
        files,
        old_snapshot,
        expect: Expect {
            reads: Vec::new(),
            restore: String::new(),
            mount_listing: String::new(),
            mount_files: BTreeMap::new(),
        },
    };
    fx.expect = expectations(&fx);
    fx
}

/// Copies a directory tree of plain files and directories (a repository).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let (a, b) = (entry.path(), to.join(entry.file_name()));
        let t = entry.file_type().expect("file type");
        if t.is_dir() {
            copy_tree(&a, &b);
        } else if t.is_file() {
            fs::copy(&a, &b).unwrap_or_else(|e| panic!("copy {}: {e}", a.display()));
        } else {
            panic!("unexpected non-file {} in a repository", a.display());
        }
    }
}

/// The read-only commands every copy gets, in order.
pub fn reads(fx: &Fixture) -> Vec<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        ("ls", s(&["ls"])),
        ("ls", s(&["ls", "-l", "one"])),
        ("ls", s(&["ls", "-l", "two"])),
        ("ls", s(&["ls", "-l", "one/latest"])),
        ("ls", s(&["ls", "-l", "one/latest/d"])),
        ("cat-file", s(&["cat-file", "one/latest/a.txt"])),
        ("cat-file", s(&["cat-file", "one/latest/big.bin"])),
        ("cat-file", s(&["cat-file", "one/latest/d/e/f"])),
        (
            "cat-file",
            vec!["cat-file".into(), format!("one/{}/a.txt", fx.old_snapshot)],
        ),
    ]
}

/// Files read back after the new save, and through a mount.
pub const READ_BACK: [&str; 3] = ["a.txt", "big.bin", "d/e/f"];

fn expectations(fx: &Fixture) -> Expect {
    let work = fx.root.join("expect");
    copy_tree(&fx.loose, &work.join("repo"));
    let mut reads_out = Vec::new();
    for (_, args) in reads(fx) {
        let out = must(&mut rw(&fx.home, &work.join("repo")).args(&args).command());
        assert!(out.stderr.is_empty(), "{}: {}", out.what, out.stderr);
        reads_out.push(out.stdout);
    }
    // The packed-refs variant must read the same.
    for ((_, args), want) in reads(fx).iter().zip(&reads_out) {
        let out = must(&mut rw(&fx.home, &fx.packed).args(args).command());
        assert_eq!(&out.stdout, want, "{} differs with packed refs", out.what);
    }
    let out = work.join("out");
    must(
        &mut rw(&fx.home, &work.join("repo"))
            .args(["restore", "--outdir"])
            .arg(&out)
            .arg("one/latest/")
            .command(),
    );
    let restore = fingerprint(&out);
    assert!(
        restore.contains("big.bin") && restore.contains("link\tl"),
        "restore fingerprint covers the tree:\n{restore}"
    );
    let (mount_listing, mount_files) = match mount_read(&fx.home, &work.join("repo"), &work) {
        MountRead::Read { listing, files } => {
            let files = files
                .into_iter()
                .map(|(p, r)| {
                    let bytes = r
                        .unwrap_or_else(|e| panic!("reading {p} through the undamaged mount: {e}"));
                    assert_eq!(
                        bytes,
                        fs::read(fx.src.join(&p)).expect("source"),
                        "{p} through the undamaged mount"
                    );
                    (p, hex_sha1(&bytes))
                })
                .collect();
            (listing.expect("find on the undamaged mount"), files)
        }
        other => panic!("the undamaged repository does not mount: {other:?}"),
    };
    fs::remove_dir_all(&work).expect("rm");
    Expect {
        reads: reads_out,
        restore,
        mount_listing,
        mount_files,
    }
}

pub fn hex_sha1(b: &[u8]) -> String {
    Sha1::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// One line per path under `dir` (sorted): type, mode, size, mtime,
/// symlink target or content hash. Owners are compared by restore's own
/// tests; here the point is that damage never changes what lands on disk.
pub fn fingerprint(dir: &Path) -> String {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let r = format!("{rel}{}", n.to_string_lossy());
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!(
                    "l\t{}",
                    fs::read_link(&p).map_or("?".into(), |t| t.display().to_string())
                )
            } else if ft.is_dir() {
                "d".to_owned()
            } else if ft.is_file() {
                format!(
                    "f\t{}\t{}",
                    m.len(),
                    hex_sha1(&fs::read(&p).unwrap_or_default())
                )
            } else {
                "other".to_owned()
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            let mtime = if ft.is_file() { m.mtime() } else { 0 };
            out.push(format!("{r}\t{what}\t{mode:o}\t{mtime}"));
            if ft.is_dir() {
                walk(&p, &format!("{r}/"), out);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, "", &mut v);
    v.join("\n")
}
