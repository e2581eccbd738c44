//! The storage layer against real git: packs we write must satisfy
//! `git verify-pack`/`git fsck --strict`, our idx must equal `git index-pack`'s,
//! and everything git writes (deltas, loose objects, packed-refs) must read back
//! byte-identical to `git cat-file`.

mod common;

use common::noise;
use rewind::object::{hash_object, Kind, ObjectId};
use rewind::repo::{Error, ObjectStore, Repository};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn git_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "alpha ", "beta ", "gamma\n", "delta ", "backup ", "rewind\n",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 6) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn tree(entries: &[(&str, &str, ObjectId)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (mode, name, id) in entries {
        out.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    out
}

fn commit(tree: ObjectId, parent: Option<ObjectId>, msg: &str) -> Vec<u8> {
    let mut s = format!("tree {tree}\n");
    if let Some(p) = parent {
        s.push_str(&format!("parent {p}\n"));
    }
    s.push_str("author t <t@example.com> 1700000000 +0000\n");
    s.push_str("committer t <t@example.com> 1700000000 +0000\n\n");
    s.push_str(msg);
    s.push('\n');
    s.into_bytes()
}

/// Writes a small history (blobs of every flavour, trees, commits) with our
/// writer; returns the repo, published paths and every object written.
/// (id, kind, data) of every object in a test.
type Objects = Vec<(ObjectId, Kind, Vec<u8>)>;

fn write_sample(dir: &Path) -> (Repository, Vec<PathBuf>, Objects) {
    let repo = Repository::init(dir).unwrap();
    let mut w = repo.pack_writer().unwrap();
    let mut all = Vec::new();
    let mut put = |w: &mut rewind::pack::PackWriter, kind, data: Vec<u8>| {
        let id = w.write(kind, &data).unwrap();
        all.push((id, kind, data));
        id
    };
    let blobs = [
        Vec::new(),
        b"hello\n".to_vec(),
        text(1, 100_000),
        noise(2, 200_000),
        noise(3, 10),
        text(4, 20_000),
    ];
    let mut parent = None;
    for round in 0..3u8 {
        let mut entries = Vec::new();
        let names: Vec<String> = (0..blobs.len()).map(|i| format!("f{i}")).collect();
        for (i, b) in blobs.iter().enumerate() {
            let mut b = b.clone();
            b.extend_from_slice(&[round]);
            let id = put(&mut w, Kind::Blob, b);
            entries.push(("100644", names[i].as_str(), id));
        }
        let t = put(&mut w, Kind::Tree, tree(&entries));
        let c = put(
            &mut w,
            Kind::Commit,
            commit(t, parent, &format!("round {round}")),
        );
        parent = Some(c);
    }
    // A duplicate is skipped, not written twice.
    let dup = w.write(Kind::Blob, b"hello\n\x00").unwrap();
    assert!(w.contains(&dup));
    assert_eq!(w.stats().duplicates, 1);
    assert!(
        w.stats().stored >= 3,
        "noise must be stored: {:?}",
        w.stats()
    );
    let paths = w.finish().unwrap();
    repo.update_ref("refs/heads/main", parent.unwrap(), None)
        .unwrap();
    repo.objects().refresh().unwrap();
    (repo, paths, all)
}

#[test]
fn written_pack_passes_git_verify_pack_and_fsck() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/repo");
    let (repo, paths, all) = write_sample(&dir);
    assert_eq!(paths.len(), 2);
    let idx = paths
        .iter()
        .find(|p| p.extension().unwrap() == "idx")
        .unwrap();
    let verify = git(&dir, &["verify-pack", "-v", idx.to_str().unwrap()]);
    let verify = String::from_utf8(verify).unwrap();
    assert!(
        verify.contains(&format!("non delta: {} objects", all.len())),
        "{verify}"
    );
    git(&dir, &["fsck", "--strict", "--no-dangling"]);
    // Nothing left behind in objects/ or objects/pack.
    let stray: Vec<_> = std::fs::read_dir(dir.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("tmp_"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // Read back through our store and through git.
    for (id, kind, data) in &all {
        let obj = repo.objects().read(id).unwrap();
        assert_eq!((obj.kind, &obj.data), (*kind, data));
        assert_eq!(
            repo.objects().read_header(id).unwrap(),
            (*kind, data.len() as u64)
        );
        let via_git = git(&dir, &["cat-file", kind.name(), &id.to_string()]);
        assert_eq!(&via_git, data);
    }
}

#[test]
fn idx_is_byte_identical_to_git_index_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let (_repo, paths, _) = write_sample(&dir);
    let pack = paths
        .iter()
        .find(|p| p.extension().unwrap() == "pack")
        .unwrap();
    let ours = std::fs::read(pack.with_extension("idx")).unwrap();
    let copy = tmp.path().join("copy.pack");
    std::fs::copy(pack, &copy).unwrap();
    git(
        tmp.path(),
        &[
            "index-pack",
            "--index-version=2",
            "-o",
            "theirs.idx",
            "copy.pack",
        ],
    );
    let theirs = std::fs::read(tmp.path().join("theirs.idx")).unwrap();
    assert!(ours == theirs, "idx differs from git index-pack's");
}

#[test]
fn rollover_publishes_several_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let mut w = repo.pack_writer().unwrap();
    w.set_size_limit(50_000);
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(w.write(Kind::Blob, &noise(i, 9_000)).unwrap());
    }
    // Objects in packs already rolled over still count as written.
    assert!(w.contains(&ids[0]));
    let paths = w.finish().unwrap();
    assert!(paths.len() >= 8, "{paths:?}");
    repo.objects().refresh().unwrap();
    for p in paths.iter().filter(|p| p.extension().unwrap() == "idx") {
        git(tmp.path(), &["verify-pack", p.to_str().unwrap()]);
    }
    for id in &ids {
        assert!(repo.objects().contains(id));
    }
}

