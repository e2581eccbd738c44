//! `rewind schedule install|remove|show` into a staging root: the systemd
//! flavour where `<root>/run/systemd/system` exists, cron where a cron
//! daemon is installed and running (`<root>/usr/sbin/cron`, and a process
//! named cron in `<root>/proc`), and a refusal where nothing would run the
//! job. Install is idempotent, remove undoes exactly what install did,
//! files that rewind did not write are never touched, and the units pass
//! `systemd-analyze verify` where it is installed.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A configuration and a root with a running cron in it.
fn setup(env: &Env) -> (PathBuf, PathBuf) {
    let (cfg, root) = setup_without_scheduler(env);
    cron_daemon(&root, "usr/sbin/cron");
    cron_process(&root, "cron");
    (cfg, root)
}

/// A configuration and an empty root: neither systemd nor cron.
fn setup_without_scheduler(env: &Env) -> (PathBuf, PathBuf) {
    let data = env.path("data");
    mkdir(&data);
    let cfg = env.path("rewind.toml");
    fs::write(
        &cfg,
        format!(
            "repository = \"{}\"\n[[backup]]\nname = \"d\"\npaths = [\"{}\"]\n",
            env.repo.display(),
            data.display()
        ),
    )
    .unwrap();
    let root = env.path("root");
    mkdir(&root);
    (cfg, root)
}

/// A cron daemon's binary under `root` (only its presence is looked at).
fn cron_daemon(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"").unwrap();
}

/// A process named `comm` in `root`'s /proc, as the kernel shows it.
fn cron_process(root: &Path, comm: &str) {
    let dir = root.join("proc/4242");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
}

fn schedule(env: &Env, cfg: &Path, root: &Path, args: &[&str]) -> Out {
    Rw::bare(&env.home)
        .arg("--config")
        .arg(cfg)
        .arg("schedule")
        .args(args)
        .arg("--root")
        .arg(root)
        .run()
}

/// The files install wrote under `root`: those under `etc`.
fn files(root: &Path) -> Vec<String> {
    let dir = root.join("etc");
    all_files(&dir)
        .into_iter()
        .map(|f| format!("etc/{f}"))
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn all_files(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    if !dir.exists() {
        return Vec::new();
    }
    walk(dir, &mut all);
    let mut out: Vec<String> = all
        .iter()
        .filter(|p| p.is_file())
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn user() -> String {
    let out = run(std::process::Command::new("id").arg("-un")).success();
    out.stdout_str().trim().to_string()
}

#[test]
fn cron_flavour_installs_idempotently_shows_and_removes() {
    let env = Env::new();
    let (cfg, root) = setup(&env);
    schedule(&env, &cfg, &root, &["install", "--at", "03:30"]).success();
    assert_eq!(files(&root), ["etc/cron.d/rewind"]);
    let text = fs::read_to_string(root.join("etc/cron.d/rewind")).unwrap();
    let job = format!(
        "30 3 * * * {} {} --config {} --quiet run",
        user(),
        canon(&rewind_bin()).display(),
        cfg.display()
    );
    assert!(
        text.starts_with("# Installed by `rewind schedule install`"),
        "{text}"
    );
    assert_eq!(text.lines().last().unwrap(), job, "{text}");

    // Again: same file, no error.
    schedule(&env, &cfg, &root, &["install", "--at", "03:30"]).success();
    assert_eq!(
        fs::read_to_string(root.join("etc/cron.d/rewind")).unwrap(),
        text
    );
    // A new time replaces the old.
    schedule(&env, &cfg, &root, &["install", "--at", "22:05"]).success();
    let text = fs::read_to_string(root.join("etc/cron.d/rewind")).unwrap();
    assert!(text.contains("\n5 22 * * * "), "{text}");

    let shown = schedule(&env, &cfg, &root, &["show"]).success();
    let shown = shown.stdout_str();
    let listing = format!("# {}\n{text}", root.join("etc/cron.d/rewind").display());
    assert!(shown.starts_with(&listing), "{shown}");
    // Then whether it will run, and when (the test runs in UTC).
    let status = &shown[listing.len()..];
    assert!(
        status.starts_with("active: cron (/usr/sbin/cron) is running; next run 20")
            && status.ends_with(" 22:05\n"),
        "{status}"
    );
    schedule(&env, &cfg, &root, &["remove"]).success();
    assert_eq!(files(&root), Vec::<String>::new());
    let shown = schedule(&env, &cfg, &root, &["show"]).success();
    assert!(shown.stdout_str().starts_with("no schedule installed"));
    // Removing nothing is fine.
    schedule(&env, &cfg, &root, &["remove"]).success();
}

#[test]
fn systemd_flavour_writes_a_timer_and_a_service_and_replaces_cron() {
    let env = Env::new();
    let (cfg, root) = setup(&env);
    schedule(&env, &cfg, &root, &["install"]).success();
    assert_eq!(files(&root), ["etc/cron.d/rewind"]);
    // systemd now runs: the cron file gives way to the units.
    fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    schedule(&env, &cfg, &root, &["install", "--at", "01:15"]).success();
    assert_eq!(
        files(&root),
        [
            "etc/systemd/system/rewind.service",
            "etc/systemd/system/rewind.timer"
        ]
    );
    let service = fs::read_to_string(root.join("etc/systemd/system/rewind.service")).unwrap();
    let timer = fs::read_to_string(root.join("etc/systemd/system/rewind.timer")).unwrap();
    assert!(
        service.contains(&format!(
            "\nExecStart={} --config {} --quiet run\n",
            canon(&rewind_bin()).display(),
            cfg.display()
        )),
        "{service}"
    );
    assert!(service.contains("\nType=oneshot\n"), "{service}");
    assert!(timer.contains("\nOnCalendar=*-*-* 01:15:00\n"), "{timer}");
    assert!(timer.contains("\nPersistent=true\n"), "{timer}");
    assert!(timer.contains("\nWantedBy=timers.target\n"), "{timer}");
    schedule(&env, &cfg, &root, &["install", "--at", "01:15"]).success();
    assert_eq!(
        fs::read_to_string(root.join("etc/systemd/system/rewind.timer")).unwrap(),
        timer
    );

    if require("systemd-analyze") {
        let dir = root.join("etc/systemd/system");
        // --man=no: the Documentation= pages are not installed here.
        let out = run(std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join("rewind.timer"))
            .arg(dir.join("rewind.service")));
        let ours: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("rewind."))
            .collect();
        assert!(
            out.code == 0 && ours.is_empty(),
            "systemd-analyze verify: {}\n{}",
            out.code,
            out.stderr
        );
    }

    schedule(&env, &cfg, &root, &["remove"]).success();
    assert_eq!(files(&root), Vec::<String>::new());
}

