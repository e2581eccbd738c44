//! `rewind fsck`, `--generate` and `--repair` on real repositories, with
//! real damage: flipped bytes, a zeroed run, deleted packs. git and bup are
//! the oracles that recovery files disturb nothing.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Two saves of a tree with a chunked file, a small file and many small
/// ones; returns (env, source dir).
fn saved_repo() -> (Env, PathBuf) {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(src.join("etc/big.bin"), noise(7, 3 << 20)).unwrap();
    for i in 0..50 {
        fs::write(src.join(format!("etc/f{i}")), format!("file {i}\n")).unwrap();
    }
    env.save("etc", Some("2026-11-30T12:00:00Z"), &src);
    fs::write(src.join("etc/hosts"), b"127.0.0.1 localhost\n10.0.0.1 db\n").unwrap();
    env.save("etc", Some("2026-12-01T12:00:00Z"), &src);
    (env, src)
}

/// The packs of a repository, largest first.
fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    v
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut data = fs::read(path).unwrap();
    data[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).unwrap();
}

/// `git show-index` of the idx of `pack`: "offset id (crc)" lines.
fn show_index(pack: &Path) -> String {
    let idx = fs::read(pack.with_extension("idx")).unwrap();
    run_with_input(
        std::process::Command::new("git").arg("show-index"),
        Some(&idx),
    )
    .success()
    .stdout_str()
}

/// The offset of the entry of object `id` in `pack`, from `git show-index`.
fn offset_of(pack: &Path, id: &str) -> u64 {
    show_index(pack)
        .lines()
        .find(|l| l.contains(id))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{id} not in {}", pack.display()))
        .parse()
        .unwrap()
}

#[test]
fn clean_repository_passes_with_exit_0() {
    let (env, _src) = saved_repo();
    let out = env.rw().arg("fsck").run().success();
    let s = out.stdout_str();
    assert!(s.contains("checked 2 packs"), "{s}");
    assert!(s.contains("2 snapshots of 1 refs"), "{s}");
    assert!(s.contains("no damage"), "{s}");
}

#[test]
fn flipped_byte_in_a_blob_names_the_file_and_both_snapshots() {
    let (env, _src) = saved_repo();
    env.corrupted.set(true);
    let hosts = run(env.git().args(["rev-parse", "etc~1:"]))
        .success()
        .stdout_str();
    // The first snapshot's etc/hosts blob.
    let tree = hosts.trim();
    let blob = run(env.git().args([
        "rev-parse",
        &format!(
            "{tree}:{}/etc/hosts",
            env.path("src")
                .display()
                .to_string()
                .trim_start_matches('/')
        ),
    ]))
    .success()
    .stdout_str()
    .trim()
    .to_string();
    let pack = packs(&env.repo)
        .into_iter()
        .find(|p| show_index(p).contains(&blob))
        .expect("a pack holds the blob");
    let at = offset_of(&pack, &blob);
    let byte = fs::read(&pack).unwrap()[at as usize + 4];
    patch(&pack, at + 4, &[byte ^ 0x40]);
    let out = env.rw().arg("fsck").run().status(1);
    let s = out.stdout_str();
    let line = s
        .lines()
        .find(|l| l.contains(&blob))
        .unwrap_or_else(|| panic!("no line names {blob}:\n{s}"));
    assert!(line.starts_with("damaged: blob"), "{line}");
    assert!(line.contains(&format!("at offset {at}")), "{line}");
    assert!(
        line.contains("etc/2026-11-30-120000/") && line.ends_with("/etc/hosts"),
        "{line}"
    );
    assert!(s.contains("trailer checksum does not match"), "{s}");
}

/// An object held by two packs (`git repack -a` without `-d` copies every
/// object into a new pack) whose copy in one pack is damaged: the
/// snapshots read the sound copy, so fsck names the damaged copy and its
/// pack (which needs repair) but no snapshot path, and calls nothing
/// missing. It used to report the object damaged for every snapshot.
#[test]
fn damaged_copy_with_a_sound_copy_in_another_pack_affects_no_snapshot() {
    let (env, _src) = saved_repo();
    env.corrupted.set(true);
    let before = packs(&env.repo);
    run(env
        .git()
        .args(["-c", "repack.writeBitmaps=false", "repack", "-a"]))
    .success();
    let after = packs(&env.repo);
    let copy = after
        .iter()
        .find(|p| !before.contains(p))
        .expect("repack wrote a new pack")
        .clone();
    let tree = run(env.git().args(["rev-parse", "etc~1:"]))
        .success()
        .stdout_str()
        .trim()
        .to_string();
    let path = env.path("src").display().to_string();
    let blob = run(env.git().args([
        "rev-parse",
        &format!("{tree}:{}/etc/hosts", path.trim_start_matches('/')),
    ]))
    .success()
    .stdout_str()
    .trim()
    .to_string();
    let damaged = before
        .iter()
        .find(|p| show_index(p).contains(&blob))
        .expect("an old pack holds the blob")
        .clone();
    assert!(show_index(&copy).contains(&blob));
    let at = offset_of(&damaged, &blob);
    let byte = fs::read(&damaged).unwrap()[at as usize + 4];
    patch(&damaged, at + 4, &[byte ^ 0x40]);
    let s = env.rw().arg("fsck").run().status(1).stdout_str();
    let lines: Vec<&str> = s.lines().filter(|l| l.contains(&blob)).collect();
    assert_eq!(lines.len(), 1, "{s}");
    let name = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        lines[0].starts_with(&format!("damaged: blob {blob} in {}.pack", name(&damaged))),
        "{s}"
    );
    assert!(
        lines[0].ends_with(&format!("{}.pack holds a sound copy", name(&copy))),
        "{s}"
    );
    assert!(!s.contains("used by"), "{s}");
    // The damaged copy counts as damage; nothing is missing.
    assert!(s.contains(" damaged, 0 missing"), "{s}");
}

