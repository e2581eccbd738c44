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
//!
//! `cases` says what is damaged and where, `fixture` writes the repository
//! and records what it gives undamaged, `copy` runs the commands on one
//! damaged copy (`mount_read` the reads through FUSE), `outcome` judges how
//! each run ended, and `report` counts the outcomes into tables.

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod copy;
mod fixture;
mod mount_read;
mod outcome;
mod report;

use cases::{cases, variant_repo, Kind};
use copy::run_case;
use fixture::fixture;
use mount_read::fuse_ready;
use outcome::Record;
use report::table;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest any one command may run before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(20);

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

/// An empty repository that the test will damage, and a source directory
/// holding `a.txt`.
fn env_with_a_source() -> (common::Env, std::path::PathBuf) {
    let env = common::Env::init();
    env.corrupted.set(true);
    let src = env.path("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a.txt"), b"hello\n").expect("write");
    (env, src)
}

/// A damaged pack index was warned about on every rescan (a miss rescans),
/// so one `cat-file` printed the same warning twice before its error, and
/// in terminal colours although standard error was a pipe.
#[test]
fn damaged_idx_is_warned_about_once_without_colour_codes() {
    let (env, src) = env_with_a_source();
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
    let (env, src) = env_with_a_source();
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
