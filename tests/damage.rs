//! End-to-end damage test (issue 11): copies of a small repository written
//! by the real binary, each with one file damaged in one way (a byte
//! flipped, a single bit flipped, 64 bytes zeroed, the file truncated), in
//! every kind of file rewind reads from a repository: packs, pack indexes,
//! loose refs, `packed-refs`, `HEAD`, `config`, and rewind's own files
//! under `rewind/` (the change index, the object table, the commit cache,
//! the run records).
//!
//! On each copy `ls`, `cat-file`, `restore`, a new `save` (read back with
//! `cat-file`) and, for a subset, a read through a real FUSE mount must end
//! in the bytes the undamaged repository gives, or in a clean error: exit 2
//! with one line on standard error. Never a panic, a signal, a hang, a
//! multi-line or unclear error, or different bytes with exit 0. A damaged
//! cache must not change anything the user sees (it is rebuilt or
//! ignored), and must be rewritten by the command that uses it.
//!
//! Every case runs to the end: the test prints a table of outcomes by file
//! kind and by command, then fails listing every failing case in full (file
//! kind, damage, command, what happened, standard error).

mod common;

use common::{exit_code, git, noise, run_limited, Mount, NotMounted, Out, Rw};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest any one command may run before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(20);
/// Every how many cases a copy is also mounted (mounts are the slow part).
const MOUNT_EVERY: usize = 4;
/// Snapshots of `two`: more than the 64 commits after which a listing
/// writes the commit cache.
const TWO_SNAPSHOTS: usize = 66;

// ---------------------------------------------------------------------------
// What is damaged, and how

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The pack of the newest snapshot of `one` (commit, trees, `.bupm`).
    PackTip,
    /// The pack holding `big.bin`'s chunks and chunk tree.
    PackChunks,
    IdxTip,
    IdxChunks,
    /// `refs/heads/one`.
    LooseRef,
    PackedRefs,
    Head,
    Config,
    /// `rewind/index/one`.
    ChangeIndex,
    /// `rewind/objects.midx`.
    ObjectTable,
    /// `rewind/commits.cache`.
    CommitCache,
    /// `rewind/runs.toml`.
    RunRecords,
}

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::PackTip,
        Kind::PackChunks,
        Kind::IdxTip,
        Kind::IdxChunks,
        Kind::LooseRef,
        Kind::PackedRefs,
        Kind::Head,
        Kind::Config,
        Kind::ChangeIndex,
        Kind::ObjectTable,
        Kind::CommitCache,
        Kind::RunRecords,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::PackTip => "pack (tip)",
            Kind::PackChunks => "pack (chunks)",
            Kind::IdxTip => "idx (tip)",
            Kind::IdxChunks => "idx (chunks)",
            Kind::LooseRef => "refs/heads/one",
            Kind::PackedRefs => "packed-refs",
            Kind::Head => "HEAD",
            Kind::Config => "config",
            Kind::ChangeIndex => "rewind/index/one",
            Kind::ObjectTable => "rewind/objects.midx",
            Kind::CommitCache => "rewind/commits.cache",
            Kind::RunRecords => "rewind/runs.toml",
        }
    }

    /// rewind's caches: damage must change nothing the user sees.
    fn is_cache(self) -> bool {
        matches!(
            self,
            Kind::ChangeIndex | Kind::ObjectTable | Kind::CommitCache
        )
    }

    /// Ref files: a damaged name is a different name, which a listing may
    /// show as git shows it.
    fn is_ref(self) -> bool {
        matches!(self, Kind::LooseRef | Kind::PackedRefs | Kind::Head)
    }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Xor { at: u64, mask: u8 },
    Zero { at: u64, len: u64 },
    Truncate { to: u64 },
}

impl Damage {
    fn apply(self, bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        match self {
            Damage::Xor { at, mask } => v[at as usize] ^= mask,
            Damage::Zero { at, len } => {
                let end = (at + len).min(v.len() as u64) as usize;
                v[at as usize..end].fill(0);
            }
            Damage::Truncate { to } => v.truncate(to as usize),
        }
        v
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Xor { at, mask } => write!(f, "xor {mask:#04x} at {at}"),
            Damage::Zero { at, len } => write!(f, "zero {len} bytes at {at}"),
            Damage::Truncate { to } => write!(f, "truncate to {to}"),
        }
    }
}

/// The damages for a file of `len` bytes at `positions`: every position
/// gets its byte inverted, and alternately a single bit flipped (which
/// keeps a hex digit a hex digit) or a 64-byte run zeroed; the file is
/// truncated to nothing, to half, by one byte, and before its last 20
/// bytes (the trailer checksum of packs, indexes and rewind's files).
fn damages(len: u64, positions: &BTreeSet<u64>) -> Vec<Damage> {
    let mut v = Vec::new();
    for (i, &at) in positions.iter().filter(|&&p| p < len).enumerate() {
        v.push(Damage::Xor { at, mask: 0xff });
        v.push(if i % 2 == 0 {
            Damage::Xor { at, mask: 0x01 }
        } else {
            Damage::Zero { at, len: 64 }
        });
    }
    let truncations: BTreeSet<u64> = [0, len / 2, len.saturating_sub(1), len.saturating_sub(20)]
        .into_iter()
        .filter(|&t| t < len)
        .collect();
    v.extend(truncations.into_iter().map(|to| Damage::Truncate { to }));
    v
}