/// Packs that end with the planned count were hashed while written; the
/// last one, shorter, is read back with its count patched. git checks
/// both trailers and counts.
#[test]
fn object_limit_rollover_hashes_full_packs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let mut w = repo.pack_writer().unwrap();
    w.set_object_limit(5);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(w.write(Kind::Blob, &noise(i, 3_000 + i as usize)).unwrap());
    }
    // A duplicate is not an object: it must not count towards the limit.
    w.write(Kind::Blob, &noise(0, 3_000)).unwrap();
    let paths = w.finish().unwrap();
    let idxs: Vec<_> = paths
        .iter()
        .filter(|p| p.extension().unwrap() == "idx")
        .collect();
    assert_eq!(idxs.len(), 3, "{paths:?}");
    let mut counts = Vec::new();
    for p in &idxs {
        let out = git(tmp.path(), &["verify-pack", "-v", p.to_str().unwrap()]);
        let objects = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| l.contains(" blob "))
            .count();
        counts.push(objects);
    }
    counts.sort();
    assert_eq!(counts, [2, 5, 5]);
    repo.objects().refresh().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let obj = repo.objects().read(id).unwrap();
        assert_eq!(obj.kind, Kind::Blob);
        assert_eq!(obj.data, noise(i as u64, 3_000 + i));
    }
}

