//! Bad bytes in a repository (or on the command line) end a command with
//! exit status 2 and a one-line message naming what is wrong: never a
//! panic, an abort or a loop. Each test pins one bug that did otherwise
//! (issue 11); the decoders' own unit tests pin the details.

mod common;
use common::*;
use sha1::Digest;
use std::path::Path;
use std::process::Command;

/// A repository with one snapshot of `n`; returns the tip commit.
fn saved(env: &Env, n: &str) -> String {
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("f"), b"content\n");
    env.save(n, Some("1700000000"), &src);
    branch_tip(&env.repo, n).expect("saved")
}

#[test]
fn packed_refs_short_line_makes_ls_exit_2_naming_the_file() {
    let env = Env::init();
    let tip = saved(&env, "n");
    env.corrupted.set(true);
    let packed = env.repo.join("packed-refs");
    // A line cut short (41 bytes or fewer), as a torn write would leave it.
    std::fs::write(
        &packed,
        format!(
            "# pack-refs with: peeled\n{tip} refs/heads/old\n{}\n",
            &tip[..20]
        ),
    )
    .expect("write packed-refs");
    for args in [&["ls"][..], &["ls", "n"]] {
        let out = env.rw().args(args).run().status(2).no_panic();
        let line = out.error_line();
        assert!(
            line.contains(packed.to_str().expect("utf-8")) && line.contains("line 3"),
            "{line}"
        );
    }
}

/// A commit object written with git's `--literally`: git accepts any bytes.
fn forge_commit(env: &Env, body: &[u8]) -> String {
    let out = run_with_input(
        git(&env.repo).args([
            "hash-object",
            "-w",
            "--literally",
            "-t",
            "commit",
            "--stdin",
        ]),
        Some(body),
    )
    .success();
    out.stdout_str().trim().to_string()
}

#[test]
fn non_ascii_commit_timezone_makes_readers_exit_2_naming_the_commit() {
    let env = Env::init();
    let tip = saved(&env, "n");
    env.corrupted.set(true);
    let tree = run(git(&env.repo).args(["rev-parse", &format!("{tip}^{{tree}}")]))
        .success()
        .stdout_str()
        .trim()
        .to_string();
    let body = format!(
        "tree {tree}\nparent {tip}\nauthor a <a@h> 1700000100 +0\u{e9}0\n\
         committer a <a@h> 1700000100 +0\u{e9}0\n\nbad zone\n"
    );
    let bad = forge_commit(&env, body.as_bytes());
    run(git(&env.repo).args(["update-ref", "refs/heads/n", &bad])).success();

    // Listing the name's snapshots reads every commit of the branch.
    let out = env.rw().args(["ls", "n"]).run().status(2).no_panic();
    assert!(out.error_line().contains(&bad), "{}", out.stderr);
    // A save of the name reads its parent's time first.
    let src = env.path("src");
    let out = env
        .rw()
        .args(["save", "-n", "n"])
        .arg(&src)
        .run()
        .status(2)
        .no_panic();
    assert!(
        out.error_line().contains("malformed commit"),
        "{}",
        out.stderr
    );
    assert_eq!(branch_tip(&env.repo, "n").as_deref(), Some(bad.as_str()));
    // The other names still list.
    env.rw().arg("ls").run().success();
}

#[test]
fn non_ascii_date_offset_is_a_usage_error_not_a_panic() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    for date in ["2026-11-21T23:30+0\u{e9}00", "2026-11-21T23:30+\u{e9}:00"] {
        let out = env
            .rw()
            .args(["save", "-n", "n", "--date", date])
            .arg(&src)
            .run()
            .status(2)
            .no_panic();
        assert!(out.error_line().contains(date), "{}", out.stderr);
    }
    assert_eq!(branch_tip(&env.repo, "n"), None);
}

/// `rewind` with its address space limited to `limit_kib`: an allocation
/// of tens of gigabytes fails for certain, whatever the overcommit policy.
fn limited(env: &Env, limit_kib: u64) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
        .arg(rewind_bin())
        .arg("-d")
        .arg(&env.repo)
        .env("HOME", &env.home)
        .env("TZ", "UTC");
    cmd
}

/// Replaces the fan-out's last entry of the idx at `path` with `count`
/// and reseals its checksum, so that only the size check can catch it.
fn forge_fanout_count(path: &Path, count: u32) {
    let mut b = std::fs::read(path).expect("read idx");
    assert_eq!(b[..4], [0xff, b't', b'O', b'c'], "an idx v2");
    let last = 8 + 4 * 255;
    b[last..last + 4].copy_from_slice(&count.to_be_bytes());
    let n = b.len();
    let sum = sha1::Sha1::digest(&b[..n - 20]);
    b[n - 20..].copy_from_slice(&sum);
    std::fs::write(path, b).expect("write idx");
}

