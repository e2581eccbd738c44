//! Data safety under crashes, full disks, concurrent writers and corrupted
//! packs: the repository stays valid, committed snapshots stay intact, and
//! wrong bytes are never handed out.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Comparison of a restore against a source that was read by a save since
/// (atimes of the source moved) and restored by path (root included).
fn loose() -> Compare {
    Compare {
        atime: false,
        ..Compare::default()
    }
}

#[track_caller]
fn assert_restores_to(env: &Env, repo: &Path, snap: &str, name: &str, src: &Path) {
    let out = env.path(&format!("check-{}", rand_suffix()));
    Rw::bare(&env.home)
        .arg("-d")
        .arg(repo)
        .arg("restore")
        .arg("--outdir")
        .arg(&out)
        .arg(snap_path(name, snap, src))
        .run()
        .success();
    let d = compare_with(src, &out.join(src.file_name().unwrap()), &loose());
    assert!(
        d.is_empty(),
        "{name}/{snap} differs from {}:\n{}",
        src.display(),
        d.join("\n")
    );
    fs::remove_dir_all(&out).unwrap();
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

fn small_tree(dir: &Path, tag: &str) {
    mkdir(&dir.join("sub"));
    write(&dir.join("a.txt"), format!("small tree {tag}\n").as_bytes());
    write(
        &dir.join("sub/b.bin"),
        &random_bytes(tag.len() as u64 + 99, 70_000),
    );
    set_all_times(dir);
}

fn big_tree(dir: &Path, seed: u64, files: usize, mib: usize) {
    mkdir(dir);
    for i in 0..files {
        write_random(&dir.join(format!("r{i}")), seed * 100 + i as u64, mib << 20);
    }
    write(&dir.join("marker"), format!("tree {seed}\n").as_bytes());
}

#[test]
fn sigkill_mid_save_leaves_the_repository_consistent() {
    let env = Env::init();
    env.dangling_ok.set(true);
    let small = env.path("small");
    small_tree(&small, "first");
    env.save("n", Some("1400000000"), &small);
    let first = utc_snapshot_name(1_400_000_000);
    let big = env.path("big");
    big_tree(&big, 1, 6, 8);

    let mut killed_running = 0;
    for delay in [5u64, 40, 120, 300, 700, 1500] {
        let child = env.rw().args(["save", "-n", "n"]).arg(&big).spawn();
        std::thread::sleep(Duration::from_millis(delay));
        let mut child = child;
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = finish(child, "killed save");

        assert_fsck(&env.repo, true);
        assert_restores_to(&env, &env.repo, &first, "n", &small);
        // Whatever was committed is complete: every other snapshot holds
        // the whole big tree.
        let snaps = snapshot_names(&env.rw().args(["ls", "n"]).run().success().lines());
        assert!(snaps.contains(&first));
        for s in snaps.iter().filter(|s| **s != first) {
            assert_restores_to(&env, &env.repo, s, "n", &big);
        }
    }
    assert!(killed_running >= 1, "no kill landed during a save");

    // The repository still takes saves (no stale lock) and they restore.
    let again = env.path("again");
    small_tree(&again, "after the kills");
    env.save("n", None, &again);
    assert_restores_to(&env, &env.repo, "latest", "n", &again);
    env.save("n", None, &big);
    assert_restores_to(&env, &env.repo, "latest", "n", &big);
    assert_fsck(&env.repo, true);
}

/// rewind with an explicit repository path.
fn rwd(env: &Env, repo: &Path) -> Rw {
    Rw::bare(&env.home).arg("-d").arg(repo)
}

// Field order matters: the mount is released before the scratch directory.
struct FullDisk {
    mnt: TmpfsMount,
    env: Env,
    repo: PathBuf,
    small: PathBuf,
    filler: PathBuf,
}

/// A repository on a 20 MiB tmpfs holding one small snapshot, with a 2 MiB
/// filler file that can be deleted to free space.
fn full_disk_setup() -> FullDisk {
    let env = Env::new();
    let mnt = TmpfsMount::new(&env.path("mnt"), "20m");
    let repo = mnt.path.join("repo");
    rwd(&env, &repo).arg("init").run().success();
    let small = env.path("small");
    small_tree(&small, "before the disk filled");
    rwd(&env, &repo)
        .args(["save", "-n", "n"])
        .arg(&small)
        .run()
        .success();
    let filler = mnt.path.join("filler");
    write_random(&filler, 77, 2 << 20);
    FullDisk {
        env,
        mnt,
        repo,
        small,
        filler,
    }
}

fn save_too_much(fd: &FullDisk) -> Out {
    let big = fd.env.path("big");
    big_tree(&big, 2, 5, 8);
    rwd(&fd.env, &fd.repo)
        .args(["save", "-n", "n"])
        .arg(&big)
        .run()
}

#[test]
fn full_disk_fails_cleanly_and_keeps_earlier_snapshots() {
    let fd = full_disk_setup();
    let out = save_too_much(&fd);
    assert_ne!(out.code, 0, "a save that cannot fit must fail");
    let msg = out.stderr.to_lowercase();
    assert!(
        msg.contains("no space left") || msg.contains("disk full") || msg.contains("space"),
        "the error should say the disk is full:\n{}",
        out.stderr
    );
    assert_fsck(&fd.repo, true);
    assert_eq!(
        branch_commits(&fd.repo, "n").len(),
        1,
        "the failed save must not commit"
    );
    assert_restores_to(&fd.env, &fd.repo, "latest", "n", &fd.small);

    fs::remove_file(&fd.filler).unwrap();
    let next = fd.env.path("next");
    small_tree(&next, "after freeing space");
    rwd(&fd.env, &fd.repo)
        .args(["save", "-n", "n"])
        .arg(&next)
        .run()
        .success();
    assert_restores_to(&fd.env, &fd.repo, "latest", "n", &next);
    assert_fsck(&fd.repo, true);
}

#[test]
fn failed_save_on_full_disk_removes_its_temporary_files() {
    let fd = full_disk_setup();
    let before = fd.mnt.used();
    let out = save_too_much(&fd);
    assert_ne!(out.code, 0);
    let after = fd.mnt.used();
    assert!(
        after <= before + (1 << 20),
        "a failed save left {} KiB behind on a full disk",
        (after.saturating_sub(before)) >> 10
    );
}

/// Runs two saves at once, `rounds` times; both must succeed every time.
/// A barrier makes them really overlap: each save runs a dump command (after
/// it has read the branch tip, before it commits) that waits until the
/// other save's dump has started too. So for one name, every round, both
/// saves start from the same parent and the second to move the branch
/// meets a changed tip: the compare-and-swap path, not a lucky ordering.
fn race(env: &Env, names: [&str; 2], srcs: [&Path; 2], rounds: usize) {
    for round in 0..rounds {
        let barrier = env.path(&format!("barrier-{}", rand_suffix()));
        mkdir(&barrier);
        let children: Vec<_> = (0..2)
            .map(|i| {
                let me = barrier.join(format!("started-{i}"));
                let other = barrier.join(format!("started-{}", 1 - i));
                // Waits at most 60 s; the last test fails the dump (and so
                // the save) if the other save never got this far.
                let wait = format!(
                    "touch '{}'; n=0; while [ ! -e '{other}' ] && [ $n -lt 6000 ]; do \
                     sleep 0.01; n=$((n+1)); done; [ -e '{other}' ] && echo barrier",
                    me.display(),
                    other = other.display(),
                );
                env.rw()
                    .args(["save", "-n", names[i]])
                    .args(["--from-command", &wait, "--as", "/barrier"])
                    .arg(srcs[i])
                    .spawn()
            })
            .collect();
        let outs: Vec<Out> = children
            .into_iter()
            .map(|c| finish(c, "concurrent save").no_panic())
            .collect();
        for (i, o) in outs.iter().enumerate() {
            assert_eq!(
                o.code, 0,
                "round {round}: concurrent save {i} of {} failed (both must land):\n{}",
                names[i], o.stderr
            );
        }
    }
}

/// Commits that no ref reaches, as `git fsck` lists them.
fn dangling_commits(repo: &Path) -> usize {
    let out = run(git(repo).args(["fsck", "--no-progress", "--no-reflogs"]));
    out.stdout_str()
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| l.starts_with("dangling commit "))
        .count()
}