#[test]
fn empty_writer_publishes_nothing_and_dropped_writer_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    assert!(repo.pack_writer().unwrap().finish().unwrap().is_empty());
    let mut w = repo.pack_writer().unwrap();
    w.write(Kind::Blob, b"abandoned").unwrap();
    drop(w);
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}"); // pack, info
    assert_eq!(
        std::fs::read_dir(tmp.path().join("objects/pack"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn finish_removes_bup_caches() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let pack_dir = tmp.path().join("objects/pack");
    std::fs::write(pack_dir.join("midx-0123.midx"), b"x").unwrap();
    std::fs::write(pack_dir.join("bup.bloom"), b"x").unwrap();
    let mut w = repo.pack_writer().unwrap();
    w.write(Kind::Blob, b"x").unwrap();
    w.finish().unwrap();
    assert!(!pack_dir.join("midx-0123.midx").exists());
    assert!(!pack_dir.join("bup.bloom").exists());
}

/// Builds a git repository with history that deltas well, then repacks it.
fn git_history(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    let base = text(9, 60_000);
    for i in 0..12u64 {
        let mut a = base.clone();
        a.splice(i as usize * 1000..i as usize * 1000, text(100 + i, 300));
        std::fs::write(dir.join("a.txt"), &a).unwrap();
        std::fs::write(dir.join("b.txt"), text(i % 3, 5_000 + i as usize)).unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/c.bin"), noise(i / 4, 3000)).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    git(dir, &["tag", "-a", "-m", "tagged", "v1"]);
}

/// Every object git knows, as (id, kind, data) from `git cat-file --batch`.
fn all_objects_via_git(git_dir: &Path) -> Objects {
    let list = git(
        git_dir,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
    );
    let batch = git_stdin(git_dir, &["cat-file", "--batch"], &list);
    let mut out = Vec::new();
    let mut rest = &batch[..];
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').unwrap();
        let header = std::str::from_utf8(&rest[..nl]).unwrap();
        let mut parts = header.split(' ');
        let id = ObjectId::from_hex(parts.next().unwrap().as_bytes()).unwrap();
        let kind = Kind::from_name(parts.next().unwrap().as_bytes()).unwrap();
        let size: usize = parts.next().unwrap().parse().unwrap();
        out.push((id, kind, rest[nl + 1..nl + 1 + size].to_vec()));
        rest = &rest[nl + 1 + size + 1..];
    }
    out
}

fn assert_store_matches_git(store: &ObjectStore, objects: &[(ObjectId, Kind, Vec<u8>)]) {
    assert!(objects.len() > 40, "too few objects: {}", objects.len());
    for (id, kind, data) in objects {
        assert!(store.contains(id), "{id}");
        let obj = store.read(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(obj.kind, *kind, "{id}");
        assert!(obj.data == *data, "{id} differs");
        assert_eq!(
            store.read_header(id).unwrap(),
            (*kind, data.len() as u64),
            "{id}"
        );
    }
}

fn delta_count(git_dir: &Path, idx: &Path) -> usize {
    let v = String::from_utf8(git(git_dir, &["verify-pack", "-v", idx.to_str().unwrap()])).unwrap();
    v.lines()
        .filter(|l| l.split_whitespace().count() == 7) // id type size psize offset depth base
        .count()
}

fn only_idx(git_dir: &Path) -> PathBuf {
    let idx: Vec<_> = std::fs::read_dir(git_dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert_eq!(idx.len(), 1, "{idx:?}");
    idx[0].clone()
}

#[test]
fn reads_git_gc_aggressive_repository_with_ofs_deltas_and_loose_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    git_history(&work);
    git(&work, &["gc", "-q", "--aggressive"]);
    let git_dir = work.join(".git");
    let idx = only_idx(&git_dir);
    assert!(delta_count(&git_dir, &idx) > 10, "gc produced no deltas");
    // Loose objects next to the pack.
    let loose_a = git_stdin(&git_dir, &["hash-object", "-w", "--stdin"], b"loose one\n");
    let big = text(77, 300_000);
    git_stdin(&git_dir, &["hash-object", "-w", "--stdin"], &big);
    let repo = Repository::open(&git_dir).unwrap();
    let objects = all_objects_via_git(&git_dir);
    assert_store_matches_git(repo.objects(), &objects);
    let loose_a = ObjectId::from_hex(loose_a.trim_ascii()).unwrap();
    assert_eq!(repo.objects().read(&loose_a).unwrap().data, b"loose one\n");
    // Many threads at once, sharing the base cache.
    let store = Arc::new(repo);
    let objects = Arc::new(objects);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (store, objects) = (store.clone(), objects.clone());
            std::thread::spawn(move || {
                for (id, _, data) in objects.iter().skip(t).step_by(2) {
                    assert!(store.objects().read(id).unwrap().data == *data);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn reads_ref_delta_packs_and_v1_and_forced_64bit_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    git_history(&work);
    let src = work.join(".git");
    let objects = all_objects_via_git(&src);
    let list = git(&src, &["rev-list", "--objects", "--all"]);
    // Without --delta-base-offset, pack-objects writes REF_DELTA entries.
    for (name, index_args) in [
        ("ref-v2", vec!["--index-version=2"]),
        ("ref-v1", vec!["--index-version=1"]),
        // Every offset above 0x100 goes through the 64-bit offset table.
        ("ref-v2-large", vec!["--index-version=2,0x100"]),
    ] {
        let dst = tmp.path().join(name);
        git(tmp.path(), &["init", "-q", "--bare", name]);
        let prefix = dst.join("objects/pack/pack");
        let out = git_stdin(
            &src,
            &[
                "pack-objects",
                "-q",
                "--no-reuse-delta",
                "--window=50",
                "--depth=50",
                prefix.to_str().unwrap(),
            ],
            &list,
        );
        let sha = String::from_utf8(out).unwrap().trim().to_string();
        let pack = dst.join(format!("objects/pack/pack-{sha}.pack"));
        let idx = pack.with_extension("idx");
        std::fs::remove_file(&idx).unwrap();
        let mut args = vec!["index-pack"];
        args.extend(index_args.iter().copied());
        args.extend(["-o", idx.to_str().unwrap(), pack.to_str().unwrap()]);
        git(&dst, &args);
        let repo = Repository::open(&dst).unwrap();
        assert!(delta_count(&dst, &idx) > 10);
        let raw = std::fs::read(&pack).unwrap();
        // Type 7 = REF_DELTA appears in some entry header.
        let index = rewind::pack::PackIndex::open(&idx).unwrap();
        let ref_deltas = index
            .entries()
            .filter(|e| (raw[e.offset as usize] >> 4) & 7 == 7)
            .count();
        assert!(ref_deltas > 10, "{name}: {ref_deltas} REF_DELTA entries");
        assert_store_matches_git(repo.objects(), &objects);
        if name == "ref-v1" {
            // Without CRC-32s only the SHA-1 check stands between damage and
            // wrong bytes.
            assert_eq!(index.version(), 1);
            drop(repo);
            flip_bytes_everywhere(&dst.join("objects"), &pack, &objects, false);
        }
    }
}

/// Flips one byte at many positions of `pack`; every read must then either
/// return the right bytes or `Corrupt` naming the object and the pack.
/// With `must_notice` false (idx v1 has no CRC-32s) a flip that changes no
/// object's bytes, such as a zlib padding bit, may go unnoticed.
fn flip_bytes_everywhere(
    objects_dir: &Path,
    pack: &Path,
    objects: &[(ObjectId, Kind, Vec<u8>)],
    must_notice: bool,
) {
    use std::os::unix::fs::PermissionsExt;
    let original = std::fs::read(pack).unwrap();
    std::fs::set_permissions(pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    let step = (original.len() / 600).max(1);
    // Every bit position gets hit somewhere.
    let mut flips: Vec<(usize, u8)> = (0..original.len())
        .step_by(step)
        .map(|p| (p, 1 << (p % 8)))
        .collect();
    let len = original.len();
    for p in [0, 5, 9, 11, 12, 13, len - 1, len - 20, len - 21] {
        flips.push((p, 0x01));
    }
    // Type bits of entry headers: a blob turned tree must not slip through.
    let index = rewind::pack::PackIndex::open(&pack.with_extension("idx")).unwrap();
    for e in index.entries().take(30) {
        flips.push((e.offset as usize, 0x10));
        flips.push((e.offset as usize, 0x40));
    }
    for (pos, mask) in flips {
        let mut damaged = original.clone();
        damaged[pos] ^= mask;
        std::fs::write(pack, &damaged).unwrap();
        let store = ObjectStore::open(objects_dir).unwrap();
        let mut corrupt = 0;
        for (id, kind, data) in objects {
            match store.read(id) {
                Ok(obj) => assert!(
                    obj.kind == *kind && obj.data == *data,
                    "wrong bytes for {id}, flip at {pos}"
                ),
                Err(Error::Corrupt {
                    id: bad,
                    pack: Some(p),
                    ..
                }) => {
                    assert_eq!(bad, *id);
                    assert_eq!(p, pack);
                    corrupt += 1;
                }
                Err(e) => panic!("flip at {pos}: {id}: unexpected error {e}"),
            }
            // Headers may be read from damaged data but must not panic.
            let _ = store.read_header(id);
        }
        if corrupt == 0 && must_notice {
            let index = rewind::pack::PackIndex::open(&pack.with_extension("idx")).unwrap();
            let entry = index
                .entries()
                .filter(|e| e.offset <= pos as u64)
                .max_by_key(|e| e.offset);
            panic!(
                "flip at {pos} went unnoticed (entry {entry:?}, bytes {:02x?})",
                entry.map(|e| &original[e.offset as usize..pos + 1])
            );
        }
    }
    std::fs::write(pack, &original).unwrap();
}

#[test]
fn flipped_byte_in_our_pack_is_reported_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let (_repo, paths, all) = write_sample(&dir);
    let pack = paths
        .iter()
        .find(|p| p.extension().unwrap() == "pack")
        .unwrap();
    flip_bytes_everywhere(&dir.join("objects"), pack, &all, true);
}

#[test]
fn flipped_byte_in_delta_pack_is_reported_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    git_history(&work);
    git(&work, &["gc", "-q", "--aggressive"]);
    let git_dir = work.join(".git");
    let objects = all_objects_via_git(&git_dir);
    let pack = only_idx(&git_dir).with_extension("pack");
    flip_bytes_everywhere(&git_dir.join("objects"), &pack, &objects, true);
}

#[test]
fn idx_naming_the_wrong_object_yields_corrupt_not_wrong_bytes() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let mut w = repo.pack_writer().unwrap();
    w.write(Kind::Blob, b"first").unwrap();
    w.write(Kind::Blob, b"second").unwrap();
    let paths = w.finish().unwrap();
    let idx = paths
        .iter()
        .find(|p| p.extension().unwrap() == "idx")
        .unwrap();
    let index = rewind::pack::PackIndex::open(idx).unwrap();
    let mut entries: Vec<_> = index.entries().collect();
    // A well-formed idx (checksums, CRCs fine) whose id does not match the data.
    let impostor = hash_object(Kind::Blob, b"impostor");
    entries[0].id = impostor;
    let bytes = rewind::pack::idx::encode_v2(&mut entries, index.pack_checksum());
    std::fs::set_permissions(idx, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(idx, bytes).unwrap();
    let repo = Repository::open(tmp.path()).unwrap();
    match repo.objects().read(&impostor) {
        Err(Error::Corrupt {
            id,
            pack: Some(p),
            detail,
        }) => {
            assert_eq!(id, impostor);
            assert_eq!(p, idx.with_extension("pack"));
            assert!(detail.contains("does not match its id"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refresh_picks_up_new_packs_and_drops_removed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    // Packs are scanned on first use; after that only refresh() (or a miss
    // in read()) rescans.
    assert!(repo.objects().packs().is_empty());
    let mut w = repo.pack_writer().unwrap();
    let id = w.write(Kind::Blob, b"soon gone").unwrap();
    let paths = w.finish().unwrap();
    assert!(!repo.objects().contains(&id), "no rescan without refresh");
    repo.objects().refresh().unwrap();
    assert!(repo.objects().contains(&id));
    assert_eq!(repo.objects().read(&id).unwrap().data, b"soon gone");
    for p in &paths {
        std::fs::remove_file(p).unwrap();
    }
    repo.objects().refresh().unwrap();
    assert!(!repo.objects().contains(&id), "stale 'already have it'");
    assert!(matches!(repo.objects().read(&id), Err(Error::NotFound(x)) if x == id));
    // read() rescans on a miss by itself.
    let mut w = repo.pack_writer().unwrap();
    let id2 = w.write(Kind::Blob, b"new").unwrap();
    w.finish().unwrap();
    assert_eq!(repo.objects().read(&id2).unwrap().data, b"new");
}

#[test]
fn damaged_idx_is_reported_not_silently_missing() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let mut w = repo.pack_writer().unwrap();
    let id = w.write(Kind::Blob, b"indexed").unwrap();
    let paths = w.finish().unwrap();
    let idx = paths
        .iter()
        .find(|p| p.extension().unwrap() == "idx")
        .unwrap();
    std::fs::set_permissions(idx, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(idx).unwrap();
    bytes[1040] ^= 1; // inside the only id
    std::fs::write(idx, bytes).unwrap();
    let repo = Repository::open(tmp.path()).unwrap();
    match repo.objects().read(&id) {
        Err(Error::Corrupt { pack: Some(p), .. }) => assert_eq!(&p, idx),
        other => panic!("{other:?}"),
    }
}

#[test]
fn init_and_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/repo");
    let repo = Repository::init(&dir).unwrap();
    assert_eq!(repo.path(), dir);
    assert!(matches!(Repository::init(&dir), Err(Error::AlreadyExists { path }) if path == dir));
    assert!(matches!(
        Repository::open(tmp.path()),
        Err(Error::NotARepository { .. })
    ));
    let cfg = |key: &str| String::from_utf8(git(&dir, &["config", "--get", key])).unwrap();
    assert_eq!(cfg("pack.indexversion").trim(), "2");
    assert_eq!(cfg("core.bare").trim(), "true");
    assert_eq!(cfg("core.logallrefupdates").trim(), "true");
    assert_eq!(
        String::from_utf8(git(&dir, &["rev-parse", "--is-bare-repository"]))
            .unwrap()
            .trim(),
        "true"
    );
    git(&dir, &["fsck", "--strict"]);
    // A repository made by git (as bup init makes them) opens.
    git(tmp.path(), &["init", "-q", "--bare", "bup"]);
    Repository::open(&tmp.path().join("bup")).unwrap();
}

#[test]
fn head_points_at_a_real_branch_for_clean_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = Repository::init(&dir).unwrap();
    assert_eq!(repo.head_branch().unwrap().as_deref(), Some("main"));
    let mut w = repo.pack_writer().unwrap();
    let blob = w.write(Kind::Blob, b"data\n").unwrap();
    let t = w
        .write(Kind::Tree, &tree(&[("100644", "f", blob)]))
        .unwrap();
    let c = w.write(Kind::Commit, &commit(t, None, "first")).unwrap();
    w.finish().unwrap();
    repo.update_ref("refs/heads/host-etc", c, None).unwrap();
    assert!(repo.set_head_if_dangling("host-etc").unwrap());
    assert_eq!(repo.head_branch().unwrap().as_deref(), Some("host-etc"));
    repo.update_ref("refs/heads/other", c, None).unwrap();
    assert!(
        !repo.set_head_if_dangling("other").unwrap(),
        "HEAD was not dangling"
    );
    assert_eq!(repo.read_ref("HEAD").unwrap(), Some(c));
    let out = Command::new("git")
        .args(["clone", "-q", dir.to_str().unwrap(), "clone"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("clone/f")).unwrap(),
        b"data\n"
    );
}

#[test]
fn ref_compare_and_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let a = hash_object(Kind::Blob, b"a");
    let b = hash_object(Kind::Blob, b"b");
    let name = "refs/heads/set";
    assert_eq!(repo.read_ref(name).unwrap(), None);
    repo.update_ref(name, a, None).unwrap();
    assert!(matches!(
        repo.update_ref(name, b, None),
        Err(Error::RefChanged { expected: None, found: Some(f), .. }) if f == a
    ));
    assert!(matches!(
        repo.update_ref(name, b, Some(b)),
        Err(Error::RefChanged { .. })
    ));
    repo.update_ref(name, b, Some(a)).unwrap();
    assert_eq!(repo.read_ref(name).unwrap(), Some(b));
    assert_eq!(
        String::from_utf8(git(tmp.path(), &["rev-parse", name]))
            .unwrap()
            .trim(),
        b.to_string()
    );
    assert!(!tmp.path().join("refs/heads/set.lock").exists());
    for bad in [
        "refs/heads/a..b",
        "refs/heads/x.lock",
        "refs/heads/a b",
        "HEAD",
        "refs/heads/\x07",
    ] {
        assert!(
            matches!(repo.update_ref(bad, a, None), Err(Error::BadRefName { .. })),
            "{bad}"
        );
    }
}

#[test]
fn concurrent_ref_updates_never_lose_an_update() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Arc::new(Repository::init(tmp.path()).unwrap());
    let name = "refs/heads/counter";
    let (threads, per_thread) = (4, 25);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let repo = repo.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                let mut i = 0;
                while done.len() < per_thread {
                    let old = repo.read_ref(name).unwrap();
                    let new = hash_object(Kind::Blob, format!("{t}-{i}").as_bytes());
                    i += 1;
                    match repo.update_ref(name, new, old) {
                        Ok(()) => done.push((old, new)),
                        Err(Error::RefChanged { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                done
            })
        })
        .collect();
    let mut next: HashMap<Option<ObjectId>, ObjectId> = HashMap::new();
    for h in handles {
        for (old, new) in h.join().unwrap() {
            assert!(
                next.insert(old, new).is_none(),
                "two updates from the same old value"
            );
        }
    }
    // The successful updates form one chain from "no ref" to the final value.
    let mut at = None;
    let mut steps = 0;
    while let Some(&n) = next.get(&at) {
        at = Some(n);
        steps += 1;
    }
    assert_eq!(steps, threads * per_thread);
    assert_eq!(repo.read_ref(name).unwrap(), at);
}

#[test]
fn held_lock_waits_and_a_stale_one_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Arc::new(Repository::init(tmp.path()).unwrap());
    let a = hash_object(Kind::Blob, b"a");
    let b = hash_object(Kind::Blob, b"b");
    let lock = tmp.path().join("refs/heads/x.lock");
    std::fs::write(&lock, b"").unwrap();
    // Released within the wait: the update goes through.
    let l2 = lock.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::remove_file(l2).unwrap();
    });
    repo.update_ref("refs/heads/x", a, None).unwrap();
    releaser.join().unwrap();

    // A live rewind holds the guard while it holds a ref lock: the lock is
    // waited for, never removed under it.
    let guard_path = tmp.path().join("rewind/refs.guard");
    let guard = std::fs::OpenOptions::new()
        .write(true)
        .open(&guard_path)
        .unwrap();
    guard.lock().unwrap();
    std::fs::write(&lock, b"").unwrap();
    let (l2, repo2) = (lock.clone(), Arc::clone(&repo));
    let updater = std::thread::spawn(move || repo2.update_ref("refs/heads/x", b, Some(a)));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(l2.exists(), "a lock held by a live process was removed");
    assert_eq!(repo.read_ref("refs/heads/x").unwrap(), Some(a));
    std::fs::remove_file(&lock).unwrap();
    guard.unlock().unwrap();
    updater.join().unwrap().unwrap();
    assert_eq!(repo.read_ref("refs/heads/x").unwrap(), Some(b));

    // Left by a process that died (kill -9 between lock and rename): nobody
    // holds the guard, so after the wait the lock is stale and removed.
    std::fs::write(&lock, b"").unwrap();
    let start = std::time::Instant::now();
    repo.update_ref("refs/heads/x", a, Some(b)).unwrap();
    assert!(start.elapsed().as_secs_f64() > 4.0);
    assert!(!lock.exists());
    assert_eq!(repo.read_ref("refs/heads/x").unwrap(), Some(a));
}

#[test]
fn packed_refs_are_read_and_shadowed_by_loose_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    git_history(&work);
    git(&work, &["branch", "side", "HEAD~3"]);
    git(&work, &["pack-refs", "--all"]);
    let git_dir = work.join(".git");
    assert!(!git_dir.join("refs/heads/main").exists());
    let repo = Repository::open(&git_dir).unwrap();
    let rev = |r: &str| ObjectId::from_hex(git(&work, &["rev-parse", r]).trim_ascii()).unwrap();
    assert_eq!(repo.read_ref("refs/heads/main").unwrap(), Some(rev("main")));
    assert_eq!(repo.read_ref("HEAD").unwrap(), Some(rev("main")));
    assert_eq!(
        repo.read_ref("refs/tags/v1").unwrap(),
        Some(rev("refs/tags/v1"))
    );
    let heads = repo.list_refs("refs/heads/").unwrap();
    assert_eq!(
        heads,
        vec![
            ("refs/heads/main".to_string(), rev("main")),
            ("refs/heads/side".to_string(), rev("side"))
        ]
    );
    // CAS against the packed value writes a loose ref that shadows it.
    repo.update_ref("refs/heads/side", rev("main"), Some(rev("side")))
        .unwrap();
    assert_eq!(rev("side"), rev("main"));
    git(&work, &["update-ref", "refs/heads/zz", "HEAD~1"]);
    let all = repo.list_refs("refs/").unwrap();
    let names: Vec<_> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "refs/heads/main",
            "refs/heads/side",
            "refs/heads/zz",
            "refs/tags/v1"
        ]
    );
    assert_eq!(all[1].1, rev("main"));
}

