//! `rewind mirror` against a real S3 server (s3s-fs on 127.0.0.1, which
//! checks every request's signature): what a push sends and skips, a pull
//! that git, bup and rewind accept, a push killed mid-upload and resumed,
//! the grace period of gc'd packs, damage found by verify, a whole server
//! round trip, and one clear line for each fault.

mod common;

use common::s3::S3Server;
use common::{run, Env, Out};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BUCKET: &str = "offsite";

/// A repository with one saved tree, an S3 server with a bucket, and a key.
struct Fixture {
    env: Env,
    s3: S3Server,
    key: PathBuf,
    data: PathBuf,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let s3 = S3Server::start()?;
        s3.create_bucket(BUCKET);
        let env = Env::init();
        let data = env.path("data");
        fs::create_dir_all(data.join("db")).unwrap();
        common::write_random(&data.join("db/dump.sql"), 1, 3 << 20);
        fs::write(data.join("notes.txt"), "hello from the web server\n").unwrap();
        env.save("web", Some("1700000000"), &data);
        let key = env.path("mirror.key");
        env.rw()
            .args(["mirror", "keygen"])
            .arg(&key)
            .run()
            .success();
        Some(Fixture { env, s3, key, data })
    }

    fn url(&self, prefix: &str) -> String {
        self.s3.url(BUCKET, prefix)
    }

    /// `rewind -d REPO mirror SUB ...` with the server's environment and
    /// `--key` added.
    fn mirror(&self, sub: &str, args: &[&str]) -> Command {
        let mut cmd = self.env.rw().args(["mirror", sub]).args(args).command();
        cmd.arg("--key").arg(&self.key);
        self.s3.apply(&mut cmd);
        cmd
    }

    /// `count` more saves (names `big0`...), each of one random 24 MiB
    /// file (seeds from `seed`), so each makes a pack of its own.
    fn save_big_files(&self, count: u64, seed: u64) {
        for i in 0..count {
            let dir = self.env.path(&format!("more{i}"));
            fs::create_dir_all(&dir).unwrap();
            common::write_random(&dir.join("blob"), seed + i, 24 << 20);
            self.env.save(&format!("big{i}"), Some("1700000100"), &dir);
        }
    }

    fn push(&self, prefix: &str) -> Out {
        run(&mut self.mirror("push", &[&self.url(prefix)]))
    }
}

/// The objects (keys) under `prefix/` in the bucket, the manifest aside.
fn data_objects(s3: &S3Server, prefix: &str) -> Vec<String> {
    s3.list_prefix(BUCKET, prefix)
        .into_iter()
        .filter(|k| !k.ends_with("rewind-mirror"))
        .collect()
}

/// "N objects sent (...), M already there": (N, M) from a push's summary.
fn sent_and_skipped(out: &Out) -> (u64, u64) {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("mirror push"))
        .unwrap_or_else(|| panic!("no summary line in:\n{}", out.stderr));
    let number_before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {line}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number before {word:?} in {line}"))
    };
    (
        number_before("objects sent"),
        number_before("already there"),
    )
}

fn pack_files(repo: &Path) -> Vec<String> {
    common::pack_dir_listing(repo)
        .into_iter()
        .filter(|n| n.ends_with(".pack") || n.ends_with(".idx"))
        .collect()
}

fn assert_restores_same(env: &Env, repo: &Path, snap: &str, expected: &Path) {
    let out = env.path(&format!(
        "restored-{}",
        repo.file_name().unwrap().to_string_lossy()
    ));
    common::Rw::bare(&env.home)
        .arg("-d")
        .arg(repo)
        .args(["restore", "--outdir"])
        .arg(&out)
        .arg(format!("web/{snap}/"))
        .run()
        .success();
    let inner = out.join(expected.strip_prefix("/").unwrap());
    let diff = run(Command::new("diff").arg("-r").arg(expected).arg(&inner));
    assert_eq!(diff.code, 0, "restore differs:\n{}", diff.stdout_str());
}

