//! Ctrl-C and SIGTERM during a save or a run (issue 16): the save stops
//! cleanly, its temporary pack is removed, it says that nothing was
//! committed, and it exits as a shell reports the signal (130, 143); a
//! run's dump command is stopped too. (SIGKILL is covered in
//! tests/safety.rs: it may leave a temporary pack, which gc removes.)

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every leftover temporary file of a save: packs and idx files in
/// `objects/` and `objects/pack/`, change indexes in `rewind/index/`.
fn temporary_files(repo: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["objects", "objects/pack", "rewind/index"] {
        let Ok(entries) = fs::read_dir(repo.join(dir)) else {
            continue;
        };
        for e in entries {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp") || name.starts_with(".tmp") {
                found.push(e.path());
            }
        }
    }
    found
}

/// The size of the temporary pack being written, if there is one.
fn temporary_pack_size(repo: &Path) -> u64 {
    fs::read_dir(repo.join("objects"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("tmp_pack_"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn send(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child we have not waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

fn wait_with_stderr(child: std::process::Child, limit: Duration) -> (i32, String) {
    let started = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("stderr piped")
                .read_to_string(&mut err)
                .expect("read stderr");
            // An exit, not a death by the signal (which a shell would
            // also show as 128 + the signal).
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| panic!("killed by signal {:?}: {err}", status.signal()));
            return (code, err);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A repository with one snapshot of `src` as backup `n`, and `src`
/// changed since: the source, and the commit the branch must keep.
fn previous_snapshot(env: &Env) -> (PathBuf, String) {
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("a.txt"), b"the previous snapshot\n");
    env.save("n", None, &src);
    let before = branch_tip(&env.repo, "n").expect("first snapshot");
    write(&src.join("a.txt"), b"changed, never committed\n");
    (src, before)
}

/// The line an interrupted save of `n` ends with.
const INTERRUPTED: &str =
    "rewind: interrupted by SIGINT: nothing was committed; the snapshots of n are as they were";

#[test]
fn sigint_mid_save_removes_the_temporary_pack_and_keeps_the_previous_snapshot() {
    let env = Env::init();
    let (src, before) = previous_snapshot(&env);
    // Large enough to take seconds to save (about 150 MB/s at worst here),
    // so that the signal lands while the pack is being written.
    write_random(&src.join("big"), 16, 384 << 20);

    let child = env.rw().args(["save", "-n", "n"]).arg(&src).spawn();
    let started = Instant::now();
    while temporary_pack_size(&env.repo) < 4 << 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no temporary pack grew"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    send(&child, libc::SIGINT);
    let (code, stderr) = wait_with_stderr(child, Duration::from_secs(30));
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(stderr.trim_end(), INTERRUPTED);
    assert_eq!(temporary_files(&env.repo), Vec::<PathBuf>::new());
    assert_eq!(branch_tip(&env.repo, "n").as_deref(), Some(&*before));
    run(git(&env.repo).args(["fsck", "--strict"])).success();
    let out = env.path("out");
    env.restore(&out, &snap_path("n", "latest", &src));
    let restored = out.join("src");
    assert_eq!(
        fs::read(restored.join("a.txt")).unwrap(),
        b"the previous snapshot\n"
    );
    assert!(!restored.join("big").exists());
}

#[test]
fn sigterm_mid_run_stops_the_dump_command_and_the_run() {
    let env = Env::init();
    let pid_file = env.path("dump.pid");
    let data = env.path("data");
    mkdir(&data);
    write(&data.join("f"), b"saved before the dump\n");
    // A dump that writes a little, then sits silent (as pg_dump waiting on
    // a lock) in a grandchild of the shell.
    let command = format!(
        "echo start; sleep 600 & echo $! > {}; wait",
        pid_file.display()
    );
    let config = env.path("rewind.toml");
    fs::write(
        &config,
        format!(
            "repository = \"{}\"\n\
             [[backup]]\nname = \"files\"\npaths = [\"{}\"]\n\
             [[backup]]\nname = \"db\"\n[[backup.dump]]\ncommand = {}\nas = \"/db.sql\"\n\
             [[backup]]\nname = \"after\"\npaths = [\"{}\"]\n",
            env.repo.display(),
            data.display(),
            toml::Value::String(command),
            data.display()
        ),
    )
    .unwrap();
    chmod(&config, 0o600);
    let child = Rw::bare(&env.home)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .spawn();
    let started = Instant::now();
    let sleeper: libc::pid_t = loop {
        if let Some(pid) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the dump never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    send(&child, libc::SIGTERM);
    let (code, stderr) = wait_with_stderr(child, Duration::from_secs(30));
    assert_eq!(code, 143, "{stderr}");
    assert!(
        stderr.contains(
            "db: interrupted by SIGTERM: nothing was committed; the snapshots of db are as they were"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("run: interrupted by SIGTERM after backup db"),
        "{stderr}"
    );
    // The backup before it was made, the one after it was not run.
    assert!(branch_tip(&env.repo, "files").is_some());
    assert_eq!(branch_tip(&env.repo, "db"), None);
    assert_eq!(branch_tip(&env.repo, "after"), None);
    assert_eq!(temporary_files(&env.repo), Vec::<PathBuf>::new());
    // The dump's grandchild got the signal too (gone, or a zombie left
    // for init to reap).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = fs::read_to_string(format!("/proc/{sleeper}/stat")).ok();
        let gone = state
            .as_deref()
            .and_then(|s| s.rsplit_once(") "))
            .is_none_or(|(_, rest)| rest.starts_with('Z'));
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dump's sleep {sleeper} still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `status` tells that the run of db did not happen.
    let out = Rw::bare(&env.home)
        .arg("--config")
        .arg(&config)
        .arg("status")
        .run();
    assert!(
        out.stdout_str().contains("db: last run failed at")
            && out.stdout_str().contains("interrupted by SIGTERM"),
        "{}",
        out.stdout_str()
    );
}

/// Issue 16: a save waiting for a running gc (its lock held exclusive,
/// here by the test itself) stops at the first SIGINT. A blocked flock is
/// restarted after the handler runs, so before the fix the first Ctrl-C
/// was swallowed and only a second one ended the save, killed outright.
#[test]
fn sigint_while_a_save_waits_for_gc_stops_it_at_once() {
    use std::io::BufRead;
    let env = Env::init();
    let (src, before) = previous_snapshot(&env);

    // What `rewind gc` holds while it marks and deletes.
    let lock = open_gc_lock(&env.repo);
    lock.lock().expect("flock gc.lock exclusive");

    let mut child = env.rw().args(["save", "-n", "n"]).arg(&src).spawn();
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
    // The save says that it waits, then waits: the signal lands in the wait.
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read stderr");
    assert!(first.contains("waiting for a gc of"), "{first}");
    assert!(
        stderr.buffer().is_empty(),
        "more than one line before the wait"
    );
    child.stderr = Some(stderr.into_inner());
    send(&child, libc::SIGINT);
    let (code, rest) = wait_with_stderr(child, Duration::from_secs(30));
    assert_eq!(code, 130, "{first}{rest}");
    assert_eq!(rest.trim_end(), INTERRUPTED);
    assert_eq!(branch_tip(&env.repo, "n").as_deref(), Some(&*before));
    assert_eq!(temporary_files(&env.repo), Vec::<PathBuf>::new());
    drop(lock);
}