#[test]
fn foreign_files_bad_times_and_bad_configs_are_refused() {
    let env = Env::new();
    let (cfg, root) = setup(&env);
    let cron = root.join("etc/cron.d/rewind");
    fs::create_dir_all(cron.parent().unwrap()).unwrap();
    fs::write(&cron, "0 1 * * * root /usr/local/bin/my-backup\n").unwrap();
    let out = schedule(&env, &cfg, &root, &["install"]).status(2);
    assert!(
        out.stderr.contains(&format!(
            "{} exists but was not installed by rewind; move it away first",
            cron.display()
        )),
        "{}",
        out.stderr
    );
    schedule(&env, &cfg, &root, &["remove"]).status(2);
    assert_eq!(
        fs::read_to_string(&cron).unwrap(),
        "0 1 * * * root /usr/local/bin/my-backup\n"
    );
    fs::remove_file(&cron).unwrap();

    for bad in ["24:00", "7", "noon"] {
        let out = schedule(&env, &cfg, &root, &["install", "--at", bad]).status(2);
        assert!(
            out.stderr.contains("expected a time of day HH:MM"),
            "{}",
            out.stderr
        );
    }
    // A configuration that does not load is not scheduled.
    fs::write(&cfg, "[[backup]]\nname = \"x\"\n").unwrap();
    let out = schedule(&env, &cfg, &root, &["install"]).status(2);
    assert!(out.stderr.contains("has nothing to save"), "{}", out.stderr);
    assert_eq!(files(&root), Vec::<String>::new());
}

/// Issue 16: on a machine with neither systemd as init nor a cron daemon,
/// install used to write /etc/cron.d/rewind, exit 0 and promise a daily
/// run that nothing would ever start.
#[test]
fn a_schedule_install_into_a_root_with_neither_systemd_nor_cron_refuses() {
    let env = Env::new();
    let (cfg, root) = setup_without_scheduler(&env);
    let out = schedule(&env, &cfg, &root, &["install"]).status(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains("nothing here would run a schedule")
            && lines[0].contains("apt-get install cron"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("will run daily"), "{}", out.stderr);
    assert_eq!(files(&root), Vec::<String>::new());
}

#[test]
fn a_cron_that_is_installed_but_stopped_or_busybox_only_is_refused() {
    let env = Env::new();
    let (cfg, root) = setup_without_scheduler(&env);
    // cronie's daemon, installed, but no cron process.
    cron_daemon(&root, "usr/sbin/crond");
    let out = schedule(&env, &cfg, &root, &["install"]).status(2);
    assert!(
        out.stderr
            .contains("cron is installed (/usr/sbin/crond) but not running"),
        "{}",
        out.stderr
    );
    assert_eq!(files(&root), Vec::<String>::new());

    // Running now: installed, and show says so.
    cron_process(&root, "crond");
    schedule(&env, &cfg, &root, &["install"]).success();
    assert_eq!(files(&root), ["etc/cron.d/rewind"]);
    let show = || {
        schedule(&env, &cfg, &root, &["show"])
            .success()
            .stdout_str()
    };
    let shown = show();
    assert!(
        shown.contains("\nactive: cron (/usr/sbin/crond) is running; next run "),
        "{shown}"
    );
    // The daemon stopped: show says that nothing will run it.
    fs::remove_dir_all(root.join("proc")).unwrap();
    let shown = show();
    assert!(shown.contains("\nNOT active: cron is installed"), "{shown}");
    schedule(&env, &cfg, &root, &["remove"]).success();

    // busybox's crond reads /var/spool/cron/crontabs only.
    fs::remove_file(root.join("usr/sbin/crond")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", root.join("usr/sbin/crond")).unwrap();
    cron_process(&root, "crond");
    let out = schedule(&env, &cfg, &root, &["install"]).status(2);
    assert!(
        out.stderr.contains("does not read /etc/cron.d"),
        "{}",
        out.stderr
    );
    assert_eq!(files(&root), Vec::<String>::new());
}