#[test]
fn push_sends_each_object_once_and_only_what_is_new() {
    let Some(f) = Fixture::new() else { return };
    let first = f.push("web").success();
    let (sent, skipped) = sent_and_skipped(&first);
    let local = pack_files(&f.env.repo);
    assert_eq!(sent as usize, local.len(), "{}", first.stderr);
    assert_eq!(skipped, 0);
    assert_eq!(data_objects(&f.s3, "web").len(), local.len());

    let again = f.push("web").success().stderr_contains("nothing new");
    assert_eq!(sent_and_skipped(&again), (0, 0));

    // A next-day save adds one pack and its index: only those go.
    common::write_random(&f.data.join("db/new.sql"), 2, 1 << 20);
    f.env.save("web", Some("1700086400"), &f.data);
    let after = f.push("web").success();
    assert_eq!(sent_and_skipped(&after), (2, 0), "{}", after.stderr);
    assert_eq!(data_objects(&f.s3, "web").len(), local.len() + 2);
}

#[test]
fn bucket_names_and_bytes_reveal_no_path_or_content() {
    let Some(f) = Fixture::new() else { return };
    f.push("web").success();
    let manifest = fs::read(f.s3.object_file(BUCKET, "web/rewind-mirror")).unwrap();
    assert!(manifest.starts_with(b"age-encryption.org/v1\n"));
    for key in data_objects(&f.s3, "web") {
        assert!(!key.contains("pack") && !key.contains("idx"), "{key}");
        let bytes = fs::read(f.s3.object_file(BUCKET, &key)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{key}");
        assert!(
            !bytes.windows(4).any(|w| w == b"PACK" || w == b"\xfftOc"),
            "{key} holds a clear pack or index header"
        );
    }
}

#[test]
fn an_object_decrypts_with_the_age_tool_and_the_key_file_alone() {
    let Some(f) = Fixture::new() else { return };
    let Some(age) = common::find_tool("age") else {
        common::cannot_run("the age tool", "apt-get install age");
        return;
    };
    f.push("web").success();
    // The manifest says which object is which file.
    let manifest = run(Command::new(&age)
        .arg("-d")
        .arg("-i")
        .arg(&f.key)
        .arg(f.s3.object_file(BUCKET, "web/rewind-mirror")))
    .success();
    let text = manifest.stdout_str();
    assert!(text.starts_with("rewind-mirror 1\n"), "{text}");
    assert!(
        text.contains("ref ") && text.contains("refs/heads/web"),
        "{text}"
    );
    let pack = pack_files(&f.env.repo)
        .into_iter()
        .find(|n| n.ends_with(".pack"))
        .unwrap();
    let pack_path = format!("objects/pack/{pack}");
    assert!(text.contains(&pack_path), "{text}");
    // Its line names the object that holds it: `file HASH SIZE STORED OBJECT PATH`.
    let line = text
        .lines()
        .find(|l| l.starts_with("file ") && l.ends_with(&pack_path))
        .unwrap_or_else(|| panic!("no line for {pack_path} in {text}"));
    let object = line.split(' ').nth(4).unwrap();
    let decrypted = run(Command::new(&age)
        .arg("-d")
        .arg("-i")
        .arg(&f.key)
        .arg(f.s3.object_file(BUCKET, &format!("web/{object}"))))
    .success();
    let found = decrypted.stdout == fs::read(f.env.repo.join(&pack_path)).unwrap();
    assert!(found, "no object decrypts to {pack_path}");
}

#[test]
fn pull_into_an_empty_folder_gives_a_repository_git_bup_and_rewind_read() {
    let Some(f) = Fixture::new() else { return };
    f.push("web").success();
    let pulled = f.env.path("pulled");
    let mut cmd = f.mirror("pull", &[&f.url("web")]);
    cmd.arg(&pulled);
    run(&mut cmd).success();
    common::assert_fsck(&pulled, false);
    let snap = common::utc_snapshot_name(1_700_000_000);
    assert_restores_same(&f.env, &pulled, &snap, &f.data);
    let ls = run(common::bup(&pulled, &f.env.home).args(["ls", "web"])).success();
    assert!(ls.stdout_str().contains(&snap), "{}", ls.stdout_str());
    let bup_out = f.env.path("bup-restored");
    run(common::bup(&pulled, &f.env.home)
        .args(["restore", "-C"])
        .arg(&bup_out)
        .arg(format!("web/{snap}/")))
    .success();
    assert!(
        common::compare_trees(&f.data, &bup_out.join(f.data.strip_prefix("/").unwrap())).is_empty()
    );

    // A pull never lands on an existing repository.
    let mut again = f.mirror("pull", &[&f.url("web")]);
    again.arg(&pulled);
    run(&mut again)
        .status(2)
        .stderr_contains("is a repository already");
    // A pull killed before its HEAD is finished by the next, which keeps
    // the files that arrived whole.
    fs::remove_file(pulled.join("HEAD")).unwrap();
    let idx = pack_files(&pulled)
        .into_iter()
        .find(|n| n.ends_with(".idx"))
        .unwrap();
    fs::remove_file(pulled.join("objects/pack").join(&idx)).unwrap();
    let mut resume = f.mirror("pull", &[&f.url("web")]);
    resume.arg(&pulled);
    let out = run(&mut resume).success();
    let kept = pack_files(&f.env.repo).len() - 1;
    assert!(
        out.stderr.contains("1 objects received") && out.stderr.contains(&format!("{kept} kept")),
        "{}",
        out.stderr
    );
    common::assert_fsck(&pulled, false);
    // Nor in a folder that holds something else.
    let busy = f.env.path("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("keep.txt"), "mine").unwrap();
    let mut busy_pull = f.mirror("pull", &[&f.url("web")]);
    busy_pull.arg(&busy);
    run(&mut busy_pull)
        .status(2)
        .stderr_contains("is not empty");
    assert_eq!(fs::read_dir(&busy).unwrap().count(), 1);
}

#[test]
fn a_push_killed_mid_upload_is_completed_by_the_next_without_resending() {
    let Some(f) = Fixture::new() else { return };
    // Several packs of a few MiB each: some arrive before the kill.
    f.save_big_files(6, 100);
    let mut cmd = f.mirror("push", &[&f.url("web"), "--jobs", "2"]);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once at least one object has arrived, before the manifest.
    let started = Instant::now();
    while data_objects(&f.s3, "web").is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) with a pid we spawned and have not waited for yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let arrived = data_objects(&f.s3, "web").len();
    assert!(arrived > 0, "nothing arrived before the kill");
    assert!(
        !f.s3.object_file(BUCKET, "web/rewind-mirror").exists(),
        "the manifest was written before every object arrived"
    );
    let resumed = f.push("web").success();
    let (sent, skipped) = sent_and_skipped(&resumed);
    let total = pack_files(&f.env.repo).len() as u64;
    assert_eq!(sent + skipped, total, "{}", resumed.stderr);
    assert!(
        skipped >= arrived as u64 && skipped > 0,
        "{}",
        resumed.stderr
    );
    run(&mut f.mirror("verify", &[&f.url("web")])).success();
}

#[test]
fn a_server_killed_mid_push_fails_the_push_and_the_next_completes_it() {
    let Some(mut f) = Fixture::new() else { return };
    f.save_big_files(4, 200);
    let mut cmd = f.mirror("push", &[&f.url("web"), "--jobs", "2"]);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while data_objects(&f.s3, "web").is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    f.s3.stop();
    let failed = common::finish(child, "mirror push");
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(failed.stderr.contains("cannot reach"), "{}", failed.stderr);
    f.s3.restart();
    f.push("web").success();
    run(&mut f.mirror("verify", &[&f.url("web")])).success();
}

#[test]
fn a_server_killed_mid_pull_is_a_transfer_error_and_the_next_pull_keeps_what_arrived() {
    let Some(mut f) = Fixture::new() else { return };
    f.save_big_files(6, 300);
    f.push("web").success();
    let pulled = f.env.path("pulled");
    let mut cmd = f.mirror("pull", &[&f.url("web"), "--jobs", "1"]);
    let child = cmd
        .arg(&pulled)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once a pack arrived whole and the next is arriving.
    let pack_dir = pulled.join("objects/pack");
    let mid_transfer = || {
        let Ok(entries) = fs::read_dir(&pack_dir) else {
            return false;
        };
        let (mut whole, mut arriving) = (false, false);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            whole |= name.ends_with(".pack");
            arriving |= name.starts_with(".mirror-pull-")
                && entry.metadata().is_ok_and(|m| m.len() > 4 << 20);
        }
        whole && arriving
    };
    let started = Instant::now();
    while !mid_transfer() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    f.s3.stop();
    let failed = common::finish(child, "mirror pull");
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(
        !failed.stderr.contains("damaged") && failed.stderr.contains(BUCKET),
        "a cut transfer must not read as damage:\n{}",
        failed.stderr
    );
    assert!(!pulled.join("HEAD").exists());
    f.s3.restart();
    let mut resume = f.mirror("pull", &[&f.url("web")]);
    let out = run(resume.arg(&pulled)).success();
    let kept: u64 = out
        .stderr
        .split(" kept")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no kept count in:\n{}", out.stderr));
    assert!(kept >= 1, "{}", out.stderr);
    common::assert_fsck(&pulled, false);
    let snap = common::utc_snapshot_name(1_700_000_000);
    assert_restores_same(&f.env, &pulled, &snap, &f.data);
}

