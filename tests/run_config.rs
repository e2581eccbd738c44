//! The configuration file and `rewind run`: the template, every error case
//! of the file (each message names the file, line and what to do), a run
//! of two backups (files and a database dump) end to end, a failing dump
//! that must not hide behind a good-looking snapshot, and overlapping runs.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `rewind --config FILE` with no -d: the repository comes from the file.
fn rw_config(env: &Env, config: &Path) -> Rw {
    Rw::bare(&env.home).arg("--config").arg(config)
}

fn write_config(env: &Env, text: &str) -> PathBuf {
    let path = env.path("rewind.toml");
    fs::write(&path, text).expect("write config");
    // Whatever the umask: a config with dumps must not be writable by others.
    chmod(&path, 0o644);
    path
}

/// A data directory with a few files, and a config saving it as `files`
/// and a dump of `dump_command` as `db`.
fn two_backups(env: &Env, dump_command: &str) -> PathBuf {
    let data = env.path("data");
    mkdir(&data);
    write(&data.join("a.txt"), b"alpha\n");
    mkdir(&data.join("sub"));
    write(&data.join("sub/b.bin"), &random_bytes(7, 100_000));
    write(&data.join("skip.tmp"), b"excluded\n");
    write_config(
        env,
        &format!(
            r#"repository = "{repo}"

[[backup]]
name = "files"
paths = ["{data}"]
excludes = ["*.tmp"]
one-file-system = true

[[backup]]
name = "db"
[[backup.dump]]
command = {command}
as = "/var/lib/mysql/backup/bugs.sql"
"#,
            repo = env.repo.display(),
            data = data.display(),
            command = toml_string(dump_command)
        ),
    )
}

#[test]
fn the_template_parses_round_trips_and_documents_every_key() {
    let env = Env::new();
    let out = Rw::bare(&env.home).args(["config", "init"]).run().success();
    assert_eq!(out.stdout_str(), rewind::config::TEMPLATE);
    let path = Path::new("/etc/rewind.toml");
    let first = rewind::config::parse(path, rewind::config::TEMPLATE).expect("template parses");
    assert_eq!(
        first.repository,
        Some(rewind::remote::Location::Local(PathBuf::from(
            "/var/backups/rewind"
        )))
    );
    assert_eq!(first.backups.len(), 1);
    assert_eq!(first.backups[0].max_age_secs, 26 * 3600);
    // Through the serde shape and back: nothing lost, nothing changed.
    let raw: rewind::config::RawConfig = toml::from_str(rewind::config::TEMPLATE).expect("raw");
    let text = toml::to_string(&raw).expect("serialise");
    let second = rewind::config::parse(path, &text).expect("reparse");
    assert_eq!(first, second, "round trip through:\n{text}");
    // Every key a backup can have appears in the template with its default
    // or an example (commented where it is optional).
    for key in [
        "repository =",
        "max-age =",
        "[[backup]]",
        "name =",
        "paths =",
        "excludes =",
        "exclude-from =",
        "one-file-system =",
        "[[backup.dump]]",
        "command =",
        "as =",
        "[mirror]",
        "url =",
        "key =",
        "plain =",
        "endpoint =",
        "day =",
        "grace =",
    ] {
        assert!(
            rewind::config::TEMPLATE.contains(key),
            "template lacks {key}"
        );
    }
}

#[test]
fn config_check_reports_what_is_configured() {
    let env = Env::init();
    let config = two_backups(&env, "echo hello");
    let out = rw_config(&env, &config)
        .args(["config", "check"])
        .run()
        .success();
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("repository {}", env.repo.display())),
        "{text}"
    );
    assert!(
        text.contains("backup files: 1 path, 1 exclude, 0 dumps, one file system"),
        "{text}"
    );
    assert!(
        text.contains("backup db: 0 paths, 0 excludes, 1 dump,"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("configuration {}: ok\n", config.display())),
        "{text}"
    );

    // A path that does not exist would fail the run: check says so.
    fs::remove_dir_all(env.path("data")).unwrap();
    let out = rw_config(&env, &config)
        .args(["config", "check"])
        .run()
        .status(2);
    // Issue 16: "ok" was printed first, then the problems; now each
    // problem names its line (5: `paths`) and "ok" is not said.
    assert!(
        out.stderr.contains(&format!(
            "rewind: {}:5: backup files: path {} does not exist",
            config.display(),
            env.path("data").display()
        )) && out.stderr.contains("rewind: error: 1 problem in"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout_str().contains(": ok"), "{}", out.stdout_str());
}