#[test]
fn idx_with_huge_fanout_is_an_error_not_an_abort() {
    let env = Env::init();
    saved(&env, "n");
    env.corrupted.set(true);
    let idx = std::fs::read_dir(env.repo.join("objects/pack"))
        .expect("pack dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .expect("an idx");
    forge_fanout_count(&idx, u32::MAX);
    // Before the size check came first, this reserved ~80 GB and aborted
    // (SIGABRT, exit 134 through sh) under any memory limit.
    let out = run(limited(&env, 4 << 20).args(["ls", "n"]))
        .status(2)
        .no_panic();
    let stderr = &out.stderr;
    assert!(
        stderr.contains(idx.file_name().and_then(|n| n.to_str()).expect("name"))
            && stderr.contains("too small"),
        "{stderr}"
    );
}

/// One commit-cache record: commit id, tree id, parents, author time (also
/// written as the committer time).
type CacheRecord = (Vec<u8>, Vec<u8>, Vec<Vec<u8>>, i64);

/// Writes `rewind/commits.cache` as the format (version 2) says: magic,
/// then per commit its id, tree, author and committer times, the number
/// of parents and the parents, then SHA-1.
fn write_commit_cache(repo: &Path, records: &[CacheRecord]) {
    let mut out = b"RWCMTS\0\x02".to_vec();
    for (id, tree, parents, time) in records {
        out.extend_from_slice(id);
        out.extend_from_slice(tree);
        out.extend_from_slice(&time.to_be_bytes());
        out.extend_from_slice(&time.to_be_bytes());
        out.extend_from_slice(&(parents.len() as u32).to_be_bytes());
        for p in parents {
            out.extend_from_slice(p);
        }
    }
    let sum = sha1::Sha1::digest(&out);
    out.extend_from_slice(&sum);
    std::fs::write(repo.join("rewind/commits.cache"), out).expect("write cache");
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn commit_cache_entry_whose_parent_is_itself_does_not_make_ls_loop() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    for i in 0..3 {
        write(&src.join("f"), format!("{i}\n").as_bytes());
        env.save("n", Some(&(1_700_000_000 + 60 * i).to_string()), &src);
    }
    let want = env.rw().args(["ls", "n"]).run().success().lines();
    assert_eq!(snapshot_names(&want).len(), 3, "{want:?}");
    let tip = branch_tip(&env.repo, "n").expect("tip");
    let tree = run(git(&env.repo).args(["rev-parse", &format!("{tip}^{{tree}}")]))
        .success()
        .stdout_str()
        .trim()
        .to_string();
    // The tip's cached parent is the tip itself, checksum valid.
    write_commit_cache(
        &env.repo,
        &[(unhex(&tip), unhex(&tree), vec![unhex(&tip)], 1_700_000_120)],
    );
    // `run` kills a command that outlives its timeout; this one ended in
    // milliseconds before it looped.
    let out = env.rw().args(["ls", "n"]).run().success().no_panic();
    assert_eq!(out.lines(), want);
    assert!(
        out.stderr.contains("commit cache is damaged"),
        "{}",
        out.stderr
    );
    // Rebuilt: the next listing has nothing to warn about.
    let again = env.rw().args(["ls", "n"]).run().success();
    assert_eq!(again.lines(), want);
    assert!(again.stderr.is_empty(), "{}", again.stderr);
}

/// The pack files of the repository, by name.
fn packs(repo: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(repo.join("objects/pack"))
        .expect("pack dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    out.sort();
    out
}

/// A pack cut short (an interrupted copy, a full disk) still has its idx,
/// which lists every object. Saves trusted that list: a new backup name
/// deduplicated all its chunks against the truncated pack and exited 0
/// with a snapshot that could not be restored; an unchanged file's change
/// index entry was reused the same way. Now only sound packs vouch for an
/// object, so both saves write the chunks again and restore.
#[test]
fn save_after_a_pack_is_truncated_writes_its_objects_again() {
    let env = Env::init();
    env.corrupted.set(true);
    let src = env.path("src");
    mkdir(&src);
    write_random(&src.join("a"), 7, 300_000);
    env.save("n", Some("1700000000"), &src);
    let damaged = packs(&env.repo);
    assert_eq!(damaged.len(), 1);
    // A second snapshot whose commit and trees live in a pack of their own.
    write(&src.join("b"), b"small\n");
    env.save("n", Some("1700000060"), &src);
    let len = std::fs::metadata(&damaged[0]).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged[0])
        .expect("open pack");
    f.set_len(len - 10).expect("truncate");

    // A new name: every chunk of `a` is in the damaged pack only.
    let out = env
        .rw()
        .args(["save", "-n", "m", "--date", "1700000120"])
        .arg(&src)
        .run()
        .success()
        .no_panic();
    assert!(out.stderr.contains("is damaged"), "{}", out.stderr);
    // The same name: the change index says `a` is unchanged.
    env.rw()
        .args(["save", "-n", "n", "--date", "1700000180"])
        .arg(&src)
        .run()
        .success()
        .no_panic();
    // Without the damaged pack, both new snapshots are whole: `m` restores
    // (its history is this one commit), and every object under the tip of
    // `n` exists (its older commits lived in the damaged pack).
    let away = env.path("away");
    mkdir(&away);
    for p in [damaged[0].clone(), damaged[0].with_extension("idx")] {
        std::fs::rename(&p, away.join(p.file_name().expect("name"))).expect("move away");
    }
    let out = env.path("out");
    env.restore(&out, &snap_path("m", "latest", &src));
    assert_eq!(
        std::fs::read(out.join("src/a")).expect("restored a"),
        std::fs::read(src.join("a")).expect("a"),
    );
    let tip = branch_tip(&env.repo, "n").expect("n");
    let listed = run(git(&env.repo).args(["rev-list", "--objects", "--no-walk", &tip]))
        .success()
        .stdout_str();
    let ids: String = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|id| format!("{id}\n"))
        .collect();
    assert!(ids.lines().count() > 10, "{listed}");
    let checked = run_with_input(
        git(&env.repo).args(["cat-file", "--batch-check"]),
        Some(ids.as_bytes()),
    )
    .success()
    .stdout_str();
    assert!(!checked.contains("missing"), "{checked}");
}