/// Throughput of the writer on text and on random data.
/// Run: cargo test --release --test pack_store -- --ignored --nocapture
#[test]
#[ignore]
fn bench_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let chunk = 64 << 10;
    let total = 256 << 20;
    for (label, data) in [("text", text(5, total)), ("random", noise(6, total))] {
        for level in [1u32, 0] {
            let mut w = repo.pack_writer().unwrap();
            w.set_compression_level(level);
            let start = std::time::Instant::now();
            for c in data.chunks(chunk) {
                w.write(Kind::Blob, c).unwrap();
            }
            let write_secs = start.elapsed().as_secs_f64();
            let stats = w.stats();
            w.finish().unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{label:6} level {level}: write {:.0} MB/s, with finish {:.0} MB/s, ratio {:.3}, stored {} of {}",
                total as f64 / write_secs / 1e6,
                total as f64 / secs / 1e6,
                stats.packed_bytes as f64 / stats.raw_bytes as f64,
                stats.stored,
                stats.objects
            );
        }
    }
    // The alternatives the writer chooses between, on 64 KiB chunks.
    let random = noise(7, 64 << 20);
    let textual = text(8, 64 << 20);
    let mut out = Vec::with_capacity(80 << 10);
    for (label, data, level) in [
        ("random, zlib level 1", &random, 1),
        ("random, zlib level 0", &random, 0),
        ("text, zlib level 1", &textual, 1),
    ] {
        let mut z = flate2::Compress::new(flate2::Compression::new(level), true);
        let start = std::time::Instant::now();
        let mut packed = 0;
        for c in data.chunks(chunk) {
            z.reset();
            out.clear();
            z.compress_vec(c, &mut out, flate2::FlushCompress::Finish)
                .unwrap();
            packed += out.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {:.0} MB/s, ratio {:.3}",
            data.len() as f64 / secs / 1e6,
            packed as f64 / data.len() as f64
        );
    }
    let start = std::time::Instant::now();
    for c in random.chunks(chunk) {
        std::hint::black_box(hash_object(Kind::Blob, c));
    }
    println!(
        "sha1: {:.0} MB/s",
        random.len() as f64 / start.elapsed().as_secs_f64() / 1e6
    );
}