#[test]
fn packs_gc_removed_stay_in_the_bucket_for_the_grace_period() {
    let Some(f) = Fixture::new() else { return };
    // Two more snapshots, then keep only the newest: gc removes packs.
    for day in 1..=2i64 {
        common::write_random(&f.data.join(format!("day{day}")), 300 + day as u64, 2 << 20);
        f.env.save(
            "web",
            Some(&(1_700_000_000 + day * 86_400).to_string()),
            &f.data,
        );
    }
    fs::remove_file(f.data.join("db/dump.sql")).unwrap();
    f.env.save(
        "web",
        Some(&(1_700_000_000 + 3 * 86_400).to_string()),
        &f.data,
    );
    run(&mut f.mirror("push", &[&f.url("web")])).success();
    let before: Vec<String> = data_objects(&f.s3, "web");
    f.env
        .rw()
        .args(["prune", "--keep-last", "1"])
        .run()
        .success();
    f.env.rw().args(["gc", "--threshold", "0"]).run().success();

    run(&mut f.mirror("push", &[&f.url("web"), "--grace", "3s"])).success();
    let kept = data_objects(&f.s3, "web");
    for key in &before {
        assert!(
            kept.contains(key),
            "{key} was deleted before its grace period"
        );
    }
    let status = run(&mut f.mirror("status", &[&f.url("web"), "--json"])).success();
    assert!(
        status.stdout_str().contains("\"in_sync\":true"),
        "{}",
        status.stdout_str()
    );

    std::thread::sleep(Duration::from_secs(4));
    let late = run(&mut f.mirror("push", &[&f.url("web"), "--grace", "3s"])).success();
    assert!(!late.stderr.contains(" 0 deleted"), "{}", late.stderr);
    let after = data_objects(&f.s3, "web");
    assert_eq!(after.len(), pack_files(&f.env.repo).len(), "{after:?}");
    run(&mut f.mirror("verify", &[&f.url("web")])).success();
    let pulled = f.env.path("pulled");
    let mut pull = f.mirror("pull", &[&f.url("web")]);
    pull.arg(&pulled);
    run(&mut pull).success();
    common::assert_fsck(&pulled, false);
}