/// The header, `n` positions spread through the file, and the trailer.
fn spread(len: u64, n: u64) -> BTreeSet<u64> {
    let mut s: BTreeSet<u64> = [0, 4, 8, 12].into_iter().collect();
    s.extend((1..n).map(|i| len * i / n));
    s.extend([len.saturating_sub(20), len.saturating_sub(1)]);
    s.retain(|&p| p < len);
    s
}

/// Offsets of the objects in a pack (`git verify-pack -v`) with their sizes
/// in the pack.
fn pack_objects(idx: &Path) -> Vec<(u64, u64)> {
    let out = run_limited(
        Command::new("git").arg("verify-pack").arg("-v").arg(idx),
        LIMIT,
    )
    .expect("git verify-pack finishes");
    assert_eq!(out.code, 0, "git verify-pack: {}", out.stderr);
    let mut v: Vec<(u64, u64)> = out
        .lines()
        .iter()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t.len() >= 5 && t[0].len() == 40)
                .then(|| Some((t[4].parse().ok()?, t[3].parse().ok()?)))
                .flatten()
        })
        .collect();
    v.sort();
    v
}

/// Positions in a pack: the header, each of up to `max` objects (spread
/// over the pack) at its entry header and in the middle of its data, and
/// the trailer.
fn pack_positions(pack: &Path, max: usize) -> BTreeSet<u64> {
    let len = fs::metadata(pack).expect("pack").len();
    let objects = pack_objects(&pack.with_extension("idx"));
    let step = objects.len().div_ceil(max).max(1);
    let mut s = spread(len, 2);
    for &(off, size) in objects.iter().step_by(step) {
        s.insert(off);
        s.insert(off + size / 2);
    }
    s
}

/// Positions in a version 2 pack index of `n` objects: header, fan-out
/// (first, middle and the last entry, which gives the object count), the
/// id, CRC and offset tables, and both trailing checksums.
fn idx_positions(len: u64, n: u64) -> BTreeSet<u64> {
    let ids = 8 + 256 * 4;
    let crcs = ids + 20 * n;
    let offsets = crcs + 4 * n;
    let mut s: BTreeSet<u64> = [
        0,
        4,
        7,
        8,
        8 + 128 * 4 + 3,
        8 + 255 * 4,
        8 + 255 * 4 + 3,
        ids,
        ids + 20 * (n / 2) + 19,
        crcs + 4 * (n / 2),
        offsets,
        offsets + 4 * (n / 2) + 3,
        len - 40,
        len - 20,
        len - 1,
    ]
    .into_iter()
    .collect();
    s.retain(|&p| p < len);
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Loose refs under `refs/heads`.
    Loose,
    /// After `git pack-refs --all`.
    Packed,
}

struct Case {
    kind: Kind,
    variant: Variant,
    /// The damaged file, relative to the repository.
    file: PathBuf,
    damage: Damage,
    mount: bool,
}

impl Case {
    fn describe(&self) -> String {
        format!(
            "{} [{}] {}",
            self.kind.label(),
            self.file.display(),
            self.damage
        )
    }
}

// ---------------------------------------------------------------------------
// The test repository

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    /// Saved as `one` with `--strip` (twice: `a.txt` changed between).
    src: PathBuf,
    loose: PathBuf,
    packed: PathBuf,
    /// The damaged file for each kind, relative to the repository.
    files: BTreeMap<Kind, PathBuf>,
    /// The first snapshot of `one`, which has the old `a.txt`.
    old_snapshot: String,
    expect: Expect,
}

/// What the undamaged repository gives.
struct Expect {
    reads: Vec<Vec<u8>>,
    restore: String,
    /// `find` through the mount, and the SHA-1 of each of [`READ_BACK`].
    mount_listing: String,
    mount_files: BTreeMap<String, String>,
}

fn rw(fx_home: &Path, repo: &Path) -> Rw {
    Rw::bare(fx_home).arg("-d").arg(repo)
}

/// Runs a command that must succeed while building the fixture.
#[track_caller]
fn must(cmd: &mut Command) -> Out {
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
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::Builder::new().prefix("rwdmg").tempdir_in(shm) {
            return t;
        }
    }
    common::tempdir()
}