/// The blob id of the one file named `marker` in a commit's tree, read by
/// git (an oracle that does not go through rewind's reader).
fn marker_blob(repo: &Path, commit: &str) -> String {
    let out = run(git(repo).args(["ls-tree", "-r", "--full-tree", commit])).success();
    let found: Vec<String> = out
        .lines()
        .iter()
        .filter(|l| l.ends_with("/marker"))
        .map(|l| l.split_whitespace().nth(2).expect("ls-tree id").to_owned())
        .collect();
    assert_eq!(found.len(), 1, "{commit}: {:?}", out.lines());
    found.into_iter().next().unwrap()
}

/// The parents of a commit, by git.
fn parents(repo: &Path, commit: &str) -> Vec<String> {
    let out = run(git(repo).args(["rev-list", "--parents", "-n", "1", commit])).success();
    out.stdout_str()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

fn check_all_snapshots(env: &Env, name: &str, srcs: &[&Path]) {
    let snaps = snapshot_names(&env.rw().args(["ls", name]).run().success().lines());
    // Every commit is visible as its own snapshot.
    assert_eq!(
        snaps.len(),
        branch_commits(&env.repo, name).len(),
        "{snaps:?}"
    );
    for s in snaps {
        // Find which source this snapshot holds by trying each.
        let mut matched = false;
        for src in srcs {
            let probe = env
                .rw()
                .arg("cat-file")
                .arg(snap_path(name, &s, &src.join("marker")))
                .run();
            if probe.code == 0 && probe.stdout == fs::read(src.join("marker")).unwrap() {
                assert_restores_to(env, &env.repo, &s, name, src);
                matched = true;
            }
        }
        assert!(matched, "{name}/{s} holds none of the sources");
    }
}

/// Two saves of one name that overlap both land: each round adds exactly
/// two commits, one on top of the other (the loser of the race re-parents
/// onto the winner's commit instead of replacing it), one holding each
/// source. Passing when only one save lands, or when one replaces the
/// other, is what this test exists to prevent.
#[test]
fn concurrent_saves_to_the_same_name_both_land() {
    let env = Env::init();
    env.dangling_ok.set(true);
    let a = env.path("a");
    let b = env.path("b");
    big_tree(&a, 3, 2, 4);
    big_tree(&b, 4, 2, 4);
    env.save("n", Some("1400000000"), &a);
    let blob = |src: &Path| {
        let out = run(git_plain().arg("hash-object").arg(src.join("marker"))).success();
        out.stdout_str().trim().to_owned()
    };
    let want: BTreeSet<String> = [blob(&a), blob(&b)].into();
    let rounds = 3;
    for round in 0..rounds {
        let before = branch_commits(&env.repo, "n");
        race(&env, ["n", "n"], [&a, &b], 1);
        let after = branch_commits(&env.repo, "n");
        assert_eq!(
            after.len(),
            before.len() + 2,
            "round {round}: both saves reported success, but the branch grew by {}",
            after.len() as isize - before.len() as isize
        );
        // Newest first: tip, the other new commit, then the old history.
        assert_eq!(after[2..], before[..], "round {round}: history rewritten");
        assert_eq!(parents(&env.repo, &after[0]), [after[1].clone()]);
        assert_eq!(parents(&env.repo, &after[1]), [before[0].clone()]);
        let got: BTreeSet<String> = after[..2]
            .iter()
            .map(|c| marker_blob(&env.repo, c))
            .collect();
        assert_eq!(
            got, want,
            "round {round}: the two new snapshots hold {got:?}"
        );
    }
    assert_fsck(&env.repo, true);
    // Each round's loser wrote a commit on the old tip first, then a second
    // one on the new tip: exactly one unreferenced commit per round shows
    // the compare-and-swap really failed and re-parented every time.
    assert_eq!(dangling_commits(&env.repo), rounds);
    check_all_snapshots(&env, "n", &[&a, &b]);
}

#[test]
fn concurrent_saves_to_different_names() {
    let env = Env::init();
    env.dangling_ok.set(true);
    let a = env.path("a");
    let b = env.path("b");
    big_tree(&a, 5, 2, 4);
    big_tree(&b, 6, 2, 4);
    race(&env, ["x", "y"], [&a, &b], 3);
    assert_fsck(&env.repo, true);
    assert_eq!(branch_commits(&env.repo, "x").len(), 3);
    assert_eq!(branch_commits(&env.repo, "y").len(), 3);
    assert_eq!(
        dangling_commits(&env.repo),
        0,
        "different names never conflict"
    );
    check_all_snapshots(&env, "x", &[&a]);
    check_all_snapshots(&env, "y", &[&b]);
}

/// (pack path, offset, end) of an object, from `git show-index`.
fn locate(repo: &Path, id: &str) -> (PathBuf, u64, u64) {
    for f in pack_dir_listing(repo) {
        if !f.ends_with(".idx") {
            continue;
        }
        let idx = repo.join("objects/pack").join(&f);
        let data = fs::read(&idx).unwrap();
        let out = run_with_input(
            std::process::Command::new("git").arg("show-index"),
            Some(&data),
        )
        .success();
        let mut entries: Vec<(u64, String)> = out
            .lines()
            .iter()
            .map(|l| {
                let mut t = l.split_whitespace();
                (
                    t.next().unwrap().parse().unwrap(),
                    t.next().unwrap().to_owned(),
                )
            })
            .collect();
        entries.sort();
        if let Some(i) = entries.iter().position(|e| e.1 == id) {
            let pack = idx.with_extension("pack");
            let end = entries
                .get(i + 1)
                .map(|e| e.0)
                .unwrap_or(fs::metadata(&pack).unwrap().len() - 20);
            return (pack, entries[i].0, end);
        }
    }
    panic!("object {id} is not in any pack");
}

/// Flips one byte in the middle of an object's stored bytes.
fn corrupt(repo: &Path, id: &str) -> String {
    let (pack, start, end) = locate(repo, id);
    let at = start + (end - start) / 2;
    let mut data = fs::read(&pack).unwrap();
    data[at as usize] ^= 0x5a;
    chmod(&pack, 0o644);
    fs::write(&pack, &data).unwrap();
    pack.file_stem().unwrap().to_str().unwrap().to_owned()
}

fn rev_parse(env: &Env, spec: &str) -> String {
    run(env.git().args(["rev-parse", spec]))
        .success()
        .stdout_str()
        .trim()
        .to_owned()
}

#[track_caller]
fn assert_refuses(out: &Out, id: &str, pack: &str) {
    assert_ne!(
        out.code, 0,
        "{}: corrupt object served with exit 0",
        out.what
    );
    assert!(
        out.stderr.contains(id),
        "{}: message should name object {id}:\n{}",
        out.what,
        out.stderr
    );
    assert!(
        out.stderr.contains(pack),
        "{}: message should name {pack}:\n{}",
        out.what,
        out.stderr
    );
}

/// Every byte written out must be a prefix of the true content.
#[track_caller]
fn assert_prefix(got: &[u8], truth: &[u8], what: &str) {
    assert!(
        got.len() <= truth.len() && truth[..got.len()] == *got,
        "{what}: wrong bytes were output ({} bytes)",
        got.len()
    );
}

fn corruption_case(victim_rel: &str, pick: impl Fn(&Env, &str) -> String) {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src.join("dir"));
    write(&src.join("dir/small"), &random_bytes(11, 1500));
    // Big enough to be several chunks for any chunk size up to 4 MiB.
    write(&src.join("dir/chunked"), &random_bytes(12, 9 << 20));
    write(&src.join("other"), b"unrelated\n");
    env.save("n", None, &src);
    let rel = src.strip_prefix("/").unwrap().to_str().unwrap().to_owned();
    let id = pick(&env, &rel);
    env.corrupted.set(true);
    let pack = corrupt(&env.repo, &id);

    let victim = src.join(victim_rel);
    let truth = fs::read(&victim).unwrap();
    let cat = env
        .rw()
        .arg("cat-file")
        .arg(snap_path("n", "latest", &victim))
        .run();
    assert_refuses(&cat, &id, &pack);
    assert_prefix(&cat.stdout, &truth, "cat-file");

    for target in [victim.clone(), src.join("dir")] {
        let out = env.path(&format!("out-{}", rand_suffix()));
        let r = env
            .rw()
            .arg("restore")
            .arg("--outdir")
            .arg(&out)
            .arg(snap_path("n", "latest", &target))
            .run();
        assert_refuses(&r, &id, &pack);
        let written = if target == victim {
            out.join(victim.file_name().unwrap())
        } else {
            out.join("dir").join(victim.file_name().unwrap())
        };
        if let Ok(got) = fs::read(&written) {
            assert_prefix(&got, &truth, "restore");
        }
    }
    // Data elsewhere stays readable.
    let other = env
        .rw()
        .arg("cat-file")
        .arg(snap_path("n", "latest", &src.join("other")))
        .run()
        .success();
    assert_eq!(other.stdout, b"unrelated\n");
}