#[test]
fn verify_finds_a_damaged_and_a_missing_object() {
    let Some(f) = Fixture::new() else { return };
    f.push("web").success();
    run(&mut f.mirror("verify", &[&f.url("web")])).success();
    let objects = data_objects(&f.s3, "web");
    let damaged = f.s3.object_file(BUCKET, &objects[0]);
    let mut bytes = fs::read(&damaged).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x40;
    fs::write(&damaged, bytes).unwrap();
    let out = run(&mut f.mirror("verify", &[&f.url("web")]))
        .status(1)
        .stderr_contains("damaged");
    assert!(out.stderr.contains(&objects[0]), "{}", out.stderr);
    fs::remove_file(f.s3.object_file(BUCKET, &objects[1])).unwrap();
    let out = run(&mut f.mirror("verify", &[&f.url("web")])).status(1);
    assert!(out.stderr.contains("2 of"), "{}", out.stderr);
    // A pull refuses the damaged object instead of writing it.
    let mut pull = f.mirror("pull", &[&f.url("web")]);
    pull.arg(f.env.path("pulled"));
    run(&mut pull).status(2);
    assert!(!f.env.path("pulled/HEAD").exists());
}

#[test]
fn a_whole_server_round_trips_with_all() {
    let Some(f) = Fixture::new() else { return };
    let server = f.env.path("srv");
    for name in ["web", "db", "build"] {
        let repo = server.join(name);
        common::Rw::bare(&f.env.home)
            .arg("-d")
            .arg(&repo)
            .arg("init")
            .run()
            .success();
        let data = f.env.path(&format!("data-{name}"));
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("what"), name).unwrap();
        common::Rw::bare(&f.env.home)
            .arg("-d")
            .arg(&repo)
            .args(["save", "-n", name])
            .arg(&data)
            .run()
            .success();
    }
    // `--all` names the repositories: no -d.
    let whole = |sub: &str, dir: &Path| {
        let mut cmd = common::Rw::bare(&f.env.home)
            .args(["mirror", sub, &f.url(""), "--all"])
            .arg(dir)
            .arg("--key")
            .arg(&f.key)
            .command();
        f.s3.apply(&mut cmd);
        cmd
    };
    let out = run(&mut whole("push", &server)).success();
    assert_eq!(
        out.stderr.matches("mirror push").count(),
        3,
        "{}",
        out.stderr
    );
    let out = run(&mut whole("status", &server)).success();
    assert!(
        out.stdout_str().starts_with("MIRROR OK"),
        "{}",
        out.stdout_str()
    );

    let rebuilt = f.env.path("rebuilt");
    run(&mut whole("pull", &rebuilt)).success();
    for name in ["web", "db", "build"] {
        let repo = rebuilt.join(name);
        common::assert_fsck(&repo, false);
        let out = common::Rw::bare(&f.env.home)
            .arg("-d")
            .arg(&repo)
            .args(["cat-file"])
            .arg(format!(
                "{name}/latest/{}/what",
                f.env
                    .path(&format!("data-{name}"))
                    .display()
                    .to_string()
                    .trim_start_matches('/')
            ))
            .run()
            .success();
        assert_eq!(out.stdout, name.as_bytes());
    }
}