/// Publishes one pack per blob; returns the ids and each pack's paths.
fn packs_of_blobs(repo: &Repository, tag: &str, n: usize) -> Vec<(ObjectId, Vec<PathBuf>)> {
    (0..n)
        .map(|i| {
            let mut w = repo.pack_writer().unwrap();
            let id = w
                .write(Kind::Blob, format!("{tag} blob {i}").as_bytes())
                .unwrap();
            (id, w.finish().unwrap())
        })
        .collect()
}

fn rewind_dir(repo: &Repository) -> PathBuf {
    repo.path().join("rewind")
}

/// The regression bup suffered: a cache said "already stored" for objects
/// of a pack that had been deleted, and new snapshots referred to them.
#[test]
fn known_objects_table_never_claims_objects_of_a_deleted_pack() {
    use rewind::repo::known::{KnownObjects, MIDX_NAME};
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let blobs = packs_of_blobs(&repo, "a", 6);
    repo.objects().refresh().unwrap();

    // More packs than allowed outside the table: it is written and covers all.
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 2);
    assert!(known.report().rebuilt);
    assert_eq!(known.report().covered_packs, 6);
    assert_eq!(known.report().table_objects, 6);
    assert!(blobs.iter().all(|(id, _)| known.contains(id)));
    let absent = hash_object(Kind::Blob, b"never written");
    assert!(!known.contains(&absent));
    drop(known);
    let table = rewind_dir(&repo).join(MIDX_NAME);
    assert!(table.is_file());
    // Git must never see it as its own multi-pack-index.
    assert!(!tmp.path().join("objects/pack/multi-pack-index").exists());

    // Reopened with nothing changed: the table is used as it is.
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 2);
    assert!(!known.report().rebuilt);
    assert_eq!(known.report().covered_packs, 6);
    drop(known);

    // Delete one covered pack (as a prune or `git gc` would). The table
    // still lists its object, but must not be believed.
    let (gone, paths) = &blobs[2];
    for p in paths {
        std::fs::remove_file(p).unwrap();
    }
    let before = std::fs::read(&table).unwrap();
    repo.objects().refresh().unwrap();
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 2);
    assert!(!known.contains(gone), "stale 'already stored' for {gone}");
    assert!(known.report().rejected.as_deref().unwrap().contains("gone"));
    assert!(known.report().rebuilt);
    for (id, _) in blobs.iter().filter(|(id, _)| id != gone) {
        assert!(known.contains(id));
    }
    assert_ne!(std::fs::read(&table).unwrap(), before, "table rewritten");

    // The same holds when the table would not be rebuilt (few packs outside
    // it): deleting a covered pack still drops the table.
    drop(known);
    let (gone2, paths) = &blobs[3];
    for p in paths {
        std::fs::remove_file(p).unwrap();
    }
    repo.objects().refresh().unwrap();
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 100);
    assert!(!known.contains(gone2));
    assert!(!known.report().rebuilt);
    assert_eq!(known.report().covered_packs, 0);
    assert!(known.contains(&blobs[0].0));

    // And a save run through the whole pipeline writes the object again.
    drop(known);
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"a blob 3").unwrap();
    assert_eq!(hash_object(Kind::Blob, b"a blob 3"), *gone2);
    rewind_save(&repo, &src);
    repo.objects().refresh().unwrap();
    assert_eq!(repo.objects().read(gone2).unwrap().data, b"a blob 3");
}

