//! Exit statuses and messages: 0 ok, 1 partial (some file unreadable, the
//! snapshot still committed), 2 error (nothing written), always naming the
//! thing that went wrong.

mod common;
use common::*;
use std::fs;
use std::path::Path;

fn tree(dir: &Path) {
    mkdir(&dir.join("sub"));
    write(&dir.join("ok.txt"), b"readable\n");
    write(&dir.join("sub/ok2"), b"also readable\n");
}

/// Refs and pack files: what a failed command must leave unchanged.
fn repo_state(repo: &Path) -> (String, Vec<String>) {
    let refs = run(git(repo).args(["for-each-ref"])).success().stdout_str();
    (refs, pack_dir_listing(repo))
}

#[test]
fn missing_source_path_alone_is_an_error_and_writes_nothing() {
    let env = Env::init();
    let src = env.path("src");
    tree(&src);
    env.save("n", None, &src);
    let before = repo_state(&env.repo);
    let missing = env.path("does-not-exist");
    let other = env.path("gone-too");

    for args in [vec![&missing], vec![&missing, &other]] {
        let out = env
            .rw()
            .args(["save", "-n", "n"])
            .args(&args)
            .run()
            .status(2);
        assert!(
            out.stderr.contains(missing.to_str().unwrap())
                && out.stderr.contains("nothing to save"),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    let out = env
        .rw()
        .args(["save", "-n", "new"])
        .arg(&missing)
        .run()
        .status(2);
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert_eq!(repo_state(&env.repo), before);
    assert_eq!(branch_tip(&env.repo, "new"), None);
}

/// Issue 16: one missing path (a disk not mounted, a directory removed)
/// used to fail the whole backup and save nothing of the paths that were
/// there.
#[test]
fn a_missing_path_beside_a_good_one_saves_the_good_one_and_exits_partial() {
    let env = Env::init();
    let src = env.path("src");
    tree(&src);
    let missing = env.path("does-not-exist");
    // A parent that is a file: ENOTDIR, missing all the same.
    let under_file = src.join("ok.txt/below");
    let out = env
        .rw()
        .args(["save", "-n", "n"])
        .arg(&src)
        .arg(&missing)
        .arg(&under_file)
        .run()
        .status(1);
    for path in [&missing, &under_file] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(path.to_str().unwrap())
                    && l.contains("no such file or directory")),
            "{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("2 warnings"), "{}", out.stderr);
    let tip = branch_tip(&env.repo, "n").expect("a snapshot was made");
    let listed = run(git(&env.repo).args(["ls-tree", "-r", "--name-only", &tip]))
        .success()
        .stdout_str();
    assert!(
        listed.contains("ok.txt") && listed.contains("sub/ok2"),
        "{listed}"
    );
    assert!(!listed.contains("does-not-exist"), "{listed}");
    assert_fsck(&env.repo, false);
}

#[test]
fn not_a_repository_is_an_error_naming_it() {
    let env = Env::new();
    let out = Rw::bare(&env.home)
        .args(["-d", "/not/a/repo", "ls"])
        .run()
        .status(2);
    assert!(out.stderr.contains("/not/a/repo"), "{}", out.stderr);

    // An existing directory that is not a repository.
    let empty = env.path("empty");
    mkdir(&empty);
    let out = Rw::bare(&env.home)
        .arg("-d")
        .arg(&empty)
        .arg("ls")
        .run()
        .status(2);
    assert!(
        out.stderr.contains(empty.to_str().unwrap()),
        "{}",
        out.stderr
    );

    // save does not create a repository on the fly.
    let src = env.path("src");
    tree(&src);
    let nowhere = env.path("nowhere");
    let out = Rw::bare(&env.home)
        .arg("-d")
        .arg(&nowhere)
        .args(["save", "-n", "n"])
        .arg(&src)
        .run()
        .status(2);
    assert!(
        out.stderr.contains(nowhere.to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert!(!nowhere.exists());
    let out = Rw::bare(&env.home)
        .arg("-d")
        .arg(&empty)
        .args(["save", "-n", "n"])
        .arg(&src)
        .run()
        .status(2);
    assert!(
        out.stderr.contains(empty.to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "wrote into a non-repository"
    );
}

#[test]
fn repository_comes_from_flag_then_env_then_home() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);

    // No -d, no REWIND_REPO: ~/.rewind.
    Rw::bare(&env.home).arg("init").run().success();
    assert!(
        env.home.join(".rewind/objects/pack").is_dir(),
        "init did not use ~/.rewind"
    );
    Rw::bare(&env.home)
        .args(["save", "-n", "home"])
        .arg(&src)
        .run()
        .success();
    assert!(branch_tip(&env.home.join(".rewind"), "home").is_some());

    // REWIND_REPO beats ~/.rewind.
    let other = env.path("other");
    Rw::bare(&env.home)
        .env("REWIND_REPO", &other)
        .arg("init")
        .run()
        .success();
    Rw::bare(&env.home)
        .env("REWIND_REPO", &other)
        .args(["save", "-n", "env"])
        .arg(&src)
        .run()
        .success();
    assert!(branch_tip(&other, "env").is_some());
    assert!(branch_tip(&env.home.join(".rewind"), "env").is_none());

    // -d beats REWIND_REPO.
    let out = Rw::bare(&env.home)
        .env("REWIND_REPO", "/not/a/repo")
        .arg("-d")
        .arg(&other)
        .arg("ls")
        .run()
        .success();
    assert_eq!(out.lines(), ["env"]);
    let out = Rw::bare(&env.home)
        .arg("--repo")
        .arg(&other)
        .arg("ls")
        .run()
        .success();
    assert_eq!(out.lines(), ["env"]);
}

#[test]
fn unreadable_files_give_a_partial_snapshot_and_exit_1() {
    // Outside the build tree, in a directory everyone can traverse.
    let nobody = Nobody::new();
    let (root, bin, home) = (&nobody.root, &nobody.bin, &nobody.home);

    let src = root.join("src");
    tree(&src);
    write(&src.join("secret"), b"nobody may read this\n");
    chmod(&src.join("secret"), 0o000);
    mkdir(&src.join("locked"));
    write(&src.join("locked/inside"), b"hidden\n");
    chmod(&src.join("locked"), 0o000);

    let repo = root.join("repo");
    let as_root = |args: &[&str]| {
        let mut c = std::process::Command::new(bin);
        c.env("HOME", home)
            .env("TZ", "UTC")
            .env_remove("REWIND_REPO");
        c.arg("-d").arg(&repo).args(args);
        run(&mut c)
    };
    as_root(&["init"]).success();
    nobody.give(&repo);

    let out = run(nobody
        .rewind()
        .arg("-d")
        .arg(&repo)
        .args(["save", "-n", "n"])
        .arg(&src))
    .no_panic()
    .status(1);
    for bad in [src.join("secret"), src.join("locked")] {
        assert!(
            out.stderr.contains(bad.to_str().unwrap()),
            "the warning should name {}:\n{}",
            bad.display(),
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("ok.txt"),
        "only the unreadable paths are warned about:\n{}",
        out.stderr
    );

    // The snapshot was committed with everything readable.
    assert!(branch_tip(&repo, "n").is_some(), "no snapshot committed");
    let cat = as_root(&[
        "cat-file",
        snap_path("n", "latest", &src.join("sub/ok2"))
            .to_str()
            .unwrap(),
    ])
    .success();
    assert_eq!(cat.stdout, b"also readable\n");
    let cat = as_root(&[
        "cat-file",
        snap_path("n", "latest", &src.join("ok.txt"))
            .to_str()
            .unwrap(),
    ])
    .success();
    assert_eq!(cat.stdout, b"readable\n");
    assert_fsck(&repo, false);
    // Let the TempDir clean up.
    chmod(&src.join("locked"), 0o755);
}

#[test]
fn bad_usage_exits_2_and_writes_nothing() {
    let env = Env::init();
    let src = env.path("src");
    tree(&src);
    env.save("n", None, &src);
    let before = repo_state(&env.repo);
    let s = src.to_str().unwrap();
    let graft = format!("{s}=/x");
    let cases: Vec<Vec<&str>> = vec![
        vec!["frobnicate"],
        vec!["save", "--no-such-flag", "-n", "x", s],
        vec!["save", s],
        vec!["save", "-n", "x"],
        vec!["save", "-n", "x", "--date", "not-a-date", s],
        vec!["save", "-n", "x", "--date", "2014-13-45T99:00:00Z", s],
        vec!["save", "-n", "x", "--strip", "--graft", &graft, s],
        vec!["save", "-n", "x", "--strip", "--strip-path", s, s],
        vec!["save", "-n", "x", "--graft", "no-equals-sign", s],
        vec!["ls", "--no-such-flag"],
        vec!["restore", "n/latest"],
        vec!["cat-file"],
        vec![],
    ];
    for args in cases {
        let out = env.rw().args(&args).run();
        assert_eq!(
            out.code, 2,
            "{args:?}: expected exit 2, got {}:\n{}",
            out.code, out.stderr
        );
        assert!(!out.stderr.trim().is_empty(), "{args:?}: no message");
    }
    assert_eq!(repo_state(&env.repo), before);
}

#[test]
fn invalid_backup_names_are_rejected() {
    let env = Env::init();
    let src = env.path("src");
    tree(&src);
    let before = repo_state(&env.repo);
    for name in [
        "bad..name",
        "with space",
        "-leading-dash",
        "a:b",
        "",
        "trailing.lock",
        "x/../y",
    ] {
        let out = env.rw().args(["save", "-n", name]).arg(&src).run();
        assert_eq!(
            out.code, 2,
            "-n {name:?}: expected exit 2, got {}:\n{}",
            out.code, out.stderr
        );
    }
    assert_eq!(repo_state(&env.repo), before);
    assert_fsck(&env.repo, false);
}

#[test]
fn unknown_names_and_paths_exit_2_naming_them() {
    let env = Env::init();
    let src = env.path("src");
    tree(&src);
    env.save("n", None, &src);
    let out_dir = env.path("out");

    let out = env.rw().args(["ls", "nosuch"]).run().status(2);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
    let out = env
        .rw()
        .args(["restore", "--outdir"])
        .arg(&out_dir)
        .arg("nosuch/latest")
        .run()
        .status(2);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
    let out = env
        .rw()
        .args(["cat-file", "nosuch/latest/etc/hosts"])
        .run()
        .status(2);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);

    let out = env.rw().args(["ls", "n/1999-01-01-000000"]).run().status(2);
    assert!(out.stderr.contains("1999-01-01-000000"), "{}", out.stderr);
    let missing = snap_path("n", "latest", &src.join("no/such/file"));
    let out = env.rw().arg("ls").arg(&missing).run().status(2);
    assert!(out.stderr.contains("no/such/file"), "{}", out.stderr);
    let out = env.rw().arg("cat-file").arg(&missing).run().status(2);
    assert!(out.stderr.contains("no/such/file"), "{}", out.stderr);
    let out = env
        .rw()
        .args(["restore", "--outdir"])
        .arg(&out_dir)
        .arg(&missing)
        .run()
        .status(2);
    assert!(out.stderr.contains("no/such/file"), "{}", out.stderr);
}

/// Issue 16: `rewind umount` of a folder that nothing is mounted on passed
/// on fusermount3's "entry for ... not found in /etc/mtab" (or, as root,
/// umount's "Invalid argument" after it); now one line that says so.
#[test]
fn umount_of_a_folder_that_is_not_mounted_says_so_in_one_line() {
    let env = Env::new();
    let dir = env.path("not-a-mount");
    mkdir(&dir);
    let out = Rw::bare(&env.home).arg("umount").arg(&dir).run().status(2);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "rewind: error: {}: not mounted (nothing to unmount)",
            dir.display()
        ),
    );
}