fn fixture() -> Fixture {
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

fn variant_of(kind: Kind) -> Variant {
    if kind == Kind::PackedRefs {
        Variant::Packed
    } else {
        Variant::Loose
    }
}

fn variant_repo<'a>(loose: &'a Path, packed: &'a Path, v: Variant) -> &'a Path {
    match v {
        Variant::Loose => loose,
        Variant::Packed => packed,
    }
}

/// Copies a directory tree of plain files and directories (a repository).
fn copy_tree(from: &Path, to: &Path) {
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
fn reads(fx: &Fixture) -> Vec<(&'static str, Vec<String>)> {
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
const READ_BACK: [&str; 3] = ["a.txt", "big.bin", "d/e/f"];

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

fn hex_sha1(b: &[u8]) -> String {
    Sha1::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// One line per path under `dir` (sorted): type, mode, size, mtime,
/// symlink target or content hash. Owners are compared by restore's own
/// tests; here the point is that damage never changes what lands on disk.
fn fingerprint(dir: &Path) -> String {
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

// ---------------------------------------------------------------------------
// Outcomes

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Outcome {
    /// The bytes the undamaged repository gives.
    Right,
    /// A listing of renamed or missing refs, exactly as git lists them.
    AsGitSees,
    /// Exit 2, one line on standard error.
    CleanError,
    /// Exit 2, one error line after distinct warnings naming a damaged
    /// file.
    WarnedError,
    /// The mount answered a read with an error (EIO, ENOENT).
    ReadError,
    /// Exit 1 with warnings; everything not named in them is right.
    Partial,
    /// The new save reused an object the damage had already made
    /// unreadable; reading it back fails as reading the old snapshot does.
    SavedOntoDamage,
    /// `rewind status` reported what the damaged run records say.
    Reported,
    // Failures from here on.
    Panic,
    Signal,
    Hang,
    WrongBytes,
    UnclearError,
    /// Exit 0 from save, but the new snapshot does not read back while the
    /// old one does.
    SavedUnreadable,
    /// A cache was damaged and the command failed or kept it.
    CacheTrusted,
}

impl Outcome {
    const ALL: [Outcome; 15] = [
        Outcome::Right,
        Outcome::AsGitSees,
        Outcome::CleanError,
        Outcome::WarnedError,
        Outcome::ReadError,
        Outcome::Partial,
        Outcome::SavedOntoDamage,
        Outcome::Reported,
        Outcome::Panic,
        Outcome::Signal,
        Outcome::Hang,
        Outcome::WrongBytes,
        Outcome::UnclearError,
        Outcome::SavedUnreadable,
        Outcome::CacheTrusted,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Right => "right",
            Outcome::AsGitSees => "as-git",
            Outcome::CleanError => "error",
            Outcome::WarnedError => "warn+err",
            Outcome::ReadError => "EIO",
            Outcome::Partial => "partial",
            Outcome::SavedOntoDamage => "dedup",
            Outcome::Reported => "report",
            Outcome::Panic => "PANIC",
            Outcome::Signal => "SIGNAL",
            Outcome::Hang => "HANG",
            Outcome::WrongBytes => "WRONG",
            Outcome::UnclearError => "UNCLEAR",
            Outcome::SavedUnreadable => "UNREAD",
            Outcome::CacheTrusted => "CACHE",
        }
    }

    fn is_failure(self) -> bool {
        self >= Outcome::Panic
    }
}

/// How a command ended, before comparing its output.
fn ending(out: &Option<Out>) -> Option<Outcome> {
    let Some(out) = out else {
        return Some(Outcome::Hang);
    };
    if out.stderr.contains("panicked") || out.stderr.contains("RUST_BACKTRACE") || out.code == 101 {
        return Some(Outcome::Panic);
    }
    if out.code >= 128 {
        return Some(Outcome::Signal);
    }
    match out.code {
        0 => None,
        2 => Some(error_kind(&out.stderr)),
        _ => Some(Outcome::UnclearError),
    }
}

/// An error is clean when standard error is one line, `rewind: error:
/// ...`, saying something; warnings before it (a damaged pack index named
/// once) are counted apart. Repeated lines and terminal colour codes in a
/// pipe are not clean.
fn error_kind(stderr: &str) -> Outcome {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some((last, warnings)) = lines.split_last() else {
        return Outcome::UnclearError;
    };
    let distinct: BTreeSet<&&str> = warnings.iter().collect();
    let clean = last.starts_with("rewind: error: ")
        && last.len() > 24
        && !stderr.contains('\x1b')
        && distinct.len() == warnings.len()
        && warnings.iter().all(|w| w.trim_start().starts_with("WARN "));
    match (clean, warnings.is_empty()) {
        (false, _) => Outcome::UnclearError,
        (true, true) => Outcome::CleanError,
        (true, false) => Outcome::WarnedError,
    }
}

/// One probe's result.
struct Record {
    case: String,
    kind: Kind,
    command: &'static str,
    outcome: Outcome,
    detail: String,
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    let mut cut: String = s.chars().take(600).collect();
    if cut.len() < s.len() {
        cut.push_str(" ...");
    }
    cut
}

// ---------------------------------------------------------------------------
// One damaged copy

struct Copy<'a> {
    fx: &'a Fixture,
    case: &'a Case,
    dir: PathBuf,
    repo: PathBuf,
    records: Vec<Record>,
}

impl Copy<'_> {
    fn rw(&self) -> Rw {
        rw(&self.fx.home, &self.repo)
    }

    fn record(&mut self, command: &'static str, outcome: Outcome, detail: String) {
        // A damaged cache may not change what the user gets.
        let outcome =
            if self.case.kind.is_cache() && !outcome.is_failure() && outcome != Outcome::Right {
                Outcome::CacheTrusted
            } else {
                outcome
            };
        self.records.push(Record {
            case: self.case.describe(),
            kind: self.case.kind,
            command,
            outcome,
            detail,
        });
    }

    fn detail(out: &Option<Out>) -> String {
        match out {
            None => format!("did not finish within {LIMIT:?}"),
            Some(o) => format!(
                "{}: exit {}; stderr: {}",
                o.what,
                o.code,
                excerpt(&o.stderr)
            ),
        }
    }

    /// Runs the read commands; returns for each whether it gave the right
    /// bytes.
    fn reads(&mut self) -> Vec<bool> {
        let mut right = Vec::new();
        for (i, (command, args)) in reads(self.fx).into_iter().enumerate() {
            let out = run_limited(&mut self.rw().args(&args).command(), LIMIT);
            let outcome = match ending(&out) {
                Some(o) => o,
                None => {
                    let o = out.as_ref().expect("finished");
                    if o.stdout == self.fx.expect.reads[i] {
                        Outcome::Right
                    } else if i == 0 && self.case.kind.is_ref() && self.lists_as_git(&o.stdout) {
                        Outcome::AsGitSees
                    } else {
                        Outcome::WrongBytes
                    }
                }
            };
            right.push(outcome == Outcome::Right);
            let mut detail = Self::detail(&out);
            if let (Outcome::WrongBytes, Some(o)) = (outcome, &out) {
                detail.push_str(&format!(
                    "; stdout: {:?}; undamaged: {:?}",
                    excerpt(&String::from_utf8_lossy(&o.stdout)),
                    excerpt(&String::from_utf8_lossy(&self.fx.expect.reads[i]))
                ));
                if i == 0 {
                    let g = run_limited(git(&self.repo).args(["for-each-ref"]), LIMIT);
                    detail.push_str(&format!("; git for-each-ref: {}", Self::detail(&g)));
                }
            }
            self.record(command, outcome, detail);
        }
        right
    }

    /// Whether `stdout` of `rewind ls` names exactly the branches git
    /// finds in the damaged repository.
    fn lists_as_git(&self, stdout: &[u8]) -> bool {
        let Some(g) = run_limited(
            // All refs, filtered here: with a prefix, git binary-searches a
            // `packed-refs` that says it is sorted, and a damaged name
            // that breaks the order hides its neighbours.
            git(&self.repo).args(["for-each-ref", "--format=%(refname)"]),
            LIMIT,
        ) else {
            return false;
        };
        if g.code != 0 || !g.stderr.trim().is_empty() {
            return false;
        }
        let from_git: BTreeSet<String> = g
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("refs/heads/").map(str::to_owned))
            .collect();
        let ours: BTreeSet<String> = String::from_utf8_lossy(stdout)
            .lines()
            .map(|l| l.trim_end_matches('/').to_owned())
            .collect();
        from_git == ours
    }

    fn restore(&mut self) {
        let out_dir = self.dir.join("out");
        let out = run_limited(
            &mut self
                .rw()
                .args(["restore", "--outdir"])
                .arg(&out_dir)
                .arg("one/latest/")
                .command(),
            LIMIT,
        );
        let got = fingerprint(&out_dir);
        let outcome = match (ending(&out), &out) {
            (None, _) if got == self.fx.expect.restore => Outcome::Right,
            (None, _) => Outcome::WrongBytes,
            (Some(Outcome::UnclearError), Some(o)) if o.code == 1 => {
                // Partial: every file restored must be right unless a
                // warning names it.
                let want: BTreeMap<&str, &str> = self
                    .fx
                    .expect
                    .restore
                    .lines()
                    .filter_map(|l| Some((l.split('\t').next()?, l)))
                    .collect();
                let silent_wrong = got.lines().any(|l| {
                    let path = l.split('\t').next().unwrap_or("");
                    let is_dir = l.split('\t').nth(1) == Some("d");
                    !is_dir && want.get(path) != Some(&l) && !o.stderr.contains(path)
                });
                if silent_wrong {
                    Outcome::WrongBytes
                } else {
                    Outcome::Partial
                }
            }
            (Some(o), _) => o,
        };
        let mut detail = Self::detail(&out);
        if outcome == Outcome::WrongBytes {
            detail.push_str(&format!("; restored:\n{got}"));
        }
        self.record("restore", outcome, detail);
    }

    fn mount(&mut self) {
        let (outcome, detail) = match mount_read(&self.fx.home, &self.repo, &self.dir) {
            MountRead::Read { listing, files } => {
                let want = &self.fx.expect.mount_files;
                let listing_want = &self.fx.expect.mount_listing;
                let mut wrong = Vec::new();
                let mut errors = Vec::new();
                match &listing {
                    Ok(l) if l != listing_want => wrong.push(format!("listing:\n{l}")),
                    Ok(_) => {}
                    Err(e) => errors.push(format!("listing: {e}")),
                }
                for (p, r) in &files {
                    match r {
                        Ok(b) if want.get(p) != Some(&hex_sha1(b)) => {
                            wrong.push(format!("{p}: {} bytes, not the saved ones", b.len()))
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(format!("{p}: {e}")),
                    }
                }
                if !wrong.is_empty() {
                    (Outcome::WrongBytes, wrong.join("; "))
                } else if !errors.is_empty() {
                    (Outcome::ReadError, errors.join("; "))
                } else {
                    (Outcome::Right, String::new())
                }
            }
            MountRead::Hang(what) => (Outcome::Hang, what),
            MountRead::Panic(log) => (Outcome::Panic, excerpt(&log)),
            MountRead::Died(code, log) => {
                let o = match code {
                    128.. => Outcome::Signal,
                    2 => error_kind(&log),
                    _ => Outcome::UnclearError,
                };
                (o, format!("mount exited {code}: {}", excerpt(&log)))
            }
        };
        self.record("mount", outcome, detail);
    }

    /// A new save of `one`, read back with `cat-file`. `before` says which
    /// of the read-back files the damaged copy gave right before the save.
    fn save(&mut self, before: &BTreeMap<&str, bool>) {
        let out = run_limited(
            &mut self
                .rw()
                .args(["save", "-n", "one", "--date", "1800000000", "--strip"])
                .arg(&self.fx.src)
                .command(),
            LIMIT,
        );
        let outcome = match (ending(&out), &out) {
            (Some(Outcome::UnclearError), Some(o)) if o.code == 1 => Outcome::Partial,
            (Some(o), _) => o,
            (None, _) => {
                let mut outcome = Outcome::Right;
                let mut detail = Vec::new();
                for p in READ_BACK {
                    let r = run_limited(
                        &mut self
                            .rw()
                            .arg("cat-file")
                            .arg(format!("one/latest/{p}"))
                            .command(),
                        LIMIT,
                    );
                    let o = match ending(&r) {
                        None => {
                            let got = &r.as_ref().expect("finished").stdout;
                            if *got == fs::read(self.fx.src.join(p)).expect("source") {
                                Outcome::Right
                            } else {
                                Outcome::WrongBytes
                            }
                        }
                        Some(Outcome::CleanError) if before.get(p) == Some(&false) => {
                            Outcome::SavedOntoDamage
                        }
                        Some(Outcome::CleanError) => Outcome::SavedUnreadable,
                        Some(o) => o,
                    };
                    if o != Outcome::Right {
                        detail.push(format!("read back {p}: {}", Self::detail(&r)));
                    }
                    outcome = outcome.max(o);
                }
                let detail = detail.join("; ");
                self.record("save", outcome, detail);
                return;
            }
        };
        let detail = Self::detail(&out);
        self.record("save", outcome, detail);
    }

    /// `rewind status` over the damaged run records, then `rewind run`,
    /// which must start new records, then `status` again.
    fn run_records(&mut self) {
        let config = self.dir.join("rewind.toml");
        fs::write(
            &config,
            format!(
                "repository = \"{}\"\n[[backup]]\nname = \"three\"\npaths = [\"{}\"]\n",
                self.repo.display(),
                self.fx.src.join("d").display()
            ),
        )
        .expect("config");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");
        let cmd = |what: &str| {
            Rw::bare(&self.fx.home)
                .arg("--config")
                .arg(&config)
                .arg(what)
                .command()
        };
        let status = |mut c: Command| {
            let out = run_limited(&mut c, LIMIT);
            let outcome = match (&out, ending(&out)) {
                (_, Some(o @ (Outcome::Hang | Outcome::Panic | Outcome::Signal))) => o,
                (Some(o), _) if o.code == 0 && o.stdout_str().starts_with("OK: ") => Outcome::Right,
                (Some(o), _)
                    if o.code == 3
                        && o.stdout_str().starts_with("UNKNOWN: ")
                        && o.stdout_str().lines().count() == 1
                        && o.stdout_str().contains("runs.toml") =>
                {
                    Outcome::CleanError
                }
                (Some(o), _)
                    if (1..=2).contains(&o.code)
                        && ["WARNING: ", "CRITICAL: "]
                            .iter()
                            .any(|p| o.stdout_str().starts_with(p)) =>
                {
                    Outcome::Reported
                }
                _ => Outcome::UnclearError,
            };
            let detail = match &out {
                Some(o) => format!(
                    "{} (stdout: {})",
                    Self::detail(&out),
                    excerpt(&o.stdout_str())
                ),
                None => Self::detail(&out),
            };
            (outcome, detail)
        };
        let (o, d) = status(cmd("status"));
        self.record("status", o, d);
        let out = run_limited(&mut cmd("run"), LIMIT);
        let o = match ending(&out) {
            None => Outcome::Right,
            Some(o) => o,
        };
        let d = Self::detail(&out);
        self.record("run", o, d);
        // After a run the records are whole again.
        let (o, d) = status(cmd("status"));
        let o = if o == Outcome::Right {
            o
        } else {
            Outcome::CacheTrusted
        };
        self.record("run", o, d);
    }

    /// A damaged cache must be rewritten by the commands that use it.
    fn cache_rebuilt(&mut self, damaged: &[u8]) {
        let path = self.repo.join(&self.case.file);
        let now = fs::read(&path).ok();
        let (o, d) = match now {
            Some(b) if b == damaged => (
                Outcome::CacheTrusted,
                format!("{} still holds the damaged bytes", self.case.file.display()),
            ),
            _ => (Outcome::Right, String::new()),
        };
        self.record("rebuilt", o, d);
    }
}

fn run_case(fx: &Fixture, case: &Case, n: usize) -> Vec<Record> {
    let dir = fx.root.join(format!("copy{n:04}"));
    let repo = dir.join("repo");
    copy_tree(variant_repo(&fx.loose, &fx.packed, case.variant), &repo);
    let path = repo.join(&case.file);
    let original = fs::read(&path).expect("read");
    let damaged = case.damage.apply(&original);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&path, &damaged).expect("write damage");
    let mut copy = Copy {
        fx,
        case,
        dir: dir.clone(),
        repo,
        records: Vec::new(),
    };
    let right = copy.reads();
    copy.restore();
    if case.mount {
        copy.mount();
    }
    let before: BTreeMap<&str, bool> = [
        ("a.txt", right[5]),
        ("big.bin", right[6]),
        ("d/e/f", right[7]),
    ]
    .into_iter()
    .collect();
    copy.save(&before);
    if case.kind == Kind::RunRecords {
        copy.run_records();
    }
    if case.kind.is_cache() {
        copy.cache_rebuilt(&damaged);
    }
    let records = copy.records;
    if keep_copies().is_none() {
        let _ = fs::remove_dir_all(&dir);
    }
    records
}

// ---------------------------------------------------------------------------
// Reading through a FUSE mount

#[derive(Debug)]
enum MountRead {
    /// `find` of `one/latest` (tab-separated lines) and each of
    /// [`READ_BACK`]'s bytes, or what the reading tool said.
    Read {
        listing: Result<String, String>,
        files: Vec<(String, Result<Vec<u8>, String>)>,
    },
    Hang(String),
    Panic(String),
    /// The mount process ended by itself: exit code, its standard error.
    Died(i32, String),
}

/// Mounts `repo` on `dir/mnt`, reads `one/latest` with `find` and `cat`
/// (child processes, so that a read that never returns can be killed), and
/// unmounts.
fn mount_read(home: &Path, repo: &Path, dir: &Path) -> MountRead {
    let started = Mount::at(rw(home, repo).command(), &dir.join("mnt"))
        .args(&["--threads", "2"])
        .within(LIMIT)
        .try_start();
    let mut mount = match started {
        Ok(m) => m,
        Err(NotMounted::Exited { log, .. }) if log.contains("panicked") => {
            return MountRead::Panic(log)
        }
        Err(NotMounted::Exited { status, log }) => return MountRead::Died(exit_code(status), log),
        Err(NotMounted::TimedOut { .. }) => return MountRead::Hang("not mounted in time".into()),
    };
    let snap = mount.latest("one");
    let mut hang = None;
    let listing = match run_limited(
        Command::new("find")
            .arg(&snap)
            .args(["-mindepth", "1", "-printf", "%P\t%y\t%m\t%s\t%l\n"]),
        LIMIT,
    ) {
        None => {
            hang = Some("find".to_owned());
            Err("hang".to_owned())
        }
        Some(o) if o.code == 0 => {
            let mut lines = o.lines();
            lines.sort();
            Ok(lines.join("\n"))
        }
        Some(o) => Err(format!("exit {}: {}", o.code, excerpt(&o.stderr))),
    };
    let mut files = Vec::new();
    for p in READ_BACK {
        if hang.is_some() {
            break;
        }
        let r = match run_limited(Command::new("cat").arg(snap.join(p)), LIMIT) {
            None => {
                hang = Some(format!("cat {p}"));
                Err("hang".to_owned())
            }
            Some(o) if o.code == 0 => Ok(o.stdout),
            Some(o) => Err(format!("exit {}: {}", o.code, excerpt(&o.stderr))),
        };
        files.push((p.to_owned(), r));
    }
    let ended = mount.stop();
    let text = mount.log_text();
    if text.contains("panicked") {
        return MountRead::Panic(text);
    }
    if let Some(what) = hang {
        return MountRead::Hang(format!("{what} through the mount; log: {}", excerpt(&text)));
    }
    match ended {
        Some(code) if code >= 128 => MountRead::Died(code, text),
        None => MountRead::Hang(format!(
            "the mount did not end after unmount; log: {}",
            excerpt(&text)
        )),
        _ => MountRead::Read { listing, files },
    }
}

fn fuse_ready() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI=true: the damage test needs /dev/fuse and fusermount3"
    );
    ok
}

