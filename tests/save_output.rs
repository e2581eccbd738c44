//! What `rewind save` prints: the one-line summary under cron (no terminal,
//! so no progress bar), nothing with `--quiet`, and with `--json` a single
//! JSON object on stdout that scripts can parse, whose figures are checked
//! here against the source tree and the repository (not against rewind).
//!
//! Tests run with stdout and stderr on pipes, exactly the situation of a
//! cron job: any progress output would show up in the captured stderr.

mod common;
use common::*;
use serde_json::Value;
use std::fs;

/// A small tree: `n` files of known sizes in two directories.
fn make_tree(env: &Env, n: usize) -> (std::path::PathBuf, u64) {
    let src = env.path("src");
    let mut total = 0u64;
    for i in 0..n {
        let dir = src.join(if i % 2 == 0 { "even" } else { "odd" });
        fs::create_dir_all(&dir).expect("mkdir");
        let len = 1000 + i * 37;
        write_random(&dir.join(format!("f{i}")), i as u64, len);
        total += len as u64;
    }
    (src, total)
}

fn parse_json(out: &Out) -> Value {
    let text = out.stdout_str();
    assert_eq!(
        text.lines().count(),
        1,
        "--json must print exactly one line on stdout, got:\n{text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{text}"))
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} missing or not a string in {v}"))
}

#[test]
fn save_json_is_one_object_with_the_outcome() {
    let env = Env::init();
    let (src, total) = make_tree(&env, 20);
    let out = env
        .rw()
        .args(["save", "-n", "web", "--json", "--strip"])
        .arg(&src)
        .run()
        .success();
    // Machine output: no summary line, no progress, nothing on stderr.
    assert_eq!(out.stderr, "", "stderr with --json");
    let v = parse_json(&out);

    assert_eq!(str_field(&v, "name"), "web");
    let snapshot = str_field(&v, "snapshot");
    assert!(is_snapshot_name(snapshot), "snapshot {snapshot:?}");
    let listed = env.rw().args(["ls", "web"]).run().success().lines();
    assert!(
        snapshot_names(&listed).iter().any(|s| s == snapshot),
        "snapshot {snapshot} not in `rewind ls web`: {listed:?}"
    );
    assert_eq!(utc_snapshot_name(u64_field(&v, "time") as i64), snapshot);

    let tip = branch_tip(&env.repo, "web").expect("branch exists");
    assert_eq!(str_field(&v, "commit"), tip);
    let tree = run(git(&env.repo).args(["rev-parse", &format!("{tip}^{{tree}}")]))
        .success()
        .stdout_str();
    assert_eq!(str_field(&v, "tree"), tree.trim());

    assert_eq!(u64_field(&v, "files"), 20);
    // The root, `even` and `odd`.
    assert_eq!(u64_field(&v, "directories"), 3);
    assert_eq!(u64_field(&v, "bytes_read"), total);
    // Random content: everything is new, plus trees, .bupm and the commit.
    assert!(u64_field(&v, "bytes_added") > total, "{v}");
    assert!(u64_field(&v, "objects_added") > 20, "{v}");
    let secs = v
        .get("duration_seconds")
        .and_then(Value::as_f64)
        .expect("duration_seconds");
    assert!((0.0..300.0).contains(&secs), "{secs}");
    assert_eq!(str_field(&v, "status"), "success");
    assert_eq!(v.get("warnings"), Some(&Value::Array(vec![])));
    // Present even when the save cannot tell new from changed files.
    for key in ["files_new", "files_changed", "files_unchanged"] {
        let field = v.get(key).unwrap_or_else(|| panic!("{key} missing in {v}"));
        assert!(field.is_null() || field.is_u64(), "{key}: {field}");
    }

    // An unchanged re-save adds almost nothing (no file content).
    let again = env
        .rw()
        .args(["save", "-n", "web", "--json", "--strip"])
        .arg(&src)
        .run()
        .success();
    let v2 = parse_json(&again);
    assert_eq!(u64_field(&v2, "files"), 20);
    assert!(u64_field(&v2, "bytes_added") < total / 10, "{v2}");
    assert_ne!(str_field(&v2, "commit"), str_field(&v, "commit"));
    assert_eq!(
        branch_tip(&env.repo, "web").as_deref(),
        Some(str_field(&v2, "commit"))
    );
}

