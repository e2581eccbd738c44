//! `rewind gc` on real repositories: space comes back, every kept snapshot
//! restores byte for byte, git and bup still read the result, and neither
//! a kill, a concurrent save nor a mounted reader sees damage.

mod common;

use common::{assert_fsck, noise, open_gc_lock, run, Env, Mount};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;
const T0: i64 = 1_700_000_000;

/// Bytes of `objects/pack`.
fn pack_bytes(repo: &Path) -> u64 {
    fs::read_dir(repo.join("objects/pack"))
        .expect("pack dir")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum()
}

fn pack_count(repo: &Path) -> usize {
    common::pack_dir_listing(repo)
        .iter()
        .filter(|n| n.ends_with(".pack"))
        .count()
}

/// `save -n NAME --date T --strip SRC`.
fn save(env: &Env, name: &str, time: i64, src: &Path) {
    env.rw()
        .args(["save", "-n", name, "--strip", "--date", &time.to_string()])
        .arg(src)
        .run()
        .success();
}

/// Snapshot names of `name`, oldest first.
fn snapshots(env: &Env, name: &str) -> Vec<String> {
    let out = env.rw().args(["ls", name]).tz("UTC").run().success();
    common::snapshot_names(&out.lines())
}

/// Restores `name/snap/` into a fresh directory and compares it with
/// `expected` byte for byte (`diff -r`).
#[track_caller]
fn assert_restores(env: &Env, name: &str, snap: &str, expected: &Path) {
    let out = env.path(&format!("restored-{name}-{snap}-{}", unique()));
    env.rw()
        .tz("UTC")
        .args(["restore", "--outdir"])
        .arg(&out)
        .arg(format!("{name}/{snap}/"))
        .run()
        .success();
    let diff = run(Command::new("diff").arg("-r").arg(expected).arg(&out));
    assert_eq!(
        diff.code,
        0,
        "{name}/{snap} differs:\n{}",
        diff.stdout_str()
    );
    fs::remove_dir_all(&out).expect("clean up");
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Writes a file with an mtime in the past (the change index records only
/// files older than its racy margin).
fn write_old(path: &Path, data: &[u8]) {
    fs::write(path, data).expect("write");
    let f = fs::File::options().write(true).open(path).expect("open");
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .expect("mtime");
}

/// A source that changes every day: a growing log, a rotating 200 KB
/// random file, and a stable file. Returns a copy of each day's state.
struct History {
    src: PathBuf,
    states: Vec<PathBuf>,
}

fn make_history(env: &Env, name: &str, days: usize, seed: u64) -> History {
    let src = env.path(&format!("src-{name}"));
    fs::create_dir_all(&src).expect("src");
    write_old(&src.join("stable.bin"), &noise(seed, 150_000));
    let mut states = Vec::new();
    for day in 0..days {
        let mut log = fs::read(src.join("log.txt")).unwrap_or_default();
        log.extend(format!("day {day} of {name}\n").bytes());
        write_old(&src.join("log.txt"), &log);
        write_old(
            &src.join("daily.bin"),
            &noise(seed * 1000 + 2 * day as u64, 200_000),
        );
        save(env, name, T0 + day as i64 * DAY, &src);
        let state = env.path(&format!("state-{name}-{day}"));
        run(Command::new("cp").arg("-a").arg(&src).arg(&state));
        states.push(state);
    }
    History { src, states }
}

/// Rewrites branch `name` to keep only its newest `keep` commits, as `bup
/// rm` does (same trees, authors, dates, messages; new parents), with git.
fn keep_newest(env: &Env, name: &str, keep: usize) {
    let commits = common::branch_commits(&env.repo, name); // newest first
    let old_tip = commits[0].clone();
    let mut parent: Option<String> = None;
    for id in commits[..keep].iter().rev() {
        let body = run(env.git().args(["cat-file", "commit", id])).stdout_str();
        let mut out = String::new();
        for line in body.lines() {
            if line.starts_with("parent ") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line.starts_with("tree ") {
                if let Some(p) = &parent {
                    out.push_str(&format!("parent {p}\n"));
                }
            }
        }
        let mut cmd = env.git();
        cmd.args(["hash-object", "-t", "commit", "-w", "--stdin"]);
        let made = common::run_with_input(&mut cmd, Some(out.as_bytes()));
        assert_eq!(made.code, 0, "{}", made.stderr);
        parent = Some(made.stdout_str().trim().to_string());
    }
    let new_tip = parent.expect("kept at least one");
    let moved = run(env.git().args([
        "update-ref",
        &format!("refs/heads/{name}"),
        &new_tip,
        &old_tip,
    ]));
    assert_eq!(moved.code, 0, "{}", moved.stderr);
}

fn delete_branch(env: &Env, name: &str) {
    let out = run(env
        .git()
        .args(["update-ref", "-d", &format!("refs/heads/{name}")]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn gc_reclaims_removed_snapshots_and_kept_ones_restore_byte_identical() {
    let env = Env::init();
    let a = make_history(&env, "a", 8, 1);
    let b = make_history(&env, "b", 3, 2);
    let packs_before = pack_count(&env.repo);
    keep_newest(&env, "a", 3);
    delete_branch(&env, "b");
    drop(b);
    let before = pack_bytes(&env.repo);

    let dry = env.rw().args(["gc", "--dry-run"]).run().success();
    assert!(dry.stderr.contains("would reclaim"), "{}", dry.stderr);
    assert_eq!(pack_bytes(&env.repo), before, "a dry run changes nothing");

    let out = env.rw().args(["gc", "--pack-limit", "2"]).run().success();
    assert!(out.stderr.starts_with("gc "), "{}", out.stderr);
    let after = pack_bytes(&env.repo);
    // Removed: 5 days of a and 3 of b, ~200 KB of random data each.
    assert!(
        before - after > 1_400_000,
        "reclaimed only {} of {before} bytes",
        before - after
    );
    assert!(
        pack_count(&env.repo) < packs_before / 4,
        "{} packs of {packs_before} left: small packs are consolidated",
        pack_count(&env.repo)
    );
    let snaps = snapshots(&env, "a");
    assert_eq!(snaps.len(), 3);
    for (snap, state) in snaps.iter().zip(&a.states[5..]) {
        assert_restores(&env, "a", snap, state);
    }
    assert_fsck(&env.repo, false);

    // bup 0.33 reads what gc left.
    let ls = run(env.bup().args(["ls", &format!("/a/{}", snaps[0])]));
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout_str().contains("daily.bin"), "{}", ls.stdout_str());
    let out_dir = env.path("bup-restored");
    let restored = run(env
        .bup()
        .args(["restore", "-C"])
        .arg(&out_dir)
        .arg(format!("/a/{}/.", snaps[2])));
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    let diff = run(Command::new("diff").arg("-r").arg(&a.src).arg(&out_dir));
    assert_eq!(diff.code, 0, "bup restore differs: {}", diff.stdout_str());

    // A second gc finds nothing to do.
    let again = env.rw().arg("gc").run().success();
    assert!(
        again.stderr.contains("0 packs rewritten, 0 deleted"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_mostly_live_pack_is_left_while_unused_bytes_stay_under_the_threshold() {
    let env = Env::init();
    env.dangling_ok.set(true);
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    // Day 1: 1 MB that stays and 80 kB that goes: 7% of its pack unused.
    write_old(&src.join("big.bin"), &noise(41, 1_000_000));
    write_old(&src.join("gone.bin"), &noise(42, 80_000));
    save(&env, "a", T0, &src);
    // Day 2: another 1 MB that stays; day 1's 80 kB is unused once day 1
    // is removed: 4% of the 2 MB live, under the 5% allowed.
    fs::remove_file(src.join("gone.bin")).expect("rm");
    write_old(&src.join("big2.bin"), &noise(43, 1_000_000));
    save(&env, "a", T0 + DAY, &src);
    keep_newest(&env, "a", 1);
    let listing = common::pack_dir_listing(&env.repo);
    let out = env.rw().arg("gc").run().success();
    assert!(
        out.stderr.contains("0 packs rewritten, 0 deleted"),
        "{}",
        out.stderr
    );
    assert_eq!(common::pack_dir_listing(&env.repo), listing);
    // Allowing no unused bytes rewrites it, and day 2's pack too (it
    // holds day 2's old commit, which the branch rewrite left unused).
    let out = env.rw().args(["gc", "--threshold", "0"]).run().success();
    assert!(
        out.stderr.contains("2 packs rewritten, 0 deleted"),
        "{}",
        out.stderr
    );
    let snaps = snapshots(&env, "a");
    assert_restores(&env, "a", &snaps[0], &src);
}

#[test]
fn small_packs_are_merged_only_once_there_are_pack_limit_of_them() {
    let env = Env::init();
    make_history(&env, "a", 6, 31);
    let packs = pack_count(&env.repo);
    assert!(packs >= 6, "one pack per save: {packs}");
    // Nothing dead, fewer small packs than the limit: nothing to do.
    let out = env.rw().args(["gc", "--pack-limit", "7"]).run().success();
    assert!(
        out.stderr.contains("0 packs rewritten, 0 deleted"),
        "{}",
        out.stderr
    );
    assert_eq!(pack_count(&env.repo), packs);
    // At the limit they become one.
    let out = env
        .rw()
        .args(["gc", "--pack-limit", &packs.to_string()])
        .run()
        .success();
    assert!(
        out.stderr.contains(&format!("{packs} packs rewritten")),
        "{}",
        out.stderr
    );
    assert_eq!(pack_count(&env.repo), 1);
    let refused = env.rw().args(["gc", "--pack-limit", "1"]).run().status(2);
    assert!(refused.stderr.contains("pack-limit"), "{}", refused.stderr);
}

/// The change index says "this file is stored as X" for a snapshot gc
/// removed; the next save must find X gone (the object table is keyed by
/// the packs it covers) and store the file again.
#[test]
fn a_save_after_gc_stores_again_a_file_whose_blob_gc_deleted() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    write_old(&src.join("big.bin"), &noise(7, 300_000));
    write_old(&src.join("small.txt"), b"a small file\n");
    save(&env, "n", T0, &src);
    assert!(
        env.repo.join("rewind/index/n").exists(),
        "change index written"
    );
    delete_branch(&env, "n");
    env.rw().arg("gc").run().success();
    assert!(
        pack_bytes(&env.repo) < 10_000,
        "the snapshot's data is gone"
    );

    let out = env
        .rw()
        .args(["save", "-v", "-n", "n", "--strip", "--date"])
        .arg((T0 + DAY).to_string())
        .arg(&src)
        .run()
        .success();
    assert!(
        pack_bytes(&env.repo) > 300_000,
        "stored again: {}",
        out.stderr
    );
    let snaps = snapshots(&env, "n");
    assert_restores(&env, "n", &snaps[0], &src);
    assert_fsck(&env.repo, false);
}

#[test]
fn a_reachable_object_that_is_missing_stops_gc_before_anything_is_deleted() {
    let env = Env::init();
    make_history(&env, "a", 2, 3);
    make_history(&env, "gone", 2, 4);
    delete_branch(&env, "gone");
    let ghost = "0123456789abcdef0123456789abcdef01234567";
    fs::write(env.repo.join("refs/heads/ghost"), format!("{ghost}\n")).expect("ghost ref");
    let listing = common::pack_dir_listing(&env.repo);
    let out = env.rw().arg("gc").run().status(2);
    let line = out.error_line();
    assert!(
        line.contains(ghost) && line.contains("refs/heads/ghost"),
        "{line}"
    );
    assert!(line.contains("before deleting anything"), "{line}");
    assert_eq!(common::pack_dir_listing(&env.repo), listing);
    fs::remove_file(env.repo.join("refs/heads/ghost")).expect("remove ghost");
    env.rw().arg("gc").run().success();
    assert_ne!(common::pack_dir_listing(&env.repo), listing);
}

/// Packs written by `git repack` hold deltas: the live ones are resolved
/// and compressed again, the rest copied as stored.
#[test]
fn gc_of_a_git_repacked_repository_resolves_deltas() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    let mut text = String::new();
    for day in 0..6 {
        for i in 0..400 {
            text.push_str(&format!("line {i} of a config edited on day {day}\n"));
        }
        write_old(
            &src.join("conf.txt"),
            &text.as_bytes()[text.len().saturating_sub(20_000)..],
        );
        write_old(
            &src.join(format!("unique{day}.bin")),
            &noise(day + 50, 60_000),
        );
        save(&env, "a", T0 + day as i64 * DAY, &src);
        if day == 2 {
            // Days 0-2 stay reachable only through "old", deleted below.
            let tip = common::branch_tip(&env.repo, "a").expect("tip");
            run(env.git().args(["update-ref", "refs/heads/old", &tip]));
        }
    }
    let repack = run(env.git().args(["repack", "-a", "-d", "-f", "--window=50"]));
    assert_eq!(repack.code, 0, "{}", repack.stderr);
    // Deltified objects are the lines of seven fields (with a base id).
    let verify = run(Command::new("sh").arg("-c").arg(format!(
        "git verify-pack -v {}/objects/pack/*.idx | awk 'NF == 7' | wc -l",
        env.repo.display()
    )));
    let deltas: u32 = verify.stdout_str().trim().parse().unwrap_or(0);
    assert!(deltas > 0, "git repack wrote no deltas: {}", verify.stderr);
    keep_newest(&env, "a", 2);
    delete_branch(&env, "old");
    env.rw().args(["gc", "--threshold", "1"]).run().success();
    let snaps = snapshots(&env, "a");
    assert_restores(&env, "a", snaps.last().expect("a snapshot"), &src);
    assert_fsck(&env.repo, false);
}

/// A gc killed with SIGKILL anywhere leaves a repository git accepts and
/// every snapshot readable, and the next gc finishes the work.
#[test]
fn a_gc_killed_at_random_points_leaves_a_valid_repository() {
    let env = Env::init();
    let a = make_history(&env, "a", 12, 5);
    make_history(&env, "b", 4, 6);
    keep_newest(&env, "a", 4);
    delete_branch(&env, "b");
    // This repository itself is only copied, never collected.
    env.dangling_ok.set(true);
    // How long a whole gc takes here, on a copy.
    let time_one = {
        let copy = env.path("timing");
        run(Command::new("cp").arg("-a").arg(&env.repo).arg(&copy));
        let start = Instant::now();
        common::Rw::bare(&env.home)
            .arg("-d")
            .arg(&copy)
            .arg("gc")
            .run()
            .success();
        start.elapsed()
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..8 {
        let copy = env.path(&format!("killed-{round}"));
        run(Command::new("cp").arg("-a").arg(&env.repo).arg(&copy));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = time_one.mul_f64((seed % 1000) as f64 / 1000.0);
        let mut child = common::Rw::bare(&env.home)
            .arg("-d")
            .arg(&copy)
            .args(["gc", "--pack-limit", "2"])
            .spawn();
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        assert_fsck(&copy, true);
        let view = |args: &[&str]| {
            common::Rw::bare(&env.home)
                .tz("UTC")
                .arg("-d")
                .arg(&copy)
                .args(args)
                .run()
                .success()
        };
        let snaps = common::snapshot_names(&view(&["ls", "a"]).lines());
        assert_eq!(snaps.len(), 4, "round {round}, killed after {at:?}");
        let out = env.path(&format!("killed-{round}-restored"));
        view(&[
            "restore",
            "--outdir",
            out.to_str().expect("utf-8"),
            &format!("a/{}/", snaps[3]),
        ]);
        let diff = run(Command::new("diff").arg("-r").arg(&a.src).arg(&out));
        assert_eq!(diff.code, 0, "round {round}: {}", diff.stdout_str());
        // The next gc completes the work.
        view(&["gc", "--pack-limit", "2"]);
        assert_fsck(&copy, false);
        assert!(
            pack_bytes(&copy) < pack_bytes(&env.repo) / 2,
            "round {round}"
        );
        fs::remove_dir_all(&copy).expect("clean up");
    }
}

/// A save that reuses objects only a deleted branch held, running while
/// gc deletes them, must end with a complete snapshot: the writers' lock
/// orders the two.
#[test]
fn a_save_running_during_gc_loses_nothing() {
    let env = Env::init();
    make_history(&env, "base", 4, 8);
    for round in 0..5u64 {
        let src = env.path(&format!("round-{round}"));
        fs::create_dir(&src).expect("src");
        write_old(&src.join("shared.bin"), &noise(100 + round, 400_000));
        write_old(&src.join("note.txt"), format!("round {round}\n").as_bytes());
        // "victim" holds the content, then goes: its objects are garbage
        // that the next save wants to reuse.
        save(&env, "victim", T0 + round as i64 * DAY, &src);
        delete_branch(&env, "victim");
        // Every pack rewritten: the widest window for a race.
        let mut gc = env.rw().args(["gc", "--pack-limit", "2"]).spawn();
        std::thread::sleep(Duration::from_millis(round * 15));
        env.rw()
            .args(["save", "-n", "keeper", "--strip", "--date"])
            .arg((T0 + round as i64 * DAY + 10).to_string())
            .arg(&src)
            .run()
            .success();
        let status = gc.wait().expect("gc");
        assert!(status.success(), "gc failed in round {round}");
        assert_fsck(&env.repo, true);
        let snaps = snapshots(&env, "keeper");
        assert_restores(&env, "keeper", snaps.last().expect("snapshot"), &src);
    }
}

#[test]
fn gc_waits_for_a_save_or_gives_up_with_no_wait() {
    let env = Env::init();
    make_history(&env, "a", 2, 9);
    // A writer's hold on the lock, as a save holds it.
    let lock = open_gc_lock(&env.repo);
    lock.lock_shared().expect("shared lock");
    let out = env.rw().args(["gc", "--no-wait"]).run().status(2);
    assert!(
        out.error_line().contains("a save is writing"),
        "{}",
        out.stderr
    );
    let mut waiting = env.rw().arg("gc").spawn();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().expect("poll").is_none(),
        "gc waits for the save"
    );
    drop(lock);
    assert!(waiting.wait().expect("gc").success());
}

/// The mount reads through gc: packs it has open are deleted and their
/// objects move to new packs; every file must still read right.
#[test]
fn a_mount_keeps_reading_right_while_gc_rewrites_its_packs() {
    if !common::require_fuse() {
        return;
    }
    let env = Env::init();
    let a = make_history(&env, "a", 10, 11);
    keep_newest(&env, "a", 5);
    let mut rewind = Command::new(common::rewind_bin());
    rewind.arg("-d").arg(&env.repo).env("TZ", "UTC");
    let m = Mount::at(rewind, &env.path("mnt")).start();
    let snaps = snapshots(&env, "a");
    let file = |k: usize, name: &str| m.path.join("a").join(&snaps[k]).join(name);
    // Read one snapshot before gc: its packs are open in the mount.
    assert_eq!(
        fs::read(file(0, "daily.bin")).expect("read"),
        fs::read(a.states[5].join("daily.bin")).expect("state")
    );
    // Every pack rewritten: the reads must follow their objects.
    let mut gc = env.rw().args(["gc", "--pack-limit", "2"]).spawn();
    let mut reads = 0;
    while gc.try_wait().expect("poll").is_none() {
        for (k, state) in a.states[5..].iter().enumerate() {
            for name in ["daily.bin", "log.txt", "stable.bin"] {
                assert_eq!(
                    fs::read(file(k, name)).expect("read during gc"),
                    fs::read(state.join(name)).expect("state"),
                    "{}/{name} during gc",
                    snaps[k]
                );
                reads += 1;
            }
        }
    }
    assert!(gc.wait().expect("gc").success());
    assert!(pack_count(&env.repo) <= 2, "gc consolidated the packs");
    // After: a rescan finds every object in its new pack.
    std::thread::sleep(Duration::from_millis(1100));
    for (k, state) in a.states[5..].iter().enumerate() {
        let diff = run(Command::new("diff")
            .arg("-r")
            .arg(state)
            .arg(m.path.join("a").join(&snaps[k])));
        assert_eq!(diff.code, 0, "{} after gc: {}", snaps[k], diff.stdout_str());
    }
    assert!(reads > 0 || pack_count(&env.repo) <= 2);
}

/// A `rewind server` session (stdin/stdout, as sshd runs it): answers
/// read until the one for the last request sent.
struct ServerSession {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
}

impl ServerSession {
    fn open(repo: &Path) -> ServerSession {
        use rewind::remote::wire::{self, Request, Response};
        use std::io::Write;
        let mut child = Command::new(common::rewind_bin())
            .arg("server")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("rewind server");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        stdin.write_all(wire::MAGIC).expect("magic");
        let mut session = ServerSession {
            child,
            stdin: Some(stdin),
            stdout,
        };
        let hello = Request::Hello {
            min: wire::VERSION,
            max: wire::VERSION,
        };
        assert!(matches!(session.ask(&hello), Response::Hello { .. }));
        let open = Request::Open {
            path: repo.as_os_str().as_encoded_bytes().to_vec(),
            create: false,
        };
        assert!(matches!(session.ask(&open), Response::Ok));
        session
    }

    fn ask(&mut self, request: &rewind::remote::wire::Request) -> rewind::remote::wire::Response {
        use rewind::remote::wire::{self, Response};
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("open");
        request.write(stdin).expect("send");
        stdin.flush().expect("flush");
        let (tag, body) = wire::read_frame(&mut self.stdout).expect("answer");
        Response::decode(tag, &body).expect("decode")
    }

    /// Ends the session as a client does (end of input) and waits for it.
    fn close(mut self) {
        drop(self.stdin.take());
        assert!(self.child.wait().expect("server").success());
    }
}

#[test]
fn a_server_session_that_may_write_holds_off_gc_and_a_reader_does_not() {
    use rewind::remote::wire::{Request, Response};
    let env = Env::init();
    make_history(&env, "a", 3, 21);
    // A reader (a restore, a mount over ssh) takes no lock.
    let mut reader = ServerSession::open(&env.repo);
    let tip = reader.ask(&Request::ReadRef {
        name: "refs/heads/a".into(),
    });
    assert!(matches!(tip, Response::Ref { id: Some(_) }), "{tip:?}");
    env.rw().args(["gc", "--no-wait"]).run().success();
    // A writer learns the pack list, and holds the lock from then on: a
    // gc could otherwise delete what it deduplicates against.
    let mut writer = ServerSession::open(&env.repo);
    assert!(matches!(
        writer.ask(&Request::ListPacks),
        Response::Packs { .. }
    ));
    let refused = env.rw().args(["gc", "--no-wait"]).run().status(2);
    assert!(
        refused.error_line().contains("a save is writing"),
        "{}",
        refused.stderr
    );
    writer.close();
    reader.close();
    env.rw().args(["gc", "--no-wait"]).run().success();
}