// ---------------------------------------------------------------------------
// The cases and the report

fn cases(fx: &Fixture, mounts: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        let variant = variant_of(kind);
        let file = fx.files[&kind].clone();
        let path = variant_repo(&fx.loose, &fx.packed, variant).join(&file);
        let len = fs::metadata(&path).expect("file").len();
        let positions = match kind {
            Kind::PackTip => pack_positions(&path, 14),
            Kind::PackChunks => pack_positions(&path, 10),
            Kind::IdxTip | Kind::IdxChunks => {
                let n = pack_objects(&path).len() as u64;
                idx_positions(len, n)
            }
            // Small text files: nearly every byte matters.
            Kind::LooseRef | Kind::Head => {
                let mut s = spread(len, 6);
                s.extend([len.saturating_sub(2)]);
                s
            }
            Kind::PackedRefs => {
                let text = fs::read(&path).expect("packed-refs");
                let mut s = spread(len, 4);
                // Each line's start, its id's last digit, its name.
                for (i, _) in text.iter().enumerate().filter(|(_, &b)| b == b'\n') {
                    for d in [1, 40, 42, 52] {
                        s.insert(i as u64 + d);
                    }
                }
                s.retain(|&p| p < len);
                s
            }
            Kind::ObjectTable => {
                let mut s = spread(len, 6);
                // Pack count, first name length, the fan-out's last entry
                // and the object count before the checksum.
                s.extend([11, 13, len - 20 - 8 - 1, len - 20 - 8 - 4 * 2]);
                s
            }
            Kind::CommitCache => {
                let mut s = spread(len, 6);
                // Inside the first records: id, tree, parent flag, parent,
                // time.
                s.extend([8 + 20, 8 + 40, 8 + 41 + 19, 8 + 61 + 7]);
                s.retain(|&p| p < len);
                s
            }
            Kind::Config | Kind::ChangeIndex | Kind::RunRecords => spread(len, 8),
        };
        for damage in damages(len, &positions) {
            cases.push(Case {
                kind,
                variant,
                file: file.clone(),
                damage,
                mount: false,
            });
        }
    }
    if mounts {
        for (i, c) in cases.iter_mut().enumerate() {
            c.mount = i % MOUNT_EVERY == 0;
        }
    }
    cases
}

