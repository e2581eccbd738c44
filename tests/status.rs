//! `rewind status` for monitoring: OK, WARNING, CRITICAL and UNKNOWN with
//! the Nagios plugin exit codes 0, 1, 2 and 3, in text (state first) and
//! JSON, for fresh, stale, never-saved, partial and unreadable backups.
//! Failed runs are covered with `rewind run` in tests/run_config.rs.

mod common;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A config with backups `fresh` (of `data`) and `old` (of `data`, with
/// its own max-age when given).
fn config(env: &Env, old_max_age: Option<&str>) -> PathBuf {
    let data = env.path("data");
    if !data.exists() {
        mkdir(&data);
        write(&data.join("f"), b"0123456789");
    }
    let path = env.path("rewind.toml");
    let old_age = old_max_age.map_or(String::new(), |a| format!("max-age = \"{a}\"\n"));
    fs::write(
        &path,
        format!(
            "repository = \"{}\"\nmax-age = \"26h\"\n\
             [[backup]]\nname = \"fresh\"\npaths = [\"{d}\"]\n\
             [[backup]]\nname = \"old\"\npaths = [\"{d}\"]\n{old_age}",
            env.repo.display(),
            d = data.display()
        ),
    )
    .unwrap();
    path
}

fn status(env: &Env, config: &Path, args: &[&str], code: i32) -> Out {
    Rw::bare(&env.home)
        .arg("--config")
        .arg(config)
        .arg("status")
        .args(args)
        .run()
        .status(code)
}

fn json(out: &Out) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout_str()))
}