fn rewind_save(repo: &Repository, src: &Path) {
    let opts = rewind::save::SaveOptions {
        name: "t".into(),
        sources: vec![src.to_path_buf()],
        date: None,
        rerooting: Default::default(),
        filter: rewind::source::filter::Filter::new(&[], &[]).unwrap(),
        one_file_system: false,
        commands: Vec::new(),
        progress: None,
    };
    let id = rewind::save::Identity {
        name: b"t".to_vec(),
        email: b"t@example.com".to_vec(),
    };
    rewind::save::save(repo, &opts, &id).unwrap();
}

#[test]
fn known_objects_table_new_packs_are_covered_and_damage_means_rebuild() {
    use rewind::repo::known::{KnownObjects, MIDX_NAME};
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let first = packs_of_blobs(&repo, "x", 4);
    repo.objects().refresh().unwrap();
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 1);
    assert!(known.report().rebuilt);
    drop(known);

    // New packs after the table: answered through their own idx.
    let later = packs_of_blobs(&repo, "y", 2);
    repo.objects().refresh().unwrap();
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 2);
    assert!(!known.report().rebuilt);
    assert_eq!(
        (known.report().covered_packs, known.report().uncovered_packs),
        (4, 2)
    );
    assert!(first.iter().chain(&later).all(|(id, _)| known.contains(id)));
    drop(known);

    // A torn table (cut anywhere) or a flipped byte is ignored and rebuilt.
    let table = rewind_dir(&repo).join(MIDX_NAME);
    let good = std::fs::read(&table).unwrap();
    let cuts = [0, 7, 20, good.len() / 2, good.len() - 1];
    // Magic, pack count, a pack name, an id, the fan-out, the checksum.
    let ids_end = good.len() - (1 << 18) - 28;
    let flips = [
        0usize,
        9,
        30,
        ids_end - 50,
        good.len() - 100_000,
        good.len() - 10,
    ];
    for (i, damaged) in cuts
        .iter()
        .map(|&n| good[..n].to_vec())
        .chain(flips.iter().map(|&at| {
            let mut b = good.clone();
            b[at] ^= 0x10;
            b
        }))
        .enumerate()
    {
        std::fs::write(&table, &damaged).unwrap();
        let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 0);
        assert!(known.report().rejected.is_some(), "damage {i} accepted");
        assert!(known.report().rebuilt, "damage {i}");
        assert!(first.iter().chain(&later).all(|(id, _)| known.contains(id)));
        assert_eq!(known.report().table_objects, 6);
    }
}