#[test]
fn status_says_what_is_not_pushed_yet() {
    let Some(f) = Fixture::new() else { return };
    let none = run(&mut f.mirror("status", &[&f.url("web")])).status(2);
    assert!(
        none.stdout_str().contains("never pushed"),
        "{}",
        none.stdout_str()
    );
    f.push("web").success();
    common::write_random(&f.data.join("db/new.sql"), 9, 1 << 20);
    f.env.save("web", Some("1700086400"), &f.data);
    // Behind, but the last push is recent: OK, and it says what is behind.
    let behind = run(&mut f.mirror("status", &[&f.url("web")])).success();
    assert!(
        behind.stdout_str().contains("2 files"),
        "{}",
        behind.stdout_str()
    );
    let json =
        run(&mut f.mirror("status", &[&f.url("web"), "--json", "--max-age", "0s"])).status(2);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["state"], "CRITICAL");
    assert_eq!(v["mirrors"][0]["files_behind"], 2);
    assert_eq!(v["mirrors"][0]["in_sync"], false);
}

// Faults: one line each, exit 2, the repository untouched.

fn assert_one_clear_line(out: &Out, needle: &str) {
    assert_eq!(out.code, 2, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains(needle), "{needle:?} not in {}", lines[0]);
}

#[test]
fn wrong_credentials_are_named() {
    let Some(f) = Fixture::new() else { return };
    let mut cmd = f.mirror("push", &[&f.url("web")]);
    cmd.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    assert_one_clear_line(&run(&mut cmd), "credentials refused");
}