#[test]
fn fresh_stale_and_never_saved_backups() {
    let env = Env::init();
    let cfg = config(&env, None);
    // Nothing saved yet: both critical.
    let out = status(&env, &cfg, &[], 2);
    assert_eq!(
        out.lines()[0],
        "CRITICAL: fresh: no snapshot yet; old: no snapshot yet"
    );

    // `old` was last saved three days ago (by hand), `fresh` just now.
    let three_days_ago = now() - 3 * 86400;
    env.save("old", Some(&three_days_ago.to_string()), &env.path("data"));
    env.save("fresh", None, &env.path("data"));
    let out = status(&env, &cfg, &[], 2);
    let lines = out.lines();
    assert!(
        lines[0].starts_with("CRITICAL: old: newest snapshot is 3d")
            && lines[0].contains("old (max-age 1d2h) | fresh_age="),
        "{}",
        out.stdout_str()
    );
    assert!(lines[1].starts_with("fresh  OK "), "{}", out.stdout_str());
    assert!(
        lines[2].starts_with("old    CRITICAL  "),
        "{}",
        out.stdout_str()
    );
    assert!(
        lines[2].contains(&utc_snapshot_name(three_days_ago)),
        "{}",
        out.stdout_str()
    );

    let j = json(&status(&env, &cfg, &["--json"], 2));
    assert_eq!(j["state"], "CRITICAL");
    assert_eq!(j["error"], Value::Null);
    let old = &j["backups"][1];
    assert_eq!(old["name"], "old");
    assert_eq!(old["state"], "CRITICAL");
    assert_eq!(old["time"], three_days_ago);
    assert_eq!(old["max_age_seconds"], 26 * 3600);
    assert!(old["age_seconds"].as_i64().unwrap() >= 3 * 86400);
    // Saved by hand, not by `rewind run`: no figures and no run record.
    assert_eq!(old["files"], Value::Null);
    assert_eq!(old["last_run"], Value::Null);
    assert_eq!(j["backups"][0]["state"], "OK");

    // --max-age overrides the configuration for every backup...
    let out = status(&env, &cfg, &["--max-age", "4d"], 0);
    let first = out.lines()[0].clone();
    let (message, perf) = first.split_once(" | ").expect("performance data");
    assert_eq!(message, "OK: 2 backups fresh");
    // Ages in seconds with max-age as the critical threshold.
    let perf: Vec<&str> = perf.split(' ').collect();
    assert_eq!(perf.len(), 2, "{first}");
    assert!(
        perf[0].starts_with("fresh_age=") && perf[0].ends_with(&format!("s;;{}", 4 * 86400)),
        "{first}"
    );
    let old_age: i64 = perf[1]
        .strip_prefix("old_age=")
        .and_then(|v| v.split('s').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!((3 * 86400..3 * 86400 + 300).contains(&old_age), "{first}");
    // ...and a backup's own max-age overrides the top-level one.
    let cfg = config(&env, Some("3d12h"));
    status(&env, &cfg, &[], 0);
    let out = status(&env, &cfg, &["--max-age", "1h"], 2);
    assert!(
        out.lines()[0].starts_with("CRITICAL: old: "),
        "{}",
        out.stdout_str()
    );
    let out = status(&env, &cfg, &["--max-age", "soon"], 3);
    assert!(
        out.lines()[0].starts_with("UNKNOWN: --max-age: invalid duration \"soon\""),
        "{}",
        out.stdout_str()
    );

    // After a run, the figures of what it saved are shown.
    Rw::bare(&env.home)
        .arg("--config")
        .arg(&cfg)
        .args(["-q", "run"])
        .run()
        .success();
    let out = status(&env, &cfg, &[], 0);
    assert!(
        out.lines()[1].contains("  1 file, 10 B read, "),
        "{}",
        out.stdout_str()
    );
    let j = json(&status(&env, &cfg, &["--json"], 0));
    assert_eq!(j["backups"][1]["files"], 1);
    assert_eq!(j["backups"][1]["last_run"]["result"], "ok");
}

#[test]
fn an_unreadable_repository_or_config_is_unknown() {
    let env = Env::new();
    let cfg = config(&env, None);
    let out = status(&env, &cfg, &[], 3);
    assert!(
        out.lines()[0].starts_with(&format!("UNKNOWN: no repository at {}", env.repo.display())),
        "{}",
        out.stdout_str()
    );
    let j = json(&status(&env, &cfg, &["--json"], 3));
    assert_eq!(j["state"], "UNKNOWN");
    assert!(j["error"].as_str().unwrap().contains("no repository at"));
    assert_eq!(j["backups"], Value::Array(vec![]));
    let missing = env.path("missing.toml");
    let out = status(&env, &missing, &[], 3);
    assert!(
        out.lines()[0].starts_with(&format!(
            "UNKNOWN: no configuration at {}",
            missing.display()
        )),
        "{}",
        out.stdout_str()
    );
    // Damaged run records are unknown, not silently OK.
    let env = Env::init();
    let cfg = config(&env, None);
    fs::create_dir_all(env.repo.join("rewind")).unwrap();
    fs::write(env.repo.join("rewind/runs.toml"), "backup = [").unwrap();
    let out = status(&env, &cfg, &[], 3);
    assert!(
        out.lines()[0].contains("runs.toml are damaged"),
        "{}",
        out.stdout_str()
    );
}

/// `rewind run` as `nobody`, so that a 0000 file really cannot be read.
#[test]
fn a_run_with_unreadable_files_exits_1_and_status_warns() {
    let nobody = Nobody::new();
    let root = &nobody.root;
    let data = root.join("data");
    mkdir(&data);
    write(&data.join("ok.txt"), b"fine\n");
    write(&data.join("secret"), b"nobody may read this\n");
    chmod(&data.join("secret"), 0o000);
    let repo = root.join("repo");
    let cfg = root.join("rewind.toml");
    fs::write(
        &cfg,
        format!(
            "repository = \"{}\"\n[[backup]]\nname = \"data\"\npaths = [\"{}\"]\n",
            repo.display(),
            data.display()
        ),
    )
    .unwrap();
    Rw::bare(&nobody.home)
        .arg("-d")
        .arg(&repo)
        .arg("init")
        .run()
        .success();
    nobody.give(&repo);
    let as_nobody =
        |args: &[&str]| run(nobody.rewind().arg("--config").arg(&cfg).args(args)).no_panic();
    // Quiet, yet the problem is printed: cron mails it.
    let out = as_nobody(&["-q", "run"]).status(1);
    assert!(
        out.stderr.contains(data.join("secret").to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("data: saved ") && out.stderr.contains(" warnings\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("run: 1 backup saved, 1 with warnings (data)"),
        "{}",
        out.stderr
    );
    let out = as_nobody(&["status"]).status(1);
    assert!(
        out.lines()[0].starts_with("WARNING: data: newest snapshot was saved with 2 warnings"),
        "{}",
        out.stdout_str()
    );
    assert_fsck(&repo, false);
}

/// Issue 16: a configured path that is not there no longer fails the
/// backup: the run saves the rest, exits 1 naming the path, and `status`
/// says WARNING for that backup (not OK, not CRITICAL).
#[test]
fn a_run_with_a_missing_path_is_partial_and_status_says_warning() {
    let env = Env::init();
    let data = env.path("data");
    mkdir(&data);
    write(&data.join("f"), b"0123456789");
    let missing = env.path("srv-data");
    let cfg = env.path("rewind.toml");
    fs::write(
        &cfg,
        format!(
            "repository = \"{}\"\n[[backup]]\nname = \"etc\"\npaths = [\"{}\", \"{}\"]\n",
            env.repo.display(),
            data.display(),
            missing.display()
        ),
    )
    .unwrap();
    let out = Rw::bare(&env.home)
        .arg("--config")
        .arg(&cfg)
        .args(["-q", "run"])
        .run()
        .status(1);
    assert!(
        out.stderr
            .contains(&format!("{}: no such file or directory", missing.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("run: 1 backup saved, 1 with warnings (etc)"),
        "{}",
        out.stderr
    );
    assert!(branch_tip(&env.repo, "etc").is_some());
    let out = status(&env, &cfg, &[], 1);
    assert!(
        out.lines()[0].starts_with("WARNING: etc: newest snapshot was saved with 1 warnings"),
        "{}",
        out.stdout_str()
    );
}