#[test]
fn generate_damage_repair_restores_the_pack_byte_identical() {
    let (env, src) = saved_repo();
    env.rw().args(["fsck", "--generate"]).run().success();
    let pack = packs(&env.repo)[0].clone();
    let original = fs::read(&pack).unwrap();
    // A contiguous run of 3% of the pack, zeroed, plus a flipped byte elsewhere.
    let len = original.len() as u64;
    let run_len = len * 3 / 100;
    patch(&pack, len / 3, &vec![0u8; run_len as usize]);
    patch(&pack, len * 4 / 5, &[original[(len * 4 / 5) as usize] ^ 1]);
    let out = env.rw().args(["fsck", "--repair"]).run().success();
    let s = out.stdout_str();
    assert!(s.contains("repaired: "), "{s}");
    assert!(s.contains("big.bin"), "the damage was named first:\n{s}");
    assert!(s.lines().last().unwrap().contains("no damage"), "{s}");
    assert_eq!(fs::read(&pack).unwrap(), original, "byte-identical");
    let out_dir = env.path("restored");
    env.restore(&out_dir, &snap_path("etc", "2026-11-30-120000", &src));
    assert_eq!(
        fs::read(out_dir.join("src/etc/big.bin")).unwrap(),
        fs::read(src.join("etc/big.bin")).unwrap()
    );
    // Recovery files leave git and bup alone (Env's drop runs git fsck --strict).
    if require("bup") {
        run(env.bup().arg("fsck")).success();
        run(env.bup().args(["ls", "etc/latest/"])).success();
    }
}

#[test]
fn damage_beyond_recovery_capacity_is_reported_and_nothing_replaced() {
    let (env, _src) = saved_repo();
    env.corrupted.set(true);
    env.rw().args(["fsck", "--generate"]).run().success();
    let pack = packs(&env.repo)[0].clone();
    let len = fs::metadata(&pack).unwrap().len();
    patch(&pack, len / 10, &vec![0xaa; (len * 3 / 10) as usize]);
    let damaged = fs::read(&pack).unwrap();
    let out = env.rw().args(["fsck", "--repair"]).run().status(1);
    let s = out.stdout_str();
    let line = s
        .lines()
        .find(|l| l.starts_with("cannot repair"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        line.contains("beyond what the recovery data can repair"),
        "{line}"
    );
    assert!(
        line.contains("from another copy of the repository"),
        "{line}"
    );
    assert_eq!(fs::read(&pack).unwrap(), damaged, "nothing replaced");
}

#[test]
fn missing_pack_is_named_with_the_snapshots_that_need_its_objects() {
    let (env, src) = saved_repo();
    env.corrupted.set(true);
    // The first save's pack holds big.bin, which every snapshot uses; the
    // later snapshots' commits live in their own packs.
    fs::write(src.join("etc/f1"), b"changed\n").unwrap();
    env.save("etc", Some("2026-12-02T12:00:00Z"), &src);
    let pack = packs(&env.repo)[0].clone();
    fs::remove_file(&pack).unwrap();
    fs::remove_file(pack.with_extension("idx")).unwrap();
    let out = env.rw().arg("fsck").run().status(1);
    let s = out.stdout_str();
    let big: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("missing: ") && l.ends_with("/etc/big.bin"))
        .collect();
    assert!(!big.is_empty(), "{s}");
    assert!(
        big[0].contains("etc/2026-12-02-120000/") && big[0].contains("etc/2026-12-01-120000/"),
        "{s}"
    );
    assert!(
        s.contains("missing: commit"),
        "the first snapshot's commit: {s}"
    );
}

#[test]
fn pack_without_its_idx_is_named() {
    let (env, _src) = saved_repo();
    env.corrupted.set(true);
    let pack = packs(&env.repo)[0].clone();
    let name = pack.file_stem().unwrap().to_string_lossy().into_owned();
    fs::remove_file(pack.with_extension("idx")).unwrap();
    let s = env.rw().arg("fsck").run().status(1).stdout_str();
    assert!(
        s.contains(&format!("damaged: {name}: {name}.idx is missing")),
        "{s}"
    );
}

#[test]
fn bup_written_repository_checks_clean() {
    if !require("bup") {
        return;
    }
    let env = Env::new();
    run(env.bup().arg("init")).success();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/big"), noise(3, 2 << 20)).unwrap();
    fs::write(src.join("d/small"), b"x\n").unwrap();
    run(env.bup().arg("index").arg(&src)).success();
    run(env.bup().args(["save", "-n", "b"]).arg(&src)).success();
    fs::write(src.join("d/small"), b"y\n").unwrap();
    run(env.bup().arg("index").arg(&src)).success();
    run(env.bup().args(["save", "-n", "b"]).arg(&src)).success();
    let s = env
        .rw()
        .args(["fsck", "--generate"])
        .run()
        .success()
        .stdout_str();
    assert!(
        s.contains("2 snapshots of 1 refs") && s.contains("no damage"),
        "{s}"
    );
    // bup fsck looks for pack-*.par2 beside the packs; ours are elsewhere.
    run(env.bup().arg("fsck")).success();
    run(env.bup().args(["ls", "b/latest/"])).success();
    run(env.git().arg("gc")).success();
    let s = env.rw().arg("fsck").run().success().stdout_str();
    assert!(s.contains("no damage"), "after git gc (deltas): {s}");
}