#[test]
fn a_missing_bucket_is_named() {
    let Some(f) = Fixture::new() else { return };
    let out = run(&mut f.mirror("push", &["s3://no-such-bucket/web"]));
    assert_one_clear_line(&out, "bucket does not exist");
}

#[test]
fn an_unreachable_endpoint_is_named() {
    let Some(f) = Fixture::new() else { return };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = f.mirror("push", &[&f.url("web")]);
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    assert_one_clear_line(&run(&mut cmd), "cannot reach");
}

#[test]
fn key_faults_are_named_and_a_wrong_key_reads_nothing() {
    let Some(f) = Fixture::new() else { return };
    f.push("web").success();
    let mut missing = f
        .env
        .rw()
        .args(["mirror", "push", &f.url("web"), "--key"])
        .command();
    missing.arg(f.env.path("no-such.key"));
    f.s3.apply(&mut missing);
    assert_one_clear_line(&run(&mut missing), "no-such.key");

    let other = f.env.path("other.key");
    f.env
        .rw()
        .args(["mirror", "keygen"])
        .arg(&other)
        .run()
        .success();
    let pulled = f.env.path("pulled");
    let mut wrong = f.env.rw().args(["mirror", "pull", &f.url("web")]).command();
    wrong.arg(&pulled).arg("--key").arg(&other);
    f.s3.apply(&mut wrong);
    let out = run(&mut wrong);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("another key"), "{}", out.stderr);
    assert!(!pulled.join("HEAD").exists());

    let mut plain = f
        .env
        .rw()
        .args(["mirror", "push", &f.url("web"), "--plain"])
        .command();
    f.s3.apply(&mut plain);
    let out = run(&mut plain);
    assert!(out.stderr.contains("is encrypted"), "{}", out.stderr);

    let mut none = f.env.rw().args(["mirror", "push", &f.url("web")]).command();
    f.s3.apply(&mut none);
    none.env_remove("REWIND_MIRROR_KEY");
    assert_one_clear_line(&run(&mut none), "no mirror key");
}

#[test]
fn a_plain_mirror_keeps_repository_paths_and_pulls_back() {
    let Some(f) = Fixture::new() else { return };
    let mut cmd = f
        .env
        .rw()
        .args(["mirror", "push", &f.url("plain"), "--plain"])
        .command();
    f.s3.apply(&mut cmd);
    run(&mut cmd).success();
    let pack = pack_files(&f.env.repo)
        .into_iter()
        .find(|n| n.ends_with(".pack"))
        .unwrap();
    let stored =
        f.s3.object_file(BUCKET, &format!("plain/objects/pack/{pack}"));
    assert_eq!(
        fs::read(stored).unwrap(),
        fs::read(f.env.repo.join("objects/pack").join(&pack)).unwrap()
    );
    let pulled = f.env.path("pulled");
    let mut pull = f
        .env
        .rw()
        .args(["mirror", "pull", &f.url("plain"), "--plain"])
        .command();
    pull.arg(&pulled);
    f.s3.apply(&mut pull);
    run(&mut pull).success();
    common::assert_fsck(&pulled, false);
}