fn table(records: &[Record], row: impl Fn(&Record) -> String, rows: &[String]) -> String {
    let mut counts: BTreeMap<(String, Outcome), usize> = BTreeMap::new();
    for r in records {
        *counts.entry((row(r), r.outcome)).or_default() += 1;
    }
    let used: Vec<Outcome> = Outcome::ALL
        .into_iter()
        .filter(|o| counts.keys().any(|(_, k)| k == o))
        .collect();
    let mut s = format!("{:<22}", "");
    for o in &used {
        s.push_str(&format!("{:>9}", o.label()));
    }
    s.push_str(&format!("{:>9}\n", "total"));
    let mut totals = vec![0; used.len()];
    for r in rows {
        let mut line = format!("{r:<22}");
        let mut sum = 0;
        for (i, o) in used.iter().enumerate() {
            let c = counts.get(&(r.clone(), *o)).copied().unwrap_or(0);
            totals[i] += c;
            sum += c;
            line.push_str(&format!("{c:>9}"));
        }
        if sum > 0 {
            s.push_str(&format!("{line}{sum:>9}\n"));
        }
    }
    s.push_str(&format!("{:<22}", "total"));
    for t in &totals {
        s.push_str(&format!("{t:>9}"));
    }
    s.push_str(&format!("{:>9}\n", records.len()));
    s
}