/// A pack cut short keeps its idx, which still lists every object: the
/// table (and the idx, and the store's existence check) said "already
/// stored", so a save skipped writing chunks that could no longer be read
/// and its snapshot was as broken as the pack. Only sound packs vouch now;
/// a save writes the objects again, and reads prefer the sound copy.
#[test]
fn known_objects_never_claim_objects_of_a_damaged_pack() {
    use rewind::repo::known::KnownObjects;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let blobs = packs_of_blobs(&repo, "d", 6);
    repo.objects().refresh().unwrap();
    let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), 2);
    assert!(known.report().rebuilt);
    assert!(blobs.iter().all(|(id, _)| known.contains(id)));
    drop(known);

    let (hurt, paths) = &blobs[2];
    let pack = paths
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let len = std::fs::metadata(pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    // A new process: the pack's frame is checked when it is opened.
    let repo = Repository::open(tmp.path()).unwrap();
    for max_uncovered in [100, 2] {
        let known = KnownObjects::open_with(repo.objects(), &rewind_dir(&repo), max_uncovered);
        assert_eq!(known.report().damaged_packs, 1);
        assert!(
            !known.contains(hurt),
            "'already stored' from a damaged pack"
        );
        assert!(known
            .report()
            .rejected
            .as_deref()
            .unwrap()
            .contains("damaged"));
        for (id, _) in blobs.iter().filter(|(id, _)| id != hurt) {
            assert!(known.contains(id));
        }
    }
    // The change index asks the store the same question.
    assert!(!repo.objects().contains(hurt));
    assert!(repo.objects().read(hurt).is_err());

    // A save writes the object again, and reads find that copy.
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"d blob 2").unwrap();
    assert_eq!(hash_object(Kind::Blob, b"d blob 2"), *hurt);
    rewind_save(&repo, &src);
    repo.objects().refresh().unwrap();
    assert!(repo.objects().contains(hurt));
    assert_eq!(repo.objects().read(hurt).unwrap().data, b"d blob 2");
}

