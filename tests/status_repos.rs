//! `rewind status` on a backup server: from repositories alone, without a
//! configuration file, one repository (`-d`) or every repository under a
//! directory (`--repos`), with Nagios states, exit codes and JSON.

mod common;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `rewind` on a host without a configuration file: the default one must
/// be missing (a backup server has none), and none is named.
fn rw(env: &Env) -> Rw {
    assert!(
        !Path::new("/etc/rewind.toml").exists() && std::env::var_os("REWIND_CONFIG").is_none(),
        "these tests need a host without /etc/rewind.toml and REWIND_CONFIG"
    );
    Rw::bare(&env.home)
}

fn json(out: &Out) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout_str()))
}

/// `<root>/backups/{web,db,new}`: web saved now (names `etc`, `www`), db
/// saved three days ago (name `pg`), new never saved.
fn server(env: &Env) -> std::path::PathBuf {
    let data = env.path("data");
    mkdir(&data);
    write(&data.join("f"), b"0123456789");
    let backups = env.path("backups");
    let save = |repo: &str, name: &str, date: Option<String>| {
        let mut r = rw(env)
            .arg("-d")
            .arg(backups.join(repo))
            .args(["save", "-q", "-n", name]);
        if let Some(d) = date {
            r = r.args(["--date", &d]);
        }
        r.arg(&data).run().success();
    };
    for repo in ["web", "db", "new"] {
        rw(env)
            .arg("-d")
            .arg(backups.join(repo))
            .args(["-q", "init"])
            .run()
            .success();
    }
    save("web", "etc", None);
    save("web", "www", None);
    save("db", "pg", Some((now() - 3 * 86400).to_string()));
    // Not repositories: skipped without a word.
    mkdir(&backups.join("lost+found"));
    write(&backups.join("README"), b"one repository per instance\n");
    backups
}

#[test]
fn status_repos_reports_every_name_of_every_repository() {
    let env = Env::new();
    let backups = server(&env);
    let out = rw(&env)
        .arg("status")
        .arg("--repos")
        .arg(&backups)
        .run()
        .status(2);
    let lines = out.lines();
    assert!(
        lines[0].starts_with("CRITICAL: db/pg: newest snapshot is 3d")
            && lines[0].contains(
                "(max-age 1d2h); new: no snapshot yet: the repository has never been saved to | "
            )
            && lines[0].contains(" web/www_age="),
        "{}",
        out.stdout_str()
    );
    let rows: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t[0].to_string(), t[1].to_string())
        })
        .collect();
    let expect = [
        ("db/pg", "CRITICAL"),
        ("new", "WARNING"),
        ("web/etc", "OK"),
        ("web/www", "OK"),
    ];
    assert_eq!(
        rows,
        expect.map(|(a, b)| (a.to_string(), b.to_string())),
        "{}",
        out.stdout_str()
    );

    let j = json(
        &rw(&env)
            .arg("status")
            .arg("--repos")
            .arg(&backups)
            .arg("--json")
            .run()
            .status(2),
    );
    assert_eq!(j["state"], "CRITICAL");
    assert_eq!(j["error"], Value::Null);
    let b = j["backups"].as_array().unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(b[0]["name"], "db/pg");
    assert_eq!(b[0]["repository"], "db");
    assert_eq!(b[0]["backup"], "pg");
    assert!(b[0]["age_seconds"].as_i64().unwrap() >= 3 * 86400);
    assert_eq!(b[0]["max_age_seconds"], 26 * 3600);
    assert_eq!(b[1]["name"], "new");
    assert_eq!(b[1]["state"], "WARNING");
    assert_eq!(b[1]["backup"], Value::Null);
    assert_eq!(b[1]["snapshot"], Value::Null);
    assert_eq!(b[3]["name"], "web/www");
    assert_eq!(b[3]["state"], "OK");

    // A max-age that covers db leaves the never-saved repository: WARNING.
    let out = rw(&env)
        .arg("status")
        .arg("--repos")
        .arg(&backups)
        .args(["--max-age", "4d"])
        .run()
        .status(1);
    assert!(
        out.lines()[0].starts_with("WARNING: new: no snapshot yet"),
        "{}",
        out.stdout_str()
    );
    // Once it saved, everything is OK.
    rw(&env)
        .arg("-d")
        .arg(backups.join("new"))
        .args(["save", "-q", "-n", "home"])
        .arg(env.path("data"))
        .run()
        .success();
    let out = rw(&env)
        .arg("status")
        .arg("--repos")
        .arg(&backups)
        .args(["--max-age", "4d"])
        .run()
        .status(0);
    assert!(
        out.lines()[0].starts_with("OK: 4 backups fresh"),
        "{}",
        out.stdout_str()
    );
}