/// `REWIND_DAMAGE_ONLY=<text>` runs only the cases whose description
/// (as printed in the failure list) contains the text, and keeps their
/// copies for a look by hand.
fn keep_copies() -> Option<String> {
    std::env::var("REWIND_DAMAGE_ONLY").ok()
}

#[test]
fn damaged_repositories_give_right_bytes_or_one_clean_error() {
    let started = Instant::now();
    let mounts = fuse_ready();
    let fx = fixture();
    let setup = started.elapsed();
    let mut cases = cases(&fx, mounts);
    if let Some(only) = keep_copies() {
        cases.retain(|c| c.describe().contains(&only));
        eprintln!(
            "REWIND_DAMAGE_ONLY: {} cases, copies kept under {}",
            cases.len(),
            fx.root.display()
        );
    }
    let next = AtomicUsize::new(0);
    let records = Mutex::new(Vec::new());
    let skipped = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(n) else { break };
                // A damage that changes nothing (zeroing zeros) tests nothing.
                let repo = variant_repo(&fx.loose, &fx.packed, case.variant);
                let original = fs::read(repo.join(&case.file)).expect("read");
                if case.damage.apply(&original) == original {
                    skipped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let r = run_case(&fx, case, n);
                records.lock().expect("records").extend(r);
            });
        }
    });
    let mut records = records.into_inner().expect("records");
    records.sort_by(|a, b| (a.kind, &a.case, a.command).cmp(&(b.kind, &b.case, b.command)));

    let kinds: Vec<String> = Kind::ALL.iter().map(|k| k.label().to_owned()).collect();
    let commands: Vec<String> = [
        "ls", "cat-file", "restore", "mount", "save", "status", "run", "rebuilt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let damaged = cases.len() - skipped.load(Ordering::SeqCst);
    eprintln!(
        "\ndamage test: {damaged} damaged copies ({} no-op damages skipped), {} command runs \
         judged, {} workers, setup {:.1}s, total {:.1}s{}",
        skipped.load(Ordering::SeqCst),
        records.len(),
        workers,
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        if mounts {
            ""
        } else {
            " (no FUSE: mounts skipped)"
        }
    );
    eprintln!(
        "\nby file kind:\n{}",
        table(&records, |r| r.kind.label().to_owned(), &kinds)
    );
    eprintln!(
        "by command:\n{}",
        table(&records, |r| r.command.to_owned(), &commands)
    );
    eprintln!(
        "right: the undamaged bytes; as-git: ref names as git lists them; error: exit 2, one \
         line; EIO: a mount read failed; partial: exit 1, the rest right; dedup: the new save \
         reused an object already unreadable; report: status reported the damaged record. \
         Failures: PANIC, SIGNAL, HANG, WRONG (exit 0, other bytes), UNCLEAR (other exit or \
         not one line), UNREAD (saved but unreadable), CACHE (a damaged cache changed the \
         outcome or was kept).\n"
    );

    if keep_copies().is_some() {
        // Every outcome, and the scratch directory, for a look by hand.
        for r in &records {
            eprintln!(
                "= {} | {} | {}: {}",
                r.case,
                r.command,
                r.outcome.label(),
                r.detail
            );
        }
        std::mem::forget(fx);
    }
    let failures: Vec<&Record> = records.iter().filter(|r| r.outcome.is_failure()).collect();
    if !failures.is_empty() {
        let mut s = format!("{} failing command runs:\n", failures.len());
        for f in &failures {
            s.push_str(&format!(
                "- {} | {} | {}: {}\n",
                f.case,
                f.command,
                f.outcome.label(),
                f.detail
            ));
        }
        eprintln!("{s}");
        panic!(
            "{} of {} command runs on damaged repositories failed (listed above)",
            failures.len(),
            records.len()
        );
    }
}

