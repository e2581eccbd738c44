//! Entries with no saved metadata (issue 15): plain git files, gitlinks,
//! and what `ls -l`, the restore and bup make of them; `restore PATH/.`;
//! errors that name where a missing object was reached from.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The commit time of the plain git fixture (2021-03-04 05:06:07 UTC).
const COMMIT_TIME: i64 = 1_614_834_367;

/// A bare repository written by git alone: a file, an executable, a
/// symlink, a subdirectory and a gitlink (submodule entry) on branch
/// `main`.
fn plain_git_repo(env: &Env) {
    let work = env.path("work");
    fs::create_dir_all(work.join("sub")).unwrap();
    run(git_plain().args(["init", "-q", "-b", "main"]).arg(&work)).success();
    write(&work.join("a.txt"), b"plain\n");
    write(&work.join("run.sh"), b"#!/bin/sh\necho hi\n");
    fs::set_permissions(work.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.txt", work.join("link")).unwrap();
    write(&work.join("sub/b.txt"), b"inside\n");
    let in_work = |args: &[&str]| {
        run(git_plain()
            .arg("-C")
            .arg(&work)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .env("GIT_AUTHOR_DATE", format!("@{COMMIT_TIME} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{COMMIT_TIME} +0000")))
        .success()
    };
    in_work(&["add", "."]);
    // A submodule entry: a commit of another repository, not stored here.
    in_work(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,0123456789abcdef0123456789abcdef01234567,lib",
    ]);
    in_work(&["commit", "-q", "-m", "plain"]);
    run(git_plain()
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&env.repo))
    .success();
}

fn ls_long(env: &Env, path: &str) -> Vec<String> {
    env.rw().args(["ls", "-l", path]).run().success().lines()
}

