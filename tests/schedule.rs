//! `rewind schedule install|remove|show` into a staging root: the systemd
//! flavour where `<root>/run/systemd/system` exists, cron otherwise. Install
//! is idempotent, remove undoes exactly what install did, files that rewind
//! did not write are never touched, and the units pass `systemd-analyze
//! verify` where it is installed.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};

fn setup(env: &Env) -> (PathBuf, PathBuf) {
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

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
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
    assert_eq!(
        shown.stdout_str(),
        format!("# {}\n{text}", root.join("etc/cron.d/rewind").display())
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