#[test]
fn corrupt_single_blob_is_reported_never_served() {
    corruption_case("dir/small", |env, rel| {
        rev_parse(env, &format!("n:{rel}/dir/small"))
    });
}

#[test]
fn corrupt_middle_chunk_is_reported_never_served() {
    corruption_case("dir/chunked", |env, rel| {
        let out = run(env
            .git()
            .args(["ls-tree", "-r", &format!("n:{rel}/dir/chunked.bup")]))
        .success();
        let ids: Vec<String> = out
            .lines()
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_owned())
            .collect();
        assert!(ids.len() >= 2, "expected several chunks: {ids:?}");
        ids[ids.len() / 2].clone()
    });
}

#[test]
fn corrupt_tree_is_reported() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src.join("dir"));
    for i in 0..40 {
        write(
            &src.join(format!("dir/file-with-a-long-name-{i:03}")),
            b"x\n",
        );
    }
    env.save("n", None, &src);
    let rel = src.strip_prefix("/").unwrap().to_str().unwrap().to_owned();
    let id = rev_parse(&env, &format!("n:{rel}/dir"));
    env.corrupted.set(true);
    let pack = corrupt(&env.repo, &id);
    let ls = env
        .rw()
        .arg("ls")
        .arg(snap_path("n", "latest", &src.join("dir")))
        .run();
    assert_refuses(&ls, &id, &pack);
    let out = env.path("out");
    let r = env
        .rw()
        .arg("restore")
        .arg("--outdir")
        .arg(&out)
        .arg(snap_path("n", "latest", &src))
        .run();
    assert_refuses(&r, &id, &pack);
}