#[test]
fn save_json_still_prints_with_quiet() {
    let env = Env::init();
    let (src, _) = make_tree(&env, 3);
    let out = env
        .rw()
        .args(["-q", "save", "-n", "q", "--json"])
        .arg(&src)
        .run()
        .success();
    assert_eq!(out.stderr, "");
    assert_eq!(u64_field(&parse_json(&out), "files"), 3);
}

#[test]
fn failed_save_with_json_prints_no_json() {
    let env = Env::init();
    let out = env
        .rw()
        .args(["save", "-n", "x", "--json"])
        .arg(env.path("does-not-exist"))
        .run()
        .status(2);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout_str());
    assert!(out.stderr.contains("does-not-exist"), "{}", out.stderr);
}

#[test]
fn without_a_terminal_stderr_has_only_the_summary_line() {
    let env = Env::init();
    let (src, _) = make_tree(&env, 50);
    // Even a terminal type that could draw must not matter: stderr is a pipe.
    let out = env
        .rw()
        .env("TERM", "xterm-256color")
        .args(["save", "-n", "cron"])
        .arg(&src)
        .run()
        .success();
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout_str());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr:\n{}", out.stderr);
    assert!(
        lines[0].starts_with("saved cron/") && lines[0].contains("50 files"),
        "summary: {}",
        lines[0]
    );
    // No cursor movement or carriage returns from a progress bar.
    assert!(
        !out.stderr.contains('\r') && !out.stderr.contains('\x1b'),
        "control characters on stderr: {:?}",
        out.stderr
    );
}

#[test]
fn quiet_save_prints_nothing() {
    let env = Env::init();
    let (src, _) = make_tree(&env, 5);
    let out = env
        .rw()
        .args(["save", "-q", "-n", "silent"])
        .arg(&src)
        .run()
        .success();
    assert_eq!(out.stderr, "");
    assert!(out.stdout.is_empty());
}

/// Issue 16: the summary counted symlinks as files and said "1 files".
/// Three files, one symlink, two directories (the root and `sub`): each
/// counted apart and in the right number; --json says the same.
#[test]
fn summary_counts_symlinks_apart_and_says_one_file_in_the_singular() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src.join("sub"));
    write(&src.join("a"), b"a\n");
    write(&src.join("b"), b"b\n");
    write(&src.join("sub/c"), b"c\n");
    std::os::unix::fs::symlink("a", src.join("link")).expect("symlink");
    let save = |name: &str, dir: &std::path::Path, json: bool| {
        let mut rw = env.rw();
        rw = rw.args(["save", "-n", name, "--strip"]);
        if json {
            rw = rw.arg("--json");
        }
        rw.arg(dir).run().success()
    };
    let summary = |name: &str, dir: &std::path::Path| save(name, dir, false).stderr;
    let out = summary("mixed", &src);
    assert!(
        out.contains(": 3 files (3 read, 0 unchanged), 1 symlink, 2 directories, "),
        "{out}"
    );
    let v = parse_json(&save("mixed", &src, true));
    assert_eq!(u64_field(&v, "files"), 3);
    assert_eq!(u64_field(&v, "symlinks"), 1);
    assert_eq!(u64_field(&v, "directories"), 2);

    // One file in one directory: both in the singular, no symlinks named.
    let one = env.path("one");
    mkdir(&one);
    write(&one.join("only"), b"only\n");
    let out = summary("one", &one);
    assert!(
        out.contains(": 1 file (1 read, 0 unchanged), 1 directory, ") && !out.contains("symlink"),
        "{out}"
    );
}