/// A damaged pack index was warned about on every rescan (a miss rescans),
/// so one `cat-file` printed the same warning twice before its error, and
/// in terminal colours although standard error was a pipe.
#[test]
fn damaged_idx_is_warned_about_once_without_colour_codes() {
    let env = common::Env::init();
    env.corrupted.set(true);
    let src = env.path("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a.txt"), b"hello\n").expect("write");
    env.rw()
        .args(["save", "-n", "one", "--strip"])
        .arg(&src)
        .run()
        .success();
    let idx = common::pack_dir_listing(&env.repo)
        .into_iter()
        .find(|n| n.ends_with(".idx"))
        .expect("an idx");
    let path = env.repo.join("objects/pack").join(idx);
    let mut bytes = fs::read(&path).expect("idx");
    let at = bytes.len() - 30;
    bytes[at] ^= 0xff;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&path, bytes).expect("write");
    let out = env
        .rw()
        .args(["cat-file", "one/latest/a.txt"])
        .run()
        .status(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one warning, one error:\n{}", out.stderr);
    assert!(
        lines[0].contains("WARN") && lines[0].contains("cannot use pack index"),
        "{}",
        out.stderr
    );
    assert!(lines[1].starts_with("rewind: error: "), "{}", out.stderr);
    assert!(
        !out.stderr.contains('\x1b'),
        "colour codes in a pipe: {:?}",
        out.stderr
    );
}

/// A save checked HEAD after moving its branch and failed with exit 2
/// ("nothing was changed") when HEAD was damaged, although the snapshot
/// had been made.
#[test]
fn damaged_head_does_not_fail_a_save_that_moved_its_branch() {
    let env = common::Env::init();
    env.corrupted.set(true);
    let src = env.path("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a.txt"), b"hello\n").expect("write");
    env.save("one", Some("1700000000"), &src);
    fs::write(env.repo.join("HEAD"), b"ref: refs/\n").expect("damage HEAD");
    let out = env
        .rw()
        .args(["save", "-n", "one", "--date", "1700000100"])
        .arg(&src)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("HEAD"),
        "a warning names HEAD: {}",
        out.stderr
    );
    let snapshots = common::snapshot_names(&env.rw().args(["ls", "one"]).run().success().lines());
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
}