/// Puts the server's storage on a tmpfs of `size` (buckets re-created);
/// unmounted when the guard drops.
fn storage_on_tmpfs(s3: &mut S3Server, size: &str) -> common::TmpfsMount {
    common::require_root("mounting a tmpfs for the S3 server's storage");
    s3.stop();
    let out = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size},mode=0755"))
        .arg("tmpfs")
        .arg(s3.root()));
    assert_eq!(out.code, 0, "mount tmpfs: {}", out.stderr);
    let guard = common::TmpfsMount {
        path: s3.root().to_path_buf(),
    };
    s3.create_bucket(BUCKET);
    s3.restart();
    guard
}

#[test]
fn a_full_bucket_is_named_and_the_mirror_stays_as_it_was() {
    let Some(mut f) = Fixture::new() else { return };
    let _tmpfs = storage_on_tmpfs(&mut f.s3, "1m");
    let out = run(&mut f.mirror("push", &[&f.url("web")]));
    // s3s-fs answers 500 or drops the connection, depending on when the
    // write fails: either way the line says what to check.
    assert_one_clear_line(&out, "full or read-only");
    assert!(out.stderr.contains("s3://offsite/web"), "{}", out.stderr);
    assert!(!f.s3.object_file(BUCKET, "web/rewind-mirror").exists());
    common::assert_fsck(&f.env.repo, false);
}

#[test]
fn a_read_only_bucket_is_named() {
    let Some(mut f) = Fixture::new() else { return };
    let tmpfs = storage_on_tmpfs(&mut f.s3, "64m");
    let out = run(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&tmpfs.path));
    assert_eq!(out.code, 0, "remount ro: {}", out.stderr);
    let out = run(&mut f.mirror("push", &[&f.url("web")]));
    assert_one_clear_line(&out, "full or read-only");
    assert!(out.stderr.contains("s3://offsite/web"), "{}", out.stderr);
    assert!(!f.s3.object_file(BUCKET, "web/rewind-mirror").exists());
}

#[test]
fn a_push_whose_manifest_never_landed_resends_nothing_of_many_packs() {
    let Some(f) = Fixture::new() else { return };
    // More than a push asks about one by one: it lists the bucket instead.
    for i in 0..40 {
        fs::write(f.data.join("notes.txt"), format!("day {i}\n")).unwrap();
        f.env.save(
            "web",
            Some(&(1_700_000_000 + i * 86_400).to_string()),
            &f.data,
        );
    }
    let files = pack_files(&f.env.repo).len() as u64;
    assert!(files > 64, "{files} files");
    f.push("web").success();
    // As if the push had been killed right before its manifest.
    fs::remove_file(f.s3.object_file(BUCKET, "web/rewind-mirror")).unwrap();
    let again = f.push("web").success();
    assert_eq!(sent_and_skipped(&again), (0, files), "{}", again.stderr);
    run(&mut f.mirror("verify", &[&f.url("web")])).success();
}

#[test]
fn credentials_and_endpoint_come_from_an_aws_profile() {
    let Some(f) = Fixture::new() else { return };
    let creds = f.env.path("aws-credentials");
    let config = f.env.path("aws-config");
    fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[offsite]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            f.s3.access_key(),
            f.s3.secret_key()
        ),
    )
    .unwrap();
    fs::write(
        &config,
        format!(
            "[default]\nregion = {0}\nendpoint_url = {1}\n[profile offsite]\nregion = {0}\nendpoint_url = {1}\n",
            common::s3::REGION,
            f.s3.endpoint()
        ),
    )
    .unwrap();
    let with_profile = |profile: &str| {
        let mut cmd = f.mirror("push", &[&f.url("web")]);
        for key in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
        ] {
            cmd.env_remove(key);
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_PROFILE", profile);
        cmd
    };
    run(&mut with_profile("offsite")).success();
    assert!(f.s3.object_file(BUCKET, "web/rewind-mirror").exists());
    // The default profile's keys are wrong: this server refuses them.
    let out = run(&mut with_profile("default"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("credentials refused"), "{}", out.stderr);
}
