//! `rewind mount --repos DIR`: every repository under a directory as one
//! tree through the real kernel, `<repository>/<name>/latest/...` read back
//! byte for byte, repositories appearing and disappearing while mounted.
//! Needs FUSE (common::require_fuse: skipped with a message, a failure
//! under CI=true).

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits up to ten seconds (the mount re-reads the directory every second)
/// for `cond`; false if it never held.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn mount_repos_shows_every_repository_and_follows_new_and_removed_ones() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let data = env.path("data");
    mkdir(&data);
    // Several chunks, so the read goes through the chunk tree.
    let big = noise(7, 3 << 20);
    write(&data.join("big.bin"), &big);
    write(&data.join("small.txt"), b"hello from web\n");
    let backups = env.path("backups");
    let repo = |name: &str| Rw::bare(&env.home).arg("-d").arg(backups.join(name));
    for name in ["web", "db", "build"] {
        repo(name).args(["-q", "init"]).run().success();
    }
    repo("web")
        .args(["save", "-q", "-n", "etc"])
        .arg(&data)
        .run()
        .success();
    repo("db")
        .args(["save", "-q", "-n", "pg"])
        .arg(&data)
        .run()
        .success();
    mkdir(&backups.join("lost+found"));

    let mnt = env.path("mnt");
    let m = Mount::at(Rw::bare(&env.home).command(), &mnt)
        .args(&["--repos", backups.to_str().unwrap()])
        .start();
    assert_eq!(names(&mnt), ["build", "db", "web"], "{}", m.log_text());
    assert_eq!(names(&mnt.join("web")), ["etc"]);
    assert!(names(&mnt.join("build")).is_empty(), "never saved: empty");
    let snaps = names(&mnt.join("web/etc"));
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert_eq!(snaps[1], "latest");
    let inside = |repo: &str, name: &str, file: &str| {
        let mut p = mnt.join(repo).join(name).join("latest").into_os_string();
        p.push(data.join(file).as_os_str());
        std::path::PathBuf::from(p)
    };
    assert!(
        fs::read(inside("web", "etc", "big.bin")).unwrap() == big,
        "web big.bin differs"
    );
    assert_eq!(
        fs::read(inside("db", "pg", "small.txt")).unwrap(),
        b"hello from web\n"
    );
    assert_eq!(
        fs::read_link(mnt.join("web/etc/latest"))
            .unwrap()
            .to_str()
            .unwrap(),
        snaps[0]
    );

    // A fourth instance starts saving while mounted.
    repo("ci").args(["-q", "init"]).run().success();
    write(&data.join("small.txt"), b"hello from ci\n");
    repo("ci")
        .args(["save", "-q", "-n", "jobs"])
        .arg(&data)
        .run()
        .success();
    assert!(
        eventually(|| names(&mnt).contains(&"ci".to_string())),
        "ci never appeared: {:?}\n{}",
        names(&mnt),
        m.log_text()
    );
    assert_eq!(
        fs::read(inside("ci", "jobs", "small.txt")).unwrap(),
        b"hello from ci\n"
    );
    // ... and a new snapshot in an already open repository shows up too.
    repo("web")
        .args(["save", "-q", "-n", "www"])
        .arg(&data)
        .run()
        .success();
    assert!(eventually(|| names(&mnt.join("web")) == ["etc", "www"]));

    // A retired instance's repository is removed.
    fs::remove_dir_all(backups.join("db")).unwrap();
    assert!(
        eventually(|| !names(&mnt).contains(&"db".to_string())),
        "db never disappeared: {:?}",
        names(&mnt)
    );
    assert!(eventually(|| fs::metadata(mnt.join("db")).is_err()));
    assert_eq!(names(&mnt), ["build", "ci", "web"]);
    // The others are unaffected.
    assert!(fs::read(inside("web", "etc", "big.bin")).unwrap() == big);
    drop(m);
}

#[test]
fn mount_repos_with_d_or_a_missing_directory_is_an_error() {
    let env = Env::new();
    let mnt = env.path("mnt");
    mkdir(&mnt);
    let out = Rw::bare(&env.home)
        .arg("-d")
        .arg(env.path("repo"))
        .args(["mount", "--repos"])
        .arg(env.path("backups"))
        .arg(&mnt)
        .run()
        .status(2);
    assert!(
        out.error_line().contains("give one of them"),
        "{}",
        out.stderr
    );
    let out = Rw::bare(&env.home)
        .args(["mount", "--foreground", "--repos"])
        .arg(env.path("backups"))
        .arg(&mnt)
        .run()
        .status(2);
    assert!(
        out.error_line().contains("cannot list repositories under"),
        "{}",
        out.stderr
    );
}