#[test]
fn status_repos_reports_a_damaged_repository_as_unknown_and_the_others_still() {
    let env = Env::new();
    let backups = server(&env);
    fs::create_dir_all(backups.join("web/rewind")).unwrap();
    fs::write(backups.join("web/rewind/runs.toml"), "backup = [").unwrap();
    let out = rw(&env)
        .arg("status")
        .arg("--repos")
        .arg(&backups)
        .args(["--max-age", "4d"])
        .run()
        .status(3);
    let lines = out.lines();
    assert!(lines[0].starts_with("UNKNOWN: "), "{}", out.stdout_str());
    let web = lines
        .iter()
        .find(|l| l.starts_with("web "))
        .expect("a web row");
    assert!(
        web.contains("UNKNOWN") && web.contains("runs.toml are damaged"),
        "{web}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("db/pg ") && l.contains(" OK ")),
        "{}",
        out.stdout_str()
    );
}

#[test]
fn status_repos_with_d_is_a_usage_error() {
    let env = Env::new();
    let backups = server(&env);
    let out = rw(&env)
        .arg("-d")
        .arg(backups.join("web"))
        .arg("status")
        .arg("--repos")
        .arg(&backups)
        .run()
        .status(2);
    assert!(
        out.error_line().contains("give one of them"),
        "{}",
        out.stderr
    );
    // REWIND_REPO (a user's everyday repository) does not count as -d.
    rw(&env)
        .env("REWIND_REPO", backups.join("web"))
        .arg("status")
        .arg("--repos")
        .arg(&backups)
        .args(["--max-age", "4d"])
        .run()
        .status(1);
    // A directory without repositories is not healthy.
    let empty = env.path("empty");
    mkdir(&empty);
    let out = rw(&env)
        .arg("status")
        .arg("--repos")
        .arg(&empty)
        .run()
        .status(3);
    assert!(
        out.lines()[0].starts_with("UNKNOWN: no repositories under"),
        "{}",
        out.stdout_str()
    );
}

#[test]
fn status_without_a_config_file_reports_the_repository_names() {
    let env = Env::new();
    let backups = server(&env);
    // Was UNKNOWN ("no configuration at /etc/rewind.toml").
    let out = rw(&env)
        .arg("-d")
        .arg(backups.join("web"))
        .arg("status")
        .run()
        .status(0);
    assert!(
        out.lines()[0].starts_with("OK: 2 backups fresh"),
        "{}",
        out.stdout_str()
    );
    assert!(out.lines()[1].starts_with("etc "), "{}", out.stdout_str());
    let out = rw(&env)
        .arg("-d")
        .arg(backups.join("db"))
        .arg("status")
        .run()
        .status(2);
    assert!(
        out.lines()[0].starts_with("CRITICAL: pg: newest snapshot is 3d"),
        "{}",
        out.stdout_str()
    );
    rw(&env)
        .arg("-d")
        .arg(backups.join("db"))
        .args(["status", "--max-age", "4d"])
        .run()
        .status(0);
    let j = json(
        &rw(&env)
            .arg("-d")
            .arg(backups.join("new"))
            .args(["status", "--json"])
            .run()
            .status(1),
    );
    assert_eq!(j["state"], "WARNING");
    assert_eq!(
        j["backups"][0]["reason"],
        "no snapshot yet: the repository has never been saved to"
    );
    // A config file naming another repository: -d's own names are reported.
    let cfg = env.path("rewind.toml");
    fs::write(
        &cfg,
        format!(
            "repository = \"{}\"\n[[backup]]\nname = \"other\"\npaths = [\"/etc\"]\n",
            backups.join("db").display()
        ),
    )
    .unwrap();
    let out = rw(&env)
        .arg("--config")
        .arg(&cfg)
        .arg("-d")
        .arg(backups.join("web"))
        .arg("status")
        .run()
        .status(0);
    assert!(
        out.lines()[0].starts_with("OK: 2 backups fresh"),
        "{}",
        out.stdout_str()
    );
    // ... and the configured repository still gets the configured backups.
    let out = rw(&env)
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .run()
        .status(2);
    assert!(
        out.lines()[0].starts_with("CRITICAL: other: no snapshot yet"),
        "{}",
        out.stdout_str()
    );
    // A configuration named explicitly but missing is still UNKNOWN.
    let out = rw(&env)
        .arg("--config")
        .arg(env.path("missing.toml"))
        .arg("-d")
        .arg(backups.join("web"))
        .arg("status")
        .run()
        .status(3);
    assert!(
        out.lines()[0].starts_with("UNKNOWN: no configuration at"),
        "{}",
        out.stdout_str()
    );
}