/// Runs `rewind run` on `text` and returns stderr, asserting exit 2.
fn config_error(env: &Env, text: &str) -> String {
    let path = write_config(env, text);
    let out = rw_config(env, &path).arg("run").run().status(2);
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "a config error is one line:\n{}",
        out.stderr
    );
    out.stderr
}

#[test]
fn every_config_error_names_the_file_and_line() {
    let env = Env::init();
    let file = env.path("rewind.toml");
    let f = file.display().to_string();
    let backup = "[[backup]]\nname = \"etc\"\npaths = [\"/etc\"]\n";

    let e = config_error(
        &env,
        &format!("repository = \"/r\"\n{backup}colour = \"red\"\n"),
    );
    assert!(
        e.contains(&format!("{f}:5:1: unknown field `colour`")),
        "{e}"
    );

    let e = config_error(
        &env,
        "repository = \"/r\"\n[[backup]]\nname = \"etc\"\npaths = \"/etc\"\n",
    );
    assert!(
        e.contains(&format!(
            "{f}:4:9: invalid type: string \"/etc\", expected a sequence"
        )),
        "{e}"
    );

    // Issue 16: a dump table with one pair of brackets said "invalid type:
    // map, expected a sequence".
    let e = config_error(
        &env,
        "repository = \"/r\"\n[[backup]]\nname = \"db\"\n[backup.dump]\ncommand = \"true\"\nas = \"/db.sql\"\n",
    );
    assert!(
        e.contains(&format!(
            "{f}:4:1: a dump is written [[backup.dump]], with two brackets"
        )) && !e.contains("invalid type"),
        "{e}"
    );
    let e = config_error(&env, "repository = \"/r\"\n[backup]\nname = \"etc\"\n");
    assert!(e.contains("a backup is written [[backup]]"), "{e}");
    // And [[backups]] names the table meant, after the keys accepted.
    let e = config_error(
        &env,
        "repository = \"/r\"\n[[backups]]\nname = \"etc\"\npaths = [\"/etc\"]\n",
    );
    assert!(
        e.contains(&format!("{f}:2:"))
            && e.contains("unknown field `backups`")
            && e.ends_with("; did you mean [[backup]]?\n"),
        "{e}"
    );

    let e = config_error(&env, &format!("{backup}one-file-system = \"yes\"\n"));
    assert!(
        e.contains(&format!("{f}:4:19:")) && e.contains("expected a boolean"),
        "{e}"
    );

    let e = config_error(
        &env,
        "[[backup]]\nname = \"etc\"\npaths = [\"/etc\", \"var/www\"]\n",
    );
    assert!(
        e.contains(&format!(
            "{f}:3:18: path \"var/www\" of backup \"etc\" must be an absolute path"
        )),
        "{e}"
    );

    let e = config_error(
        &env,
        &format!("{backup}[[backup.dump]]\ncommand = \"pg_dump\"\nas = \"x.sql\"\n"),
    );
    assert!(
        e.contains(&format!("{f}:6:6:")) && e.contains("must be an absolute path"),
        "{e}"
    );

    let e = config_error(
        &env,
        &format!("{backup}[[backup.dump]]\ncommand = \"pg_dump\"\nas = \"/etc/db.sql\"\n"),
    );
    assert!(
        e.contains(&format!(
            "{f}:6:6: dump path /etc/db.sql of backup \"etc\" lies inside its path /etc"
        )),
        "{e}"
    );

    // A retention that keeps nothing is refused, not a wipe.
    let e = config_error(&env, &format!("{backup}\n[retention]\nkeep-daily = 0\n"));
    assert!(
        e.contains(&format!("{f}:5:1: [retention] keeps nothing")),
        "{e}"
    );
    let e = config_error(
        &env,
        &format!("{backup}\n[retention]\nkeep-within = \"30\"\n"),
    );
    assert!(
        e.contains(&format!("{f}:6:15: invalid keep-within duration \"30\"")),
        "{e}"
    );
    let e = config_error(
        &env,
        &format!("{backup}[backup.retention]\nkeep-dayly = 7\n"),
    );
    assert!(e.contains("unknown field `keep-dayly`"), "{e}");

    // [mirror]: a misspelt key, a missing key file name, a server's
    // repository (the mirror runs where the repository is).
    let e = config_error(
        &env,
        &format!("{backup}\n[mirror]\nurl = \"s3://b\"\nplain = true\nbucket = \"b\"\n"),
    );
    assert!(
        e.contains(&format!("{f}:8:1: unknown field `bucket`")),
        "{e}"
    );
    let e = config_error(&env, &format!("{backup}\n[mirror]\nurl = \"s3://b\"\n"));
    assert!(
        e.contains(&format!("{f}:6:7: [mirror] has no key: give `key")),
        "{e}"
    );
    let e = config_error(
        &env,
        &format!("repository = \"backup@vault:/srv\"\n{backup}[mirror]\nurl = \"s3://b\"\nplain = true\n"),
    );
    assert!(
        e.contains(&format!(
            "{f}:5:1: [mirror] needs the repository on this machine"
        )),
        "{e}"
    );

    // A server's repository is accepted; a malformed one is named.
    let e = config_error(&env, &format!("repository = \"ssh://vault:0/x\"\n{backup}"));
    assert!(
        e.contains(&format!("{f}:1:14: invalid repository location")),
        "{e}"
    );

    let e = config_error(&env, &format!("repository = \"srv/rewind\"\n{backup}"));
    assert!(e.contains("must be an absolute path"), "{e}");

    let e = config_error(&env, &format!("{backup}{backup}"));
    assert!(
        e.contains(&format!("{f}:5:8: backup \"etc\" is configured twice")),
        "{e}"
    );

    let e = config_error(&env, &format!("max-age = \"one day\"\n{backup}"));
    assert!(
        e.contains(&format!("{f}:1:11: invalid duration \"one day\"")),
        "{e}"
    );

    let e = config_error(&env, "[[backup]]\nname = \"a/b\"\npaths = [\"/etc\"]\n");
    assert!(
        e.contains(&format!("{f}:2:8: invalid backup name \"a/b\"")),
        "{e}"
    );

    let e = config_error(&env, "[[backup]]\nname = \"etc\"\n");
    assert!(
        e.contains(&format!("{f}:1:1: backup \"etc\" has nothing to save")),
        "{e}"
    );

    let e = config_error(&env, "repository = \"/r\"\n");
    assert!(
        e.contains("no backups configured: add a [[backup]] table"),
        "{e}"
    );

    let e = config_error(&env, "[[backup]\nname = 1\n");
    assert!(e.contains(&format!("{f}:1:")), "{e}");

    // A missing file: the path looked for, and how to make one.
    let missing = env.path("nowhere.toml");
    let out = rw_config(&env, &missing).arg("run").run().status(2);
    assert!(
        out.stderr.contains(&format!(
            "no configuration at {}: create one with `rewind config init > {}`",
            missing.display(),
            missing.display()
        )),
        "{}",
        out.stderr
    );
    // The default path, through REWIND_CONFIG's absence.
    let out = Rw::bare(&env.home).arg("run").run().status(2);
    assert!(
        out.stderr.contains("no configuration at /etc/rewind.toml")
            || Path::new("/etc/rewind.toml").exists(),
        "{}",
        out.stderr
    );
    // REWIND_CONFIG names one.
    let out = Rw::bare(&env.home)
        .env("REWIND_CONFIG", &missing)
        .arg("run")
        .run()
        .status(2);
    assert!(
        out.stderr
            .contains(&format!("no configuration at {}", missing.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn run_saves_files_and_a_dump_then_a_failing_dump_fails_only_its_backup() {
    let env = Env::init();
    let config = two_backups(&env, "printf 'CREATE TABLE bugs;\\n'");

    let dry = rw_config(&env, &config)
        .args(["run", "--dry-run"])
        .run()
        .success();
    let text = dry.stdout_str();
    assert!(
        text.contains(&format!("would save {}", env.path("data").display())),
        "{text}"
    );
    assert!(text.contains("would run `printf 'CREATE TABLE bugs;\\n'` and save its output as /var/lib/mysql/backup/bugs.sql"), "{text}");
    assert_eq!(
        branch_tip(&env.repo, "files"),
        None,
        "a dry run saves nothing"
    );

    // Quiet: a good run says nothing (cron mails only problems).
    let out = rw_config(&env, &config).args(["-q", "run"]).run().success();
    assert_eq!(out.stderr, "", "quiet run printed something");
    assert!(out.stdout.is_empty());
    let listed = env.rw().args(["ls", "files/latest", "-l"]).run().success();
    let _ = listed;
    let a = env
        .rw()
        .arg("cat-file")
        .arg(snap_path("files", "latest", &env.path("data/a.txt")))
        .run()
        .success();
    assert_eq!(a.stdout, b"alpha\n");
    let skipped = env
        .rw()
        .arg("cat-file")
        .arg(snap_path("files", "latest", &env.path("data/skip.tmp")))
        .run();
    assert_ne!(skipped.code, 0, "excluded file was saved");
    let dump = env
        .rw()
        .args(["cat-file", "db/latest/var/lib/mysql/backup/bugs.sql"])
        .run()
        .success();
    assert_eq!(dump.stdout, b"CREATE TABLE bugs;\n");
    let good_db = branch_tip(&env.repo, "db").expect("db saved");
    let files_before = branch_commits(&env.repo, "files").len();

    // Not quiet: one line per backup and a summary.
    write(&env.path("data/a.txt"), b"alpha 2\n");
    let config = two_backups_again(
        &env,
        "echo partial output; echo 'mysqldump: Access denied for user' >&2; exit 2",
    );
    let out = rw_config(&env, &config).arg("run").run().status(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("files: saved ")),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("db: FAILED, nothing saved: ")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("mysqldump: Access denied for user"),
        "the dump's stderr is shown:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("run: 1 of 2 backups failed (db)"),
        "{}",
        out.stderr
    );
    // The other backup still happened; the failed one kept its last good
    // snapshot as latest.
    assert_eq!(branch_commits(&env.repo, "files").len(), files_before + 1);
    assert_eq!(branch_tip(&env.repo, "db"), Some(good_db));
    let dump = env
        .rw()
        .args(["cat-file", "db/latest/var/lib/mysql/backup/bugs.sql"])
        .run()
        .success();
    assert_eq!(dump.stdout, b"CREATE TABLE bugs;\n");

    // Monitoring notices.
    let status = rw_config(&env, &config).arg("status").run().status(2);
    let first = status.lines()[0].clone();
    assert!(
        first.starts_with("CRITICAL: db: last run failed at "),
        "{first}"
    );
    assert!(first.contains("Access denied"), "{first}");
    let json: serde_json::Value = serde_json::from_slice(
        &rw_config(&env, &config)
            .args(["status", "--json"])
            .run()
            .status(2)
            .stdout,
    )
    .expect("json");
    assert_eq!(json["state"], "CRITICAL");
    assert_eq!(json["backups"][0]["name"], "files");
    assert_eq!(json["backups"][0]["state"], "OK");
    assert_eq!(json["backups"][1]["state"], "CRITICAL");
    assert_eq!(json["backups"][1]["last_run"]["result"], "failed");
    // The failed run left the figures of the last good snapshot.
    assert_eq!(json["backups"][1]["files"], 1);

    // Fixed: both good again.
    let config = two_backups_again(&env, "echo 'CREATE TABLE bugs2;'");
    rw_config(&env, &config).args(["-q", "run"]).run().success();
    rw_config(&env, &config).arg("status").run().success();
}

/// Rewrites the config of `two_backups` with another dump command.
fn two_backups_again(env: &Env, dump_command: &str) -> PathBuf {
    let data = env.path("data");
    write_config(
        env,
        &format!(
            "repository = \"{}\"\n[[backup]]\nname = \"files\"\npaths = [\"{}\"]\nexcludes = [\"*.tmp\"]\n\
             [[backup]]\nname = \"db\"\n[[backup.dump]]\ncommand = {}\nas = \"/var/lib/mysql/backup/bugs.sql\"\n",
            env.repo.display(),
            data.display(),
            toml_string(dump_command)
        ),
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[test]
fn dump_commands_from_a_file_others_can_change_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::init();
    let config = two_backups(&env, "echo dump");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    let out = rw_config(&env, &config).arg("run").run().status(2);
    assert!(
        out.stderr.contains(&format!(
            "{}: refusing to run its dump commands: it is writable by others (mode 0666): chmod go-w {}",
            config.display(),
            config.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(branch_tip(&env.repo, "files"), None, "nothing ran");
    // Owned by another user (not root): refused too.
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let (uid, gid) = user_ids("nobody");
    lchown(&config, uid, gid);
    let out = rw_config(&env, &config).arg("run").run().status(2);
    assert!(
        out.stderr.contains(&format!("it belongs to uid {uid}")),
        "{}",
        out.stderr
    );
    // Without dumps, nothing is run with anyone's rights: accepted.
    fs::write(
        &config,
        format!(
            "repository = \"{}\"\n[[backup]]\nname = \"files\"\npaths = [\"{}\"]\n",
            env.repo.display(),
            env.path("data").display()
        ),
    )
    .unwrap();
    rw_config(&env, &config).args(["-q", "run"]).run().success();
}

#[test]
fn the_repository_option_overrides_the_config() {
    let env = Env::init();
    let data = env.path("data");
    mkdir(&data);
    write(&data.join("x"), b"x");
    let config = write_config(
        &env,
        &format!(
            "repository = \"{}\"\n[[backup]]\nname = \"x\"\npaths = [\"{}\"]\n",
            env.path("elsewhere").display(),
            data.display()
        ),
    );
    // The configured repository does not exist: named in the error.
    let out = rw_config(&env, &config).arg("run").run().status(2);
    assert!(
        out.stderr.contains(&format!(
            "no repository at {}",
            env.path("elsewhere").display()
        )),
        "{}",
        out.stderr
    );
    // -d wins, and so does REWIND_REPO.
    rw_config(&env, &config)
        .arg("-d")
        .arg(&env.repo)
        .args(["-q", "run"])
        .run()
        .success();
    rw_config(&env, &config)
        .env("REWIND_REPO", &env.repo)
        .args(["-q", "run"])
        .run()
        .success();
    assert_eq!(branch_commits(&env.repo, "x").len(), 2);
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_run_is_refused_while_one_runs_and_a_dead_runs_lock_is_taken_over() {
    let env = Env::init();
    let started = env.path("started");
    let go = env.path("go");
    // The dump holds the first run inside its lock until the test says go.
    let command = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.02; done; echo dumped",
        started.display(),
        go.display()
    );
    let config = two_backups(&env, &command);
    let first = rw_config(&env, &config).args(["-q", "run"]).spawn();
    // Whatever happens below, the blocked run is released and reaped.
    let mut first = Blocked {
        child: first,
        go: go.clone(),
    };
    wait_for(&started);
    let pid = first.child.id();
    let second = rw_config(&env, &config).arg("run").run().status(2);
    let lock = env.repo.join("rewind/run.lock");
    assert!(
        second
            .stderr
            .contains(&format!("another rewind run (pid {pid}, started "))
            && second.stderr.contains(&format!("holds {}", lock.display())),
        "{}",
        second.stderr
    );
    assert_eq!(second.stderr.lines().count(), 1, "{}", second.stderr);

    // Killed while holding the lock: the kernel drops the flock, the text
    // stays; the next run says whose lock it takes over.
    first.child.kill().expect("kill the first run");
    first.child.wait().expect("reap the first run");
    env.dangling_ok.set(true);
    assert!(fs::read_to_string(&lock)
        .unwrap()
        .starts_with(&format!("pid {pid}\n")));
    fs::write(&go, b"").unwrap();
    let out = rw_config(&env, &config).args(["-v", "run"]).run().success();
    assert!(
        out.stderr.contains(&format!(
            "taking over run lock {} left by a run that ended without releasing it (pid {pid}, started ",
            lock.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read(&lock).unwrap(),
        b"",
        "a finished run leaves the lock empty"
    );
    // The killed run's dump backup made no snapshot; this one made both.
    assert_eq!(branch_commits(&env.repo, "db").len(), 1);
    assert_eq!(branch_commits(&env.repo, "files").len(), 2);
}

/// A spawned run whose dump waits for the file `go`.
struct Blocked {
    child: std::process::Child,
    go: PathBuf,
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = fs::write(&self.go, b"");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_log_file_gets_stamped_summary_and_warning_lines() {
    let env = Env::init();
    let config = two_backups(&env, "echo dump");
    let log = env.path("rewind.log");
    fs::write(&log, "earlier line\n").unwrap();
    rw_config(&env, &config)
        .arg("--log-file")
        .arg(&log)
        .args(["-q", "run"])
        .run()
        .success();
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "earlier line", "appended, not truncated");
    let saved = lines
        .iter()
        .find(|l| l.contains("INFO files: saved "))
        .unwrap_or_else(|| panic!("no summary line in:\n{text}"));
    // "2026-11-22 01:00:00 +0000 rewind[PID]:  INFO ..."
    let b = saved.as_bytes();
    assert!(
        b[4] == b'-' && b[10] == b' ' && b[13] == b':' && saved[19..].starts_with(" +0000 rewind["),
        "{saved}"
    );
    assert!(text.contains("INFO run: 2 backups saved"), "{text}");
    // An unwritable log file is an error before anything runs.
    let out = rw_config(&env, &config)
        .arg("--log-file")
        .arg(env.path("no/such/dir/log"))
        .arg("run")
        .run()
        .status(2);
    assert!(
        out.stderr.contains("cannot open log file"),
        "{}",
        out.stderr
    );
}

/// Issue 16: `rewind run --dry-run` passed configs that `rewind run` then
/// refused. The dry run is what a user runs after editing the config, so
/// it must fail, with the same exit status and message, wherever the run
/// does.
#[test]
fn dry_run_fails_where_the_run_fails() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::init();
    // Dump commands in a config others can write.
    let config = two_backups(&env, "echo dump");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    let refusal = "refusing to run its dump commands: it is writable by others";
    for args in [&["run"][..], &["run", "--dry-run"]] {
        let out = rw_config(&env, &config).args(args).run().status(2);
        assert!(out.stderr.contains(refusal), "{args:?}: {}", out.stderr);
    }
    assert_eq!(branch_tip(&env.repo, "files"), None, "nothing ran");

    // One path missing: both warn naming it and exit 1 (partial).
    let data = env.path("data");
    let missing = env.path("srv-data");
    let gone = env.path("gone");
    let paths_config = |paths: &[&Path]| {
        let list: Vec<String> = paths
            .iter()
            .map(|p| toml_string(&p.display().to_string()))
            .collect();
        write_config(
            &env,
            &format!(
                "repository = \"{}\"\n[[backup]]\nname = \"files\"\npaths = [{}]\n",
                env.repo.display(),
                list.join(", ")
            ),
        )
    };
    let config = paths_config(&[&data, &missing]);
    let warning = format!("{}: no such file or directory", missing.display());
    let dry = rw_config(&env, &config)
        .args(["run", "--dry-run"])
        .run()
        .status(1);
    assert!(dry.stderr.contains(&warning), "{}", dry.stderr);
    assert_eq!(
        branch_tip(&env.repo, "files"),
        None,
        "a dry run saves nothing"
    );
    let out = rw_config(&env, &config).args(["run"]).run().status(1);
    assert!(out.stderr.contains(&warning), "{}", out.stderr);

    // No path exists: both fail the backup.
    let config = paths_config(&[&missing, &gone]);
    for args in [&["run"][..], &["run", "--dry-run"]] {
        let out = rw_config(&env, &config).args(args).run().status(2);
        assert!(
            out.stderr.contains("files: ")
                && out.stderr.contains("FAIL")
                && out
                    .stderr
                    .contains(&format!("nothing to save: {}", missing.display())),
            "{args:?}: {}",
            out.stderr
        );
    }

    // No repository there: both fail.
    let config = write_config(
        &env,
        &format!(
            "repository = \"{}\"\n[[backup]]\nname = \"files\"\npaths = [\"{}\"]\n",
            env.path("no-repo").display(),
            data.display()
        ),
    );
    for args in [&["run"][..], &["run", "--dry-run"]] {
        let out = rw_config(&env, &config).args(args).run().status(2);
        assert!(
            out.stderr.contains(&format!(
                "no repository at {}: create one",
                env.path("no-repo").display()
            )),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// A `files` backup of a small data folder and a `[mirror]` section with
/// `mirror` in it; the config's path.
fn mirrored_backup(env: &Env, mirror: &str) -> PathBuf {
    let data = env.path("data");
    if !data.exists() {
        mkdir(&data);
        write(&data.join("a.txt"), b"alpha\n");
        write(&data.join("b.bin"), &random_bytes(11, 200_000));
    }
    write_config(
        env,
        &format!(
            "repository = \"{}\"\n[[backup]]\nname = \"files\"\npaths = [\"{}\"]\n[mirror]\n{mirror}",
            env.repo.display(),
            data.display()
        ),
    )
}

/// `rewind mirror keygen` into the Env; the key file's path.
fn mirror_key(env: &Env) -> PathBuf {
    let key = env.path("mirror.key");
    Rw::bare(&env.home)
        .args(["mirror", "keygen"])
        .arg(&key)
        .run()
        .success();
    key
}

/// Issue 14: on the mirror's day `rewind run` pushes the repository, last,
/// encrypted with the configured key, and what it pushed is enough to
/// rebuild the repository (the disaster-recovery path of the README).
#[test]
fn run_pushes_the_mirror_on_its_day_and_a_pull_rebuilds_the_repository() {
    let env = Env::init();
    let key = mirror_key(&env);
    let bucket = env.path("bucket");
    let url = format!("file://{}", bucket.display());
    let config = mirrored_backup(
        &env,
        &format!(
            "url = \"{url}\"\nkey = \"{}\"\nplain = false\nday = \"daily\"\n",
            key.display()
        ),
    );

    let dry = rw_config(&env, &config)
        .args(["run", "--dry-run"])
        .run()
        .success();
    assert!(
        dry.stdout_str()
            .contains(&format!("then would push the mirror to {url} (daily)")),
        "{}",
        dry.stdout_str()
    );
    assert!(!bucket.exists(), "a dry run pushes nothing");
    let check = rw_config(&env, &config)
        .args(["config", "check"])
        .run()
        .success();
    assert!(
        check.stdout_str().contains(&format!(
            "mirror {url}: encrypted with {}, pushed by `rewind run` daily, grace 14d",
            key.display()
        )),
        "{}",
        check.stdout_str()
    );

    // Quiet and all well: nothing said, and the bucket has the manifest.
    let out = rw_config(&env, &config).args(["-q", "run"]).run().success();
    assert_eq!(out.stderr, "", "a quiet run printed something");
    assert!(bucket.join("rewind-mirror").is_file(), "no manifest pushed");
    // Encrypted: the manifest is an age file, and no object is named after
    // a repository file.
    let manifest = fs::read(bucket.join("rewind-mirror")).unwrap();
    assert!(manifest.starts_with(b"age-encryption.org/v1\n"));
    let names: Vec<String> = fs::read_dir(bucket.join("data"))
        .expect("objects under data/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("pack")), "{names:?}");

    // The next run's summary line says what was sent.
    let out = rw_config(&env, &config).arg("run").run().success();
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("mirror: pushed to {url}: ")))
        .unwrap_or_else(|| panic!("no mirror line:\n{}", out.stderr));
    assert!(
        line.contains("objects sent") && line.contains("manifest updated"),
        "{line}"
    );
    let last = out.stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("run: 1 backup saved"), "{}", out.stderr);

    // The backup server is gone: rebuild from the bucket with the key.
    let dest = env.path("rebuilt");
    Rw::bare(&env.home)
        .args(["mirror", "pull"])
        .arg(&url)
        .arg(&dest)
        .arg("--key")
        .arg(&key)
        .run()
        .success();
    assert_fsck(&dest, false);
    let listing = |repo: &Path| {
        Rw::bare(&env.home)
            .arg("-d")
            .arg(repo)
            .args(["ls", "files"])
            .run()
            .success()
            .lines()
    };
    let snapshots = listing(&dest);
    assert_eq!(snapshot_names(&snapshots).len(), 2, "{snapshots:?}");
    assert_eq!(snapshots, listing(&env.repo));
    let a = Rw::bare(&env.home)
        .arg("-d")
        .arg(&dest)
        .arg("cat-file")
        .arg(snap_path("files", "latest", &env.path("data/a.txt")))
        .run()
        .success();
    assert_eq!(a.stdout, b"alpha\n");
}

/// A push that fails (here: the key file is gone) fails the run like a
/// failed gc, after the backups, which stay; the dry run and config check
/// say so beforehand.
#[test]
fn a_failed_mirror_push_fails_the_run_and_keeps_its_backups() {
    let env = Env::init();
    let key = env.path("no-such.key");
    let url = format!("file://{}", env.path("bucket").display());
    let config = mirrored_backup(
        &env,
        &format!(
            "url = \"{url}\"\nkey = \"{}\"\nday = \"daily\"\n",
            key.display()
        ),
    );
    let out = rw_config(&env, &config).args(["-q", "run"]).run().status(2);
    assert!(
        out.stderr.contains(&format!(
            "mirror push to {url} FAILED: mirror key file {}: cannot read it",
            key.display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("run: 1 of 1 backup failed (mirror)"),
        "{}",
        out.stderr
    );
    assert_eq!(branch_commits(&env.repo, "files").len(), 1, "backup kept");
    assert!(!env.path("bucket/rewind-mirror").exists());

    let dry = rw_config(&env, &config)
        .args(["run", "--dry-run"])
        .run()
        .status(2);
    assert!(
        dry.stderr.contains("mirror: would FAIL: mirror key file")
            && dry.stderr.contains("the run would FAIL (the mirror)"),
        "{}",
        dry.stderr
    );
    let check = rw_config(&env, &config)
        .args(["config", "check"])
        .run()
        .status(2);
    assert!(
        check.stderr.contains(&format!(
            "mirror key file {}: cannot read it",
            key.display()
        )),
        "{}",
        check.stderr
    );
    // Fixed, the next run pushes.
    let key = mirror_key(&env);
    let config = mirrored_backup(
        &env,
        &format!(
            "url = \"{url}\"\nkey = \"{}\"\nday = \"daily\"\n",
            key.display()
        ),
    );
    rw_config(&env, &config).args(["-q", "run"]).run().success();
    assert!(env.path("bucket/rewind-mirror").is_file());
}

/// On any other day than its own, the run leaves the mirror alone.
#[test]
fn the_mirror_is_pushed_only_on_its_day() {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let env = Env::init();
    let url = format!("file://{}", env.path("bucket").display());
    // The tests run rewind with TZ=UTC. Three days on: neither today nor
    // tomorrow, should the test cross midnight.
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86400;
    let other = DAYS[((days + 3 + 3) % 7) as usize];
    let config = mirrored_backup(
        &env,
        &format!("url = \"{url}\"\nplain = true\nday = \"{other}\"\n"),
    );
    let dry = rw_config(&env, &config)
        .args(["run", "--dry-run"])
        .run()
        .success();
    assert!(
        dry.stdout_str()
            .contains(&format!("mirror: not today (pushes on {other}s to {url})")),
        "{}",
        dry.stdout_str()
    );
    let out = rw_config(&env, &config).arg("run").run().success();
    assert!(
        out.stderr
            .contains(&format!("mirror: not today (pushes on {other}s)")),
        "{}",
        out.stderr
    );
    assert!(!env.path("bucket").exists(), "pushed on the wrong day");
    assert_eq!(branch_commits(&env.repo, "files").len(), 1);
}
