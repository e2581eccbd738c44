//! Restore over what exists (issue 16): by default an entry of the
//! snapshot replaces what has its name (as bup does); `--no-clobber` keeps
//! it with a warning and exit status 1; `--dry-run` lists what would be
//! created, replaced or kept and writes nothing.

mod common;
use common::*;
use std::fs;
use std::path::Path;

/// A saved tree: a.txt, sub/b.txt, sub/deep/c.txt, and a symlink.
fn saved(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(src.join("sub/deep")).unwrap();
    write(&src.join("a.txt"), b"saved a\n");
    write(&src.join("sub/b.txt"), b"saved b\n");
    write(&src.join("sub/deep/c.txt"), b"saved c\n");
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.save("n", None, &src);
    src
}

fn restore(env: &Env, out: &Path, src: &Path, extra: &[&str]) -> Out {
    let mut snap = snap_path("n", "latest", src);
    snap.push("/");
    env.rw()
        .arg("restore")
        .args(extra)
        .arg("-C")
        .arg(out)
        .arg(snap)
        .run()
}

/// `--no-clobber` keeps an edited file (and a file where a directory was
/// saved, with the directories below it left out) and restores what is
/// missing, whatever the number of threads.
#[test]
fn no_clobber_keeps_an_edited_file_and_restores_what_is_missing() {
    let env = Env::init();
    let src = saved(&env);
    // Directories below the one kept out, and after it: the walk must
    // skip the listings of the first and still get the others'.
    fs::create_dir_all(src.join("sub/deep/deeper")).unwrap();
    fs::create_dir_all(src.join("sub/later")).unwrap();
    fs::create_dir_all(src.join("zz")).unwrap();
    write(&src.join("sub/deep/deeper/d.txt"), b"saved d\n");
    write(&src.join("sub/later/e.txt"), b"saved e\n");
    write(&src.join("zz/f.txt"), b"saved f\n");
    env.save("n", None, &src);
    for threads in ["1", "4"] {
        let out = env.path(&format!("out{threads}"));
        restore(&env, &out, &src, &[]).success();
        write(&out.join("a.txt"), b"edited by hand\n");
        fs::remove_file(out.join("sub/b.txt")).unwrap();
        fs::remove_dir_all(out.join("sub/deep")).unwrap();
        fs::remove_dir_all(out.join("sub/later")).unwrap();
        fs::remove_file(out.join("zz/f.txt")).unwrap();
        write(&out.join("sub/deep"), b"a file where a directory was\n");
        let result = restore(&env, &out, &src, &["--no-clobber", "--threads", threads]).status(1);
        for kept in [out.join("a.txt"), out.join("sub/deep"), out.join("link")] {
            assert!(
                result.stderr.contains(&format!(
                    "{}: exists, not replaced (--no-clobber)",
                    kept.display()
                )),
                "{}",
                result.stderr
            );
        }
        assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"edited by hand\n");
        assert_eq!(
            fs::read(out.join("sub/deep")).unwrap(),
            b"a file where a directory was\n"
        );
        assert_eq!(fs::read(out.join("sub/b.txt")).unwrap(), b"saved b\n");
        assert_eq!(fs::read(out.join("sub/later/e.txt")).unwrap(), b"saved e\n");
        assert_eq!(fs::read(out.join("zz/f.txt")).unwrap(), b"saved f\n");

        // The default replaces, as the man page says.
        restore(&env, &out, &src, &["--threads", threads]).success();
        assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"saved a\n");
        assert_eq!(fs::read(out.join("sub/deep/c.txt")).unwrap(), b"saved c\n");
        // Nothing in the way: --no-clobber is a plain restore.
        let fresh = env.path(&format!("fresh{threads}"));
        restore(&env, &fresh, &src, &["--no-clobber", "--threads", threads]).success();
        assert_same_tree(&out, &fresh);
    }
}

#[test]
fn restore_dry_run_lists_what_it_would_write_and_writes_nothing() {
    let env = Env::init();
    let src = saved(&env);
    let out = env.path("out");
    let plan = restore(&env, &out, &src, &["--dry-run"]).success();
    assert!(!out.exists(), "a dry run created the target");
    let o = out.display();
    assert_eq!(
        plan.stdout_str(),
        format!(
            "would create {o}/a.txt\nwould create {o}/link\nwould create {o}/sub/\n\
             would create {o}/sub/b.txt\nwould create {o}/sub/deep/\nwould create {o}/sub/deep/c.txt\n"
        )
    );

    restore(&env, &out, &src, &[]).success();
    write(&out.join("a.txt"), b"edited by hand\n");
    fs::remove_file(out.join("sub/deep/c.txt")).unwrap();
    let plan = restore(&env, &out, &src, &["--dry-run"]).success();
    assert_eq!(
        plan.stdout_str(),
        format!(
            "would replace {o}/a.txt\nwould replace {o}/link\nwould replace {o}/sub/b.txt\n\
             would create {o}/sub/deep/c.txt\n"
        )
    );
    let plan = restore(&env, &out, &src, &["--dry-run", "--no-clobber"]).status(1);
    assert!(
        plan.stdout_str()
            .starts_with(&format!("would keep (exists, --no-clobber) {o}/a.txt\n")),
        "{}",
        plan.stdout_str()
    );
    assert!(
        plan.stdout_str()
            .ends_with(&format!("would create {o}/sub/deep/c.txt\n")),
        "{}",
        plan.stdout_str()
    );
    // Nothing was written by either dry run.
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"edited by hand\n");
    assert!(!out.join("sub/deep/c.txt").exists());
}