/// A write error in the pipeline's appender thread (here EFBIG from a file
/// size limit, standing in for ENOSPC) fails the save with that error and
/// leaves no pack, no temporary file and no branch behind.
#[test]
fn save_write_error_in_pipeline_surfaces_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    Repository::init(&repo_dir).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..4 {
        std::fs::write(src.join(format!("n{i}")), noise(i, 1 << 20)).unwrap();
    }
    // An ignored SIGXFSZ survives exec, so writes past the limit fail with
    // EFBIG instead of killing the process.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 400; exec \"$0\" -d \"$1\" save -n b \"$2\"")
        .arg(env!("CARGO_BIN_EXE_rewind"))
        .arg(&repo_dir)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "save succeeded: {stderr}");
    assert!(
        stderr.contains("pack"),
        "error does not name the pack: {stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(repo_dir.join("objects"))
        .unwrap()
        .chain(std::fs::read_dir(repo_dir.join("objects/pack")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "pack" && n != "info")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(!repo_dir.join("refs/heads/b").exists());

    // Without the limit the same save works.
    let status = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .arg("-d")
        .arg(&repo_dir)
        .args(["save", "-n", "b"])
        .arg(&src)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(repo_dir.join("refs/heads/b").exists());
}

/// A loose object whose file is damaged anywhere (zlib header, object
/// header, content, checksum) reads as `Corrupt` naming it, never as data.
#[test]
fn damaged_loose_objects_are_corrupt_never_data() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    git_history(&work);
    let git_dir = work.join(".git");
    let content = text(5, 2000);
    let hex = git_stdin(&git_dir, &["hash-object", "-w", "--stdin"], &content);
    let id = ObjectId::from_hex(hex.trim_ascii()).unwrap();
    let hex = id.to_string();
    let path = git_dir.join("objects").join(&hex[..2]).join(&hex[2..]);
    let original = std::fs::read(&path).unwrap();
    let mut caught = 0;
    for pos in (0..original.len()).step_by(7) {
        let mut damaged = original.clone();
        damaged[pos] ^= 0x40;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, &damaged).unwrap();
        let repo = Repository::open(&git_dir).unwrap();
        match repo.objects().read(&id) {
            Ok(object) => assert_eq!(object.data, content, "wrong bytes after a flip at {pos}"),
            Err(Error::Corrupt { id: named, .. }) => {
                assert_eq!(named, id);
                caught += 1;
            }
            Err(other) => panic!("flip at {pos}: unexpected error {other}"),
        }
    }
    assert!(
        caught > original.len() / 14,
        "only {caught} flips were caught"
    );
}

/// A remote's cached idx copies: the table answers for the packs it
/// covers without their idx being read (a re-save over SSH starts from
/// them cold); the packs outside it are read, and one that does not read
/// sends the save to the server's list instead (None).
#[test]
fn known_objects_from_cached_idx_files_reads_only_what_the_table_lacks() {
    use rewind::repo::known::KnownObjects;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path()).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let idx_files = |repo: &Repository| -> Vec<(String, PathBuf)> {
        let dir = repo.path().join("objects/pack");
        let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(n, _)| n.ends_with(".idx"))
            .collect();
        files.sort();
        files
    };
    let first = packs_of_blobs(&repo, "c", 4);
    // More than allowed outside the table: every idx is read, the table built.
    let known = KnownObjects::from_index_files(&idx_files(&repo), &state, 2).unwrap();
    assert!(known.report().rebuilt);
    assert_eq!(known.report().covered_packs, 4);
    drop(known);

    let later = packs_of_blobs(&repo, "d", 1);
    let files = idx_files(&repo);
    // Damage every covered idx: the table answers, so none is read.
    let later_idx = later[0]
        .1
        .iter()
        .find(|p| p.extension().unwrap() == "idx")
        .unwrap();
    for (_, path) in files.iter().filter(|(_, p)| p != later_idx) {
        std::fs::write(path, b"not an idx").unwrap();
    }
    let known = KnownObjects::from_index_files(&files, &state, 2).unwrap();
    assert!(!known.report().rebuilt);
    assert_eq!(
        (known.report().covered_packs, known.report().uncovered_packs),
        (4, 1)
    );
    assert!(first.iter().chain(&later).all(|(id, _)| known.contains(id)));
    assert!(!known.contains(&hash_object(Kind::Blob, b"never written")));
    drop(known);

    // The pack outside the table must read.
    std::fs::write(later_idx, b"not an idx either").unwrap();
    assert!(KnownObjects::from_index_files(&files, &state, 2).is_none());
}