fn row<'a>(rows: &'a [String], name: &str) -> &'a str {
    rows.iter()
        .find(|r| r.ends_with(&format!(" {name}")) || r.contains(&format!(" {name} -> ")))
        .unwrap_or_else(|| panic!("no row for {name} in {rows:#?}"))
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Files git wrote have no `.bupm` record: `ls -l` and the restore agree
/// on 0644, 0755 for an executable (bup drops the executable bit) and
/// 0755 directories, instead of the restore's 0600.
#[test]
fn plain_git_files_keep_their_executable_bit_in_ls_and_restore() {
    let env = Env::new();
    plain_git_repo(&env);
    let rows = ls_long(&env, "main/latest");
    assert!(row(&rows, "a.txt").starts_with("-rw-r--r-- "), "{rows:#?}");
    assert!(row(&rows, "run.sh").starts_with("-rwxr-xr-x "), "{rows:#?}");
    assert!(row(&rows, "sub").starts_with("drwxr-xr-x "), "{rows:#?}");
    // Times are the commit's, not 1970's.
    for name in ["a.txt", "run.sh", "sub"] {
        assert!(row(&rows, name).contains(" 2021-03-04 05:06 "), "{rows:#?}");
    }

    let out = env.path("out");
    env.restore(&out, "main/latest/".as_ref());
    for name in ["a.txt", "run.sh", "sub", "sub/b.txt", ""] {
        let mtime = fs::symlink_metadata(out.join(name)).unwrap().mtime();
        assert_eq!(mtime, COMMIT_TIME, "{name}");
    }
    assert_eq!(
        fs::read(out.join("run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode_of(&out.join("a.txt")), 0o644);
    assert_eq!(mode_of(&out.join("run.sh")), 0o755);
    assert_eq!(mode_of(&out.join("sub")), 0o755);
    assert_eq!(mode_of(&out.join("sub/b.txt")), 0o644);
    assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("a.txt"));
}

/// A gitlink is an empty directory, as `git checkout` leaves a submodule
/// that is not initialised, not a file that cannot be read.
#[test]
fn a_gitlink_is_an_empty_directory() {
    let env = Env::new();
    plain_git_repo(&env);
    let rows = ls_long(&env, "main/latest");
    assert!(row(&rows, "lib").starts_with("drwxr-xr-x "), "{rows:#?}");
    let inside = env.rw().args(["ls", "main/latest/lib"]).run().success();
    assert_eq!(inside.stdout_str(), "");

    let out = env.path("out");
    env.restore(&out, "main/latest".as_ref());
    let snapshot = fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    let lib = snapshot.join("lib");
    assert!(lib.is_dir(), "{}", lib.display());
    assert_eq!(fs::read_dir(&lib).unwrap().count(), 0);
    assert_eq!(fs::read(snapshot.join("a.txt")).unwrap(), b"plain\n");
}

/// `restore PATH/.` restores PATH's contents into the output directory,
/// as `PATH/` does and as bup restore does.
#[test]
fn restore_path_dot_restores_the_contents() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write(&src.join("a.txt"), b"a\n");
    write(&src.join("sub/b.txt"), b"b\n");
    env.save("n", None, &src);
    let snap = snap_path("n", "latest", &src);
    let mut dot = snap.clone();
    dot.push("/.");
    let by_dot = env.path("by-dot");
    env.restore(&by_dot, &dot);
    let by_slash = env.path("by-slash");
    env.restore(&by_slash, &with_slash(&snap));
    assert_eq!(fs::read(by_dot.join("a.txt")).unwrap(), b"a\n");
    assert_eq!(fs::read(by_dot.join("sub/b.txt")).unwrap(), b"b\n");
    assert_same_tree(&by_dot, &by_slash);

    if require("bup") {
        let by_bup = env.path("by-bup");
        run(env
            .bup()
            .args(["restore", "-q", "-C"])
            .arg(&by_bup)
            .arg(&dot))
        .success();
        assert_same_tree(&by_dot, &by_bup);
    }
}

/// A tree missing from the repository stops the restore with the path it
/// was going to, not only the object's id.
#[test]
fn a_missing_tree_is_named_by_its_path() {
    let env = Env::new();
    run(git_plain().args(["init", "-q", "--bare"]).arg(&env.repo)).success();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let mut mktree = git(&env.repo);
    mktree.args(["mktree", "--missing"]);
    let root = run_with_input(
        &mut mktree,
        Some(format!("040000 tree {missing}\tgone\n").as_bytes()),
    )
    .success()
    .stdout_str()
    .trim()
    .to_owned();
    let commit = run(git(&env.repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["commit-tree", &root, "-m", "x"]))
    .success()
    .stdout_str()
    .trim()
    .to_owned();
    run(git(&env.repo).args(["update-ref", "refs/heads/n", &commit])).success();
    env.corrupted.set(true);

    let out = env.path("out");
    let failed = env
        .rw()
        .args(["restore", "-C"])
        .arg(&out)
        .arg("n/latest/")
        .run()
        .no_panic();
    assert_ne!(failed.code, 0);
    let line = failed.error_line();
    assert!(
        line.contains(&out.join("gone").display().to_string()),
        "{line}"
    );
    assert!(line.contains(missing), "{line}");

    // ls and cat-file name the path they were asked for.
    for args in [
        &["ls", "-l", "n/latest"][..],
        &["ls", "n/latest/gone"],
        &["cat-file", "n/latest/gone/x"],
    ] {
        let failed = env.rw().args(args).run().status(2);
        let line = failed.error_line();
        let asked = args.last().unwrap();
        let said = format!("{asked}: object {missing} is missing");
        assert!(line.contains(&said), "{args:?}: {line}");
    }
}

/// The mount shows what `ls -l` shows and the restore writes: 0644, 0755
/// for the executable, an empty directory for the gitlink, the commit's
/// time.
#[test]
fn the_mount_agrees_on_entries_without_metadata() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    plain_git_repo(&env);
    let m = Mount::at(env.rw().command(), &env.path("mnt")).start();
    let snap = m.latest("main");
    assert_eq!(mode_of(&snap.join("a.txt")), 0o644);
    assert_eq!(mode_of(&snap.join("run.sh")), 0o755);
    assert_eq!(mode_of(&snap.join("sub")), 0o755);
    assert!(snap.join("lib").is_dir());
    assert_eq!(fs::read_dir(snap.join("lib")).unwrap().count(), 0);
    assert_eq!(fs::read(snap.join("sub/b.txt")).unwrap(), b"inside\n");
    // Dated by the commit, as ls -l and the restore date them.
    for name in ["", "a.txt", "run.sh", "sub", "sub/b.txt", "lib"] {
        let mtime = fs::symlink_metadata(snap.join(name)).unwrap().mtime();
        assert_eq!(mtime, COMMIT_TIME, "{name}");
    }
}
