//! `rewind -r HOST:PATH` against a real OpenSSH server on 127.0.0.1 (see
//! `common/sshd.rs`): what travels, what lands on the server, and what a
//! user reads when something goes wrong.
//!
//! The server's repository is on this machine, so every claim is checked
//! from the outside on the server's side too: `git fsck --strict` after each
//! step, `git` and `bup` reading what was saved over SSH, a local `rewind
//! -d` restore as the reference for a remote one, the relay's byte counts
//! for what crossed the wire. Every client names the binary under test on
//! the server (sshd's PATH does not hold it) and has a cache directory of
//! its own.

mod common;

use common::sshd::{forced, ClientKey, Relay, Sshd};
use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One machine backing up to the server: its home, its cache of the
/// server's indexes and its way in.
struct Client {
    home: PathBuf,
    cache: PathBuf,
    key: ClientKey,
    /// `--remote-rewind`: the binary under test unless a test says otherwise.
    remote_rewind: PathBuf,
}

impl Client {
    fn new(env: &Env, key: &ClientKey, name: &str) -> Client {
        let home = env.path(&format!("home-{name}"));
        mkdir(&home);
        Client {
            home,
            cache: env.path(&format!("cache-{name}")),
            key: key.clone(),
            remote_rewind: rewind_bin(),
        }
    }

    /// `rewind --ssh ... --remote-rewind ...` with no repository.
    fn bare(&self) -> Rw {
        self.bare_via(&self.key.ssh_command())
    }

    /// [`Client::bare`] with `ssh` as the ssh command.
    fn bare_via(&self, ssh: &str) -> Rw {
        Rw::bare(&self.home)
            .arg("--ssh")
            .arg(ssh)
            .arg("--remote-rewind")
            .arg(&self.remote_rewind)
            .env("REWIND_CACHE_DIR", &self.cache)
    }

    /// `rewind -r USER@127.0.0.1:REPO ...`.
    fn rw(&self, repo: &Path) -> Rw {
        self.rw_via(repo, &self.key.ssh_command())
    }

    /// [`Client::rw`] with `ssh` as the ssh command.
    fn rw_via(&self, repo: &Path, ssh: &str) -> Rw {
        self.bare_via(ssh).arg("-r").arg(self.key.remote(repo))
    }

    /// Restores the latest snapshot of `name` over SSH into `env/<into>`
    /// and asserts it is `src` (the root's own metadata aside).
    fn assert_restores(&self, env: &Env, name: &str, src: &Path, into: &str) {
        let out = env.path(into);
        self.rw(&env.repo)
            .args(["restore", "--outdir"])
            .arg(&out)
            .arg(with_slash(&snap_path(name, "latest", src)))
            .run()
            .success();
        assert_same_below_root(src, &out);
    }

    /// `save --json -n NAME PATH` over SSH, asserting success; the summary.
    fn save(&self, repo: &Path, name: &str, path: &Path) -> Value {
        let out = self
            .rw(repo)
            .args(["save", "--json", "-n", name])
            .arg(path)
            .run()
            .success();
        json(&out)
    }
}

fn json(out: &Out) -> Value {
    serde_json::from_str(out.stdout_str().trim())
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", out.what, out.stdout_str()))
}

fn field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Puts every entry under `dir` an hour (or more) in the past and waits
/// until their ctimes (which setting times moves to now) are older than the
/// change index's racy margin: only then may it trust their stat (a file
/// changed within the last seconds could change again unseen in the same
/// clock tick).
fn age(dir: &Path) {
    let mut all = Vec::new();
    walk(dir, &mut all);
    let t = now() - 3600;
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_times(p, (t, 0), (t - i as i64, 1000 * i as i64));
    }
    let margin = rewind::save::index::RACY_MARGIN_SECS as u64;
    std::thread::sleep(Duration::from_millis(margin * 1000 + 200));
}

/// Every ref of `repo` with its target (`git for-each-ref`).
fn refs(repo: &Path) -> String {
    run(git(repo).args(["for-each-ref", "--format=%(refname) %(objectname)"]))
        .success()
        .stdout_str()
}

/// Files named `tmp_*` anywhere under `repo/objects`.
fn temporaries(repo: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(&repo.join("objects"), &mut all);
    all.into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tmp_"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Saving, reading and restoring

#[test]
fn save_ls_cat_file_restore_over_ssh_match_a_local_restore_and_bup() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let c = Client::new(&env, sshd.client(), "web");
    let zoo = env.path("zoo");
    make_zoo(&zoo);

    let out = c.rw(&env.repo).arg("init").run().success();
    assert!(out.stderr.contains("initialized"), "{}", out.stderr);
    assert!(
        env.repo.join("objects").is_dir(),
        "no repository on the server"
    );
    assert_fsck(&env.repo, false);
    // A second init is refused, and the repository is left alone.
    let again = c.rw(&env.repo).arg("init").run().status(2);
    assert!(
        again.error_line().contains("already exists"),
        "{}",
        again.stderr
    );

    let v = c.save(&env.repo, "web", &zoo);
    assert_fsck(&env.repo, false);
    let tip = branch_tip(&env.repo, "web").expect("the save made a branch on the server");
    assert_eq!(v["commit"].as_str(), Some(tip.as_str()));

    // ls, in both location forms.
    let names = c.rw(&env.repo).arg("ls").run().success().lines();
    assert_eq!(names, vec!["web".to_string()]);
    let url = c
        .bare()
        .arg("-r")
        .arg(c.key.ssh_url(&env.repo))
        .args(["ls", "web"])
        .run()
        .success()
        .lines();
    let snaps = snapshot_names(&url);
    assert_eq!(snaps.len(), 1, "{url:?}");
    let listed = c
        .rw(&env.repo)
        .arg("ls")
        .arg(snap_path("web", "latest", &zoo.join("plain")))
        .run()
        .success();
    let local = env
        .rw()
        .arg("ls")
        .arg(snap_path("web", "latest", &zoo.join("plain")))
        .run()
        .success();
    assert_eq!(listed.stdout_str(), local.stdout_str());
    assert!(listed_names(&listed).contains(&"c-chunked.dat".to_string()));

    // cat-file: a small file and a chunked one, byte for byte.
    for rel in ["regular.txt", "big.bin", "plain/c-chunked.dat"] {
        let got = c
            .rw(&env.repo)
            .arg("cat-file")
            .arg(snap_path("web", "latest", &zoo.join(rel)))
            .run()
            .success()
            .stdout;
        let want = fs::read(zoo.join(rel)).expect("read source");
        assert!(
            got == want,
            "cat-file {rel} over ssh differs from the source"
        );
    }

    // restore over SSH = restore from the same repository, locally.
    let remote_out = env.path("restored-remote");
    let local_out = env.path("restored-local");
    c.rw(&env.repo)
        .args(["restore", "--outdir"])
        .arg(&remote_out)
        .arg(snap_path("web", "latest", &zoo))
        .run()
        .success();
    env.restore(&local_out, &snap_path("web", "latest", &zoo));
    // The roots are the --outdir directories, made now.
    assert_same_below_root(&local_out, &remote_out);
    // And both are the source (modes, owners, mtimes, symlinks, xattrs...).
    assert_same_tree(&zoo, &remote_out.join("zoo"));
    assert_fsck(&env.repo, false);

    // bup reads what was saved over SSH.
    let bup_ls = run(env
        .bup()
        .arg("ls")
        .arg(snap_path("web", "latest", &zoo.join("plain"))))
    .success();
    for name in ["a.txt", "b.conf", "c-chunked.dat", "run.sh", "link-to-a"] {
        assert!(
            bup_ls
                .lines()
                .iter()
                .any(|l| l.trim_end_matches('/') == name),
            "bup ls misses {name}: {:?}",
            bup_ls.lines()
        );
    }
    let bup_out = env.path("restored-bup");
    run(env
        .bup()
        .args(["restore", "-C"])
        .arg(&bup_out)
        .arg(with_slash(&snap_path("web", "latest", &zoo.join("plain")))))
    .success();
    assert_same_below_root(&zoo.join("plain"), &bup_out);
}

/// A restore over SSH streams what it announced instead of asking object
/// by object: a directory of 3,000 files (announced in one go, more than
/// the client keeps in flight) and 30 directories of 20 (listed a level
/// ahead) are read with few waits for an answer. Before announcements
/// beyond the objects in flight were queued, this restore waited about
/// 2,000 times, a round trip each.
#[test]
fn a_restore_over_ssh_streams_what_it_announced() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let c = Client::new(&env, sshd.client(), "web");
    let src = env.path("src");
    let many = src.join("many");
    mkdir(&many);
    for i in 0..3000 {
        fs::write(many.join(format!("f{i:04}")), format!("file {i}\n")).expect("write");
    }
    for d in 0..30 {
        let dir = src.join(format!("d{d:02}"));
        mkdir(&dir);
        for i in 0..20 {
            fs::write(dir.join(format!("g{i:02}")), format!("{d} {i}\n")).expect("write");
        }
    }
    c.rw(&env.repo).arg("init").run().success();
    c.save(&env.repo, "web", &src);
    let out = env.path("restored");
    let restored = c
        .rw(&env.repo)
        .args(["-vv", "restore", "--outdir"])
        .arg(&out)
        .arg(with_slash(&snap_path("web", "latest", &src)))
        .run()
        .success();
    assert_same_below_root(&src, &out);
    // "remote session: N answers waited for, M objects asked ahead".
    let waits: u64 = restored
        .stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("remote session: ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no session summary in: {}", restored.stderr));
    assert!(
        waits < 100,
        "{waits} answers waited for restoring 3,600 files: announced objects were asked one by one"
    );
}

/// A save over SSH walks with this machine's copy of the server's indexes
/// while ssh connects. A gc on the server since must not make a snapshot
/// name an object that is gone: here the gc deleted the blob of a file
/// that the client then saves again, byte for byte, so the copy claims
/// the blob is stored. The save sees the server's list, saves again with
/// it, and the snapshot is whole (without that check, it would name the
/// deleted blob and the server would refuse it).
#[test]
fn a_save_after_a_gc_on_the_server_saves_again_with_its_current_packs() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let c = Client::new(&env, sshd.client(), "web");
    let src = env.path("src");
    mkdir(&src);
    for i in 0..20 {
        write_random(&src.join(format!("f{i:02}")), 7000 + i, 20 << 10);
    }
    let gone = src.join("gone.bin");
    write_random(&gone, 99, 20 << 10);
    age(&src);
    c.rw(&env.repo).arg("init").run().success();
    c.save(&env.repo, "web", &src);
    fs::remove_file(&gone).expect("remove");
    // The usual case: the walk starts from the cached indexes, no retry.
    let second = c
        .rw(&env.repo)
        .args(["-vv", "save", "-n", "web"])
        .arg(&src)
        .run()
        .success();
    assert!(
        second
            .stderr
            .contains("starting with the cached indexes of"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("saving again"), "{}", second.stderr);

    // On the server: the first snapshot goes, and with it gone.bin's blob.
    let index_names = |repo: &Path| -> Vec<String> {
        let mut names = pack_dir_listing(repo);
        names.retain(|n| n.ends_with(".idx"));
        names
    };
    let before = index_names(&env.repo);
    env.rw()
        .args(["prune", "--keep-last", "1", "web"])
        .run()
        .success();
    env.rw()
        .args(["gc", "--threshold", "0", "--pack-limit", "2"])
        .run()
        .success();
    let after = index_names(&env.repo);
    assert!(
        before.iter().all(|n| !after.contains(n)),
        "the gc kept a pack: {before:?} -> {after:?}"
    );

    write_random(&gone, 99, 20 << 10);
    age(&src);
    let third = c
        .rw(&env.repo)
        .args(["-v", "save", "-n", "web"])
        .arg(&src)
        .run()
        .success();
    assert!(third.stderr.contains("saving again"), "{}", third.stderr);
    assert_fsck(&env.repo, false);
    env.rw().arg("fsck").run().success();
    c.assert_restores(&env, "web", &src, "restored");
    // The save after that one starts from the refreshed cache again.
    write_random(&src.join("f02"), 3, 20 << 10);
    age(&src);
    let fourth = c
        .rw(&env.repo)
        .args(["-vv", "save", "-n", "web"])
        .arg(&src)
        .run()
        .success();
    assert!(
        fourth
            .stderr
            .contains("starting with the cached indexes of")
            && !fourth.stderr.contains("saving again"),
        "{}",
        fourth.stderr
    );
    c.assert_restores(&env, "web", &src, "restored-again");
}

#[test]
fn an_unchanged_resave_sends_under_a_mebibyte_and_a_next_day_save_what_a_local_one_adds() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let relay = Relay::start(sshd.port());
    let c = Client::new(&env, &sshd.client().via(&relay), "web");
    // Many files, incompressible: 320 x 24 KiB = 7.5 MiB.
    let src = env.path("src");
    const FILES: u64 = 320;
    for i in 0..FILES {
        let dir = src.join(format!("d{}", i % 8));
        fs::create_dir_all(&dir).expect("mkdir");
        write_random(&dir.join(format!("f{i:03}")), 1000 + i, 24 << 10);
    }
    age(&src);
    // The same saves into a local repository, for what they add.
    let local = env.path("local");
    Rw::bare(&env.home)
        .arg("-d")
        .arg(&local)
        .arg("init")
        .run()
        .success();
    let local_save = || {
        json(
            &Rw::bare(&env.home)
                .arg("-d")
                .arg(&local)
                .args(["save", "--json", "-n", "web"])
                .arg(&src)
                .run()
                .success(),
        )
    };

    c.rw(&env.repo).arg("init").run().success();
    let before = relay.sent();
    let first = c.save(&env.repo, "web", &src);
    let first_sent = relay.sent() - before;
    let local_first = local_save();
    assert_fsck(&env.repo, false);

    let before = (relay.sent(), relay.received());
    let again = c.save(&env.repo, "web", &src);
    let (again_sent, again_received) = (relay.sent() - before.0, relay.received() - before.1);
    assert_fsck(&env.repo, false);
    assert_eq!(branch_commits(&env.repo, "web").len(), 2);
    assert_eq!(field(&again, "files"), FILES);
    assert_eq!(
        field(&again, "bytes_read"),
        0,
        "an unchanged re-save read files: {again}"
    );
    assert_eq!(field(&again, "files_unchanged"), FILES, "{again}");
    assert!(
        again_sent < 1 << 20,
        "an unchanged re-save sent {again_sent} bytes to the server"
    );

    // The next day: one file of many changed.
    write_random(&src.join("d3/f011"), 99, 24 << 10);
    set_times(&src.join("d3/f011"), (now() - 60, 0), (now() - 60, 5));
    let local_next = local_save();
    let before = relay.sent();
    let next = c.save(&env.repo, "web", &src);
    let next_sent = relay.sent() - before;
    assert_fsck(&env.repo, false);
    assert_eq!(field(&next, "files_unchanged"), FILES - 1, "{next}");
    assert_eq!(field(&next, "bytes_read"), 24 << 10, "{next}");
    let local_added = field(&local_next, "bytes_added");
    eprintln!(
        "on the wire, client to server: first save {first_sent} bytes (a local save adds {}, \
         over ssh the save says {}); unchanged re-save {again_sent} up, {again_received} down; \
         next-day save {next_sent} (a local save adds {local_added}, over ssh the save says {})",
        field(&local_first, "bytes_added"),
        field(&first, "bytes_added"),
        field(&next, "bytes_added"),
    );
    assert!(
        next_sent < 3 * local_added + (64 << 10),
        "a next-day save sent {next_sent} bytes where a local one adds {local_added}"
    );
    // The first save sent the data once, not more.
    assert!(
        first_sent < field(&local_first, "bytes_added") + (FILES << 10) + (256 << 10),
        "the first save sent {first_sent} bytes"
    );

    // What the cache made of it: the restore is the source.
    c.assert_restores(&env, "web", &src, "restored");
}

// ---------------------------------------------------------------------------
// rewind run with the repository on the server

fn write_config(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.path(name);
    fs::write(&path, text).expect("write config");
    chmod(&path, 0o644);
    path
}

#[test]
fn run_with_a_remote_repository_saves_a_dump_and_records_outcomes_on_the_server() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let c = Client::new(&env, sshd.client(), "db1");
    let data = env.path("data");
    mkdir(&data);
    write(&data.join("a.txt"), b"alpha\n");
    let config = |dump: &str| {
        format!(
            "repository = \"{remote}\"\n\n\
             [[backup]]\nname = \"files\"\npaths = [\"{data}\"]\n\n\
             [[backup]]\nname = \"db\"\n[[backup.dump]]\ncommand = \"{dump}\"\nas = \"/backup/app.sql\"\n",
            remote = c.key.remote(&env.repo),
            data = data.display(),
        )
    };
    let good = write_config(&env, "good.toml", &config("echo hello from the dump"));
    // The ssh command and the remote binary from the environment, as a
    // system's rewind.toml leaves them.
    let rewind_run = |config: &Path| {
        Rw::bare(&c.home)
            .env("REWIND_SSH", c.key.ssh_command())
            .env("REWIND_REMOTE_REWIND", rewind_bin())
            .env("REWIND_CACHE_DIR", &c.cache)
            .arg("--config")
            .arg(config)
            .args(["-q", "run"])
            .run()
    };
    rewind_run(&good).success();
    assert_fsck(&env.repo, false);
    let db_tip = branch_tip(&env.repo, "db").expect("the dump made a snapshot on the server");
    assert!(branch_tip(&env.repo, "files").is_some());
    let got = c
        .rw(&env.repo)
        .args(["cat-file", "db/latest/backup/app.sql"])
        .run()
        .success()
        .stdout;
    assert_eq!(got, b"hello from the dump\n");
    let got = run(git(&env.repo).args(["cat-file", "-p", "db:backup/app.sql"]))
        .success()
        .stdout;
    assert_eq!(got, b"hello from the dump\n");

    // The outcomes are in the server's repository, where status finds them
    // with no configuration file.
    let records = fs::read_to_string(env.repo.join("rewind/runs.toml"))
        .expect("rewind run wrote no run records on the server");
    let records: toml::Value = toml::from_str(&records).expect("runs.toml parses");
    let db = &records["backup"]["db"];
    assert_eq!(db["result"].as_str(), Some("ok"), "{records}");
    assert_eq!(db["saved"]["commit"].as_str(), Some(db_tip.as_str()));
    assert_eq!(records["backup"]["files"]["result"].as_str(), Some("ok"));
    let status = env.rw().arg("status").run().status(0);
    let text = status.stdout_str();
    assert!(text.starts_with("OK"), "{text}");
    assert!(text.contains("db") && text.contains("files"), "{text}");

    // A dump that fails on the instance shows on the backup server.
    let bad = write_config(&env, "bad.toml", &config("false"));
    rewind_run(&bad).status(2);
    assert_eq!(
        branch_tip(&env.repo, "db").as_deref(),
        Some(db_tip.as_str())
    );
    let records: toml::Value =
        toml::from_str(&fs::read_to_string(env.repo.join("rewind/runs.toml")).unwrap()).unwrap();
    assert_eq!(
        records["backup"]["db"]["result"].as_str(),
        Some("failed"),
        "{records}"
    );
    let status = env.rw().arg("status").run().status(2);
    let text = status.stdout_str();
    assert!(text.starts_with("CRITICAL"), "{text}");
    assert_fsck(&env.repo, false);
}

// ---------------------------------------------------------------------------
// Keys

#[test]
fn a_restricted_key_reaches_only_its_directory_even_through_a_symlink() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let allowed = env.path("allowed");
    mkdir(&allowed);
    // Another instance's repository, which this key must not reach.
    let outside = env.path("outside");
    Rw::bare(&env.home)
        .arg("-d")
        .arg(&outside)
        .arg("init")
        .run()
        .success();
    let key = sshd.add_key(&forced(&format!(
        "{} server --restrict-to {}",
        rewind_bin().display(),
        allowed.display()
    )));
    let c = Client::new(&env, &key, "web");
    let web = allowed.join("web");
    c.rw(&web).arg("init").run().success();
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("hosts"), b"127.0.0.1 localhost\n");
    c.save(&web, "etc", &src);
    assert!(branch_tip(&web, "etc").is_some());
    assert_fsck(&web, false);

    // Next to it, through a symlink inside it, through `..`, and a
    // sibling whose name starts the same.
    symlink(&outside, allowed.join("escape")).expect("symlink");
    let sibling = env.path("allowed-too");
    Rw::bare(&env.home)
        .arg("-d")
        .arg(&sibling)
        .arg("init")
        .run()
        .success();
    for target in [
        outside.clone(),
        allowed.join("escape"),
        allowed.join("../outside"),
        sibling.clone(),
    ] {
        let out = c.rw(&target).arg("ls").run().status(2);
        let line = out.error_line();
        assert!(
            line.contains("refused by the server")
                && line.contains(&format!("may only reach {}", allowed.display())),
            "{target:?}: {line}"
        );
    }
    let out = c
        .rw(&allowed.join("escape"))
        .args(["save", "-n", "x"])
        .arg(&src)
        .run()
        .status(2);
    assert!(
        out.error_line().contains("may only reach"),
        "{}",
        out.stderr
    );
    // Nor create one there.
    let out = c
        .rw(&allowed.join("escape/new"))
        .arg("init")
        .run()
        .status(2);
    assert!(
        out.error_line().contains("may only reach"),
        "{}",
        out.stderr
    );
    assert!(!outside.join("new").exists());
    assert_eq!(refs(&outside), "");
    assert_eq!(refs(&sibling), "");
    assert_fsck(&outside, false);
}

/// `rewind::remote::Remote` over `key` to `repo`.
fn connect(key: &ClientKey, repo: &Path) -> rewind::remote::Remote {
    let rewind::remote::Location::Ssh(target) =
        rewind::remote::Location::parse(&key.remote(repo)).expect("location")
    else {
        panic!("{} is not a remote location", key.remote(repo))
    };
    let opts = rewind::remote::SshOptions {
        ssh: Some(key.ssh_command()),
        remote_rewind: Some(rewind_bin().display().to_string()),
    };
    rewind::remote::Remote::connect(&target, &opts, false)
        .unwrap_or_else(|e| panic!("connecting to {target}: {e}"))
}

fn oid(hex: &str) -> rewind::object::ObjectId {
    rewind::object::ObjectId::from_hex(hex.trim().as_bytes()).expect("object id")
}

#[track_caller]
fn assert_append_only_refusal(result: Result<(), rewind::repo::Error>, what: &str) {
    let e = result.expect_err(what);
    let text = e.to_string();
    assert!(
        matches!(e, rewind::repo::Error::Remote { .. })
            && text.contains("refused by the server")
            && text.contains("append-only")
            && !text.contains('\n'),
        "{what}: {text}"
    );
}

#[test]
fn an_append_only_key_adds_snapshots_but_never_deletes_or_rewrites_a_ref() {
    use rewind::repo::Repo;
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let key = sshd.add_key(&forced(&format!(
        "{} server --restrict-to {} --append-only",
        rewind_bin().display(),
        env.root.display()
    )));
    let c = Client::new(&env, &key, "web");
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("a"), b"first\n");
    c.save(&env.repo, "web", &src);
    write(&src.join("a"), b"second, longer\n");
    c.save(&env.repo, "web", &src);
    c.save(&env.repo, "other", &src);
    let history = branch_commits(&env.repo, "web");
    assert_eq!(history.len(), 2, "two saves through an append-only key");
    let (tip, parent) = (oid(&history[0]), oid(&history[1]));
    let other = oid(&branch_tip(&env.repo, "other").unwrap());
    let before = refs(&env.repo);

    let remote = connect(&key, &env.repo);
    assert_append_only_refusal(
        remote.delete_ref("refs/heads/web", tip),
        "deleting a branch",
    );
    assert_append_only_refusal(
        remote.update_ref("refs/heads/web", parent, Some(tip)),
        "moving a branch back",
    );
    assert_append_only_refusal(
        remote.update_ref("refs/heads/web", other, Some(tip)),
        "moving a branch sideways",
    );
    // A commit that is not there is refused by any key.
    let missing = oid("0123456789abcdef0123456789abcdef01234567");
    let e = remote
        .update_ref("refs/heads/web", missing, Some(tip))
        .expect_err("a branch moved to a missing commit");
    assert!(e.to_string().contains("refusing to move"), "{e}");
    drop(remote);
    assert_eq!(refs(&env.repo), before, "a refused request moved a ref");

    // The same requests through an unrestricted key do what they say: the
    // refusals above are the key's, not a broken request.
    let full = connect(sshd.client(), &env.repo);
    full.update_ref("refs/heads/web", parent, Some(tip))
        .expect("moving back with a full key");
    full.delete_ref("refs/heads/other", other)
        .expect("deleting with a full key");
    drop(full);
    assert_eq!(branch_tip(&env.repo, "web"), Some(history[1].clone()));
    assert_eq!(branch_tip(&env.repo, "other"), None);
    env.dangling_ok.set(true);
}

// ---------------------------------------------------------------------------
// Failures

#[test]
fn a_connection_cut_mid_save_leaves_the_server_repository_clean_and_the_next_save_works() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let relay = Relay::start(sshd.port());
    let c = Client::new(&env, &sshd.client().via(&relay), "web");
    let small = env.path("small");
    mkdir(&small);
    write(&small.join("f"), b"small\n");
    c.save(&env.repo, "small", &small);
    let before = refs(&env.repo);
    let packs = pack_dir_listing(&env.repo);

    // Incompressible: the bytes on the wire are the data.
    let src = env.path("src");
    mkdir(&src);
    for i in 0..4 {
        write_random(&src.join(format!("part{i}")), 50 + i, 2 << 20);
    }
    relay.cut_after(3 << 20);
    let out = c
        .rw(&env.repo)
        .args(["save", "-n", "big"])
        .arg(&src)
        .run()
        .status(2);
    assert_eq!(relay.cuts(), 1, "the relay did not cut: {}", out.stderr);
    let line = out.error_line();
    assert!(
        line.contains(&c.key.remote(&env.repo))
            && line.contains("the connection to the server ended"),
        "{line}"
    );
    eprintln!("a cut save says: {line}");

    // The server side notices the end and deletes its temporary pack.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !temporaries(&env.repo).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(temporaries(&env.repo), Vec::<PathBuf>::new());
    assert_eq!(refs(&env.repo), before, "a cut save moved a ref");
    assert_eq!(
        pack_dir_listing(&env.repo),
        packs,
        "a cut save published a pack"
    );
    assert_fsck(&env.repo, false);

    let v = c.save(&env.repo, "big", &src);
    assert_eq!(field(&v, "files"), 4);
    assert_fsck(&env.repo, false);
    c.assert_restores(&env, "big", &src, "restored");
}

/// A connection that goes silent mid-save (a network that drops every
/// packet, a server that froze) ends the save with an error after ssh's
/// keepalive gives up, about a minute, instead of hanging until the
/// kernel gives up on the socket (hours) and holding up the next day's
/// run. Nothing is published, and a later save lands.
#[test]
fn a_save_whose_connection_goes_silent_ends_within_minutes_and_moves_nothing() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let relay = Relay::start(sshd.port());
    let c = Client::new(&env, &sshd.client().via(&relay), "web");
    let src = env.path("src");
    mkdir(&src);
    for i in 0..4 {
        write_random(&src.join(format!("part{i}")), 70 + i, 2 << 20);
    }
    c.save(&env.repo, "first", &src);
    let before = refs(&env.repo);
    write_random(&src.join("new"), 80, 4 << 20);
    relay.stall_after(1 << 20);
    let started = Instant::now();
    let mut cmd = c
        .rw(&env.repo)
        .args(["save", "-n", "first"])
        .arg(&src)
        .command();
    let out = run_limited(&mut cmd, Duration::from_secs(200))
        .expect("a save over a silent connection was still running after 200 s");
    let took = started.elapsed();
    assert!(
        relay.stalled(),
        "the relay never went silent: {}",
        out.stderr
    );
    let out = out.status(2);
    let line = out.error_line();
    assert!(
        line.contains(&c.key.remote(&env.repo)) && line.contains("connection to the server"),
        "{line}"
    );
    // ServerAliveInterval=15, ServerAliveCountMax=4.
    assert!(
        took >= Duration::from_secs(45),
        "ended after {took:?}: {line}"
    );
    eprintln!("a save over a silent connection ended after {took:?}: {line}");
    assert_eq!(refs(&env.repo), before, "a stalled save moved a ref");

    // The server's end may still be waiting on its side of the silent
    // connection; another client saves beside it.
    let other = Client::new(&env, sshd.client(), "web-direct");
    let v = other.save(&env.repo, "first", &src);
    assert_eq!(field(&v, "files"), 5);
    assert_fsck(&env.repo, false);
    other.assert_restores(&env, "first", &src, "restored");
}

/// An `--ssh` command that waits `seconds` before running `key`'s ssh: a
/// slow login, as over a long way or to a busy server.
fn slow_ssh(env: &Env, key: &ClientKey, seconds: u32) -> String {
    let wrapper = env.path(&format!("slow-ssh-{seconds}"));
    write(
        &wrapper,
        format!("#!/bin/sh\nsleep {seconds}\nexec \"$@\"\n").as_bytes(),
    );
    chmod(&wrapper, 0o755);
    format!("{} {}", wrapper.display(), key.ssh_command())
}

#[test]
fn a_save_goes_on_while_ssh_connects_and_sends_what_it_made_first() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    // Incompressible, so that what is queued is about the data's size.
    let src = env.path("src");
    mkdir(&src);
    for i in 0..6 {
        write_random(&src.join(format!("part{i}")), 70 + i, 2 << 20);
    }
    let c = Client::new(&env, sshd.client(), "web");
    // A first save fills the client's copy of the server's indexes; a
    // client without one asks for the list of packs before saving.
    let small = env.path("small");
    mkdir(&small);
    write(&small.join("f"), b"small\n");
    c.save(&env.repo, "small", &small);
    let out = c
        .rw_via(&env.repo, &slow_ssh(&env, &c.key, 2))
        .args(["-vv", "save", "-n", "web"])
        .arg(&src)
        .run()
        .success();
    // "N bytes were queued for the server before it answered": if the
    // save waited for the server, its workers would stop after a few
    // batches (2 MiB).
    let queued: u64 = out
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_suffix(" bytes were queued for the server before it answered")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of bytes queued:\n{}", out.stderr));
    assert!(
        queued > 10 << 20,
        "only {queued} bytes queued in two seconds"
    );
    assert_fsck(&env.repo, false);
    c.assert_restores(&env, "web", &src, "restored");

    // What was queued is dropped when the login fails: the error is the
    // login's, not a broken pipe.
    let refused = sshd.unknown_key();
    let stranger = Client::new(&env, &refused, "stranger");
    let out = stranger
        .rw_via(&env.repo, &slow_ssh(&env, &refused, 1))
        .args(["save", "-n", "stranger"])
        .arg(&src)
        .run()
        .status(2);
    let line = out.error_line();
    assert!(line.contains("the server refused the login"), "{line}");
    assert!(branch_tip(&env.repo, "stranger").is_none());
}

#[test]
fn eight_clients_saving_at_once_all_land() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let own: Vec<PathBuf> = (0..4).map(|i| env.path(&format!("own{i}"))).collect();
    for repo in &own {
        Rw::bare(&env.home)
            .arg("-d")
            .arg(repo)
            .arg("init")
            .run()
            .success();
    }
    // (repository, backup name, snapshot time) of each client; two share a
    // name in the shared repository.
    let jobs: Vec<(PathBuf, &str, i64)> = vec![
        (env.repo.clone(), "alpha", 1_700_000_000),
        (env.repo.clone(), "beta", 1_700_000_100),
        (env.repo.clone(), "same", 1_700_000_200),
        (env.repo.clone(), "same", 1_700_000_300),
        (own[0].clone(), "web", 1_700_000_000),
        (own[1].clone(), "web", 1_700_000_000),
        (own[2].clone(), "web", 1_700_000_000),
        (own[3].clone(), "web", 1_700_000_000),
    ];
    let mut clients = Vec::new();
    for (i, _) in jobs.iter().enumerate() {
        let src = env.path(&format!("src{i}"));
        mkdir(&src);
        // Some content shared by all, some each client's own.
        write_random(&src.join("shared.bin"), 1, 300_000);
        write_random(&src.join(format!("own{i}.bin")), 100 + i as u64, 300_000);
        clients.push((Client::new(&env, sshd.client(), &format!("c{i}")), src));
    }
    let outs: Vec<Out> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .zip(&clients)
            .map(|((repo, name, date), (c, src))| {
                s.spawn(move || {
                    c.rw(repo)
                        .args(["save", "-n", name, "--date", &date.to_string()])
                        .arg(src)
                        .run()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in outs {
        out.success();
    }

    // Every snapshot is in its branch: each tree holds its client's file.
    for (i, ((repo, name, _), (_, src))) in jobs.iter().zip(&clients).enumerate() {
        let found = branch_commits(repo, name).iter().any(|commit| {
            let tree = run(git(repo).args(["ls-tree", "-r", "--name-only", commit]))
                .success()
                .stdout_str();
            let want = format!("{}/own{i}.bin", src.strip_prefix("/").unwrap().display());
            // A chunked file is a tree named NAME.bup.
            tree.lines()
                .any(|l| l == want || l.starts_with(&format!("{want}.bup/")))
        });
        assert!(
            found,
            "client {i}'s snapshot is not in {}'s {name}",
            repo.display()
        );
    }
    assert_eq!(branch_commits(&env.repo, "same").len(), 2);
    assert_eq!(branch_commits(&env.repo, "alpha").len(), 1);
    assert_eq!(branch_commits(&env.repo, "beta").len(), 1);
    for repo in &own {
        assert_eq!(branch_commits(repo, "web").len(), 1);
        assert_fsck(repo, false);
    }
}

#[test]
fn every_failure_is_one_line_a_user_understands() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("f"), b"x\n");
    let repo = env.repo.clone();
    let restricted = sshd.add_key(&forced(&format!(
        "{} server --restrict-to {}",
        rewind_bin().display(),
        env.path("allowed").display()
    )));
    // What happens, the key, the repository, the rewind named on the
    // server, and words the line must hold.
    type Case<'a> = (&'a str, ClientKey, PathBuf, Option<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "unreachable host",
            sshd.unreachable(),
            repo.clone(),
            None,
            vec!["cannot reach the server", "Connection refused"],
        ),
        (
            "refused key",
            sshd.unknown_key(),
            repo.clone(),
            None,
            vec!["the server refused the login", "authorized_keys"],
        ),
        (
            "changed host key",
            sshd.wrong_host_key(),
            repo.clone(),
            None,
            vec!["host key has changed", "ssh-keygen -R"],
        ),
        (
            "unknown host key",
            sshd.unknown_host(),
            repo.clone(),
            None,
            vec!["does not know the server's host key"],
        ),
        (
            "rewind missing on the server",
            sshd.client().clone(),
            repo.clone(),
            Some("/nonexistent/rewind"),
            vec!["rewind is not installed on the server", "--remote-rewind"],
        ),
        (
            "no repository",
            sshd.client().clone(),
            env.path("nothing-here"),
            None,
            vec!["no repository at", "init`"],
        ),
        (
            "outside the key's path",
            restricted,
            repo.clone(),
            None,
            vec!["refused by the server", "may only reach"],
        ),
    ];
    for (what, key, target, remote_rewind, words) in cases {
        let mut c = Client::new(&env, &key, &what.replace(' ', "-"));
        if let Some(bin) = remote_rewind {
            c.remote_rewind = PathBuf::from(bin);
        }
        let out = c
            .rw(&target)
            .args(["save", "-n", "x"])
            .arg(&src)
            .run()
            .status(2);
        let line = out.error_line();
        let location = key.remote(&target);
        assert!(
            line.starts_with(&format!("rewind: error: {location}: ")),
            "{what}: {line}"
        );
        for w in &words {
            assert!(line.contains(w), "{what}: {line:?} should say {w:?}");
        }
        if what == "no repository" {
            assert!(
                line.contains(&format!("rewind -r {location} init")),
                "{line}"
            );
            assert!(
                !target.exists(),
                "a failed open created {}",
                target.display()
            );
        }
        eprintln!("{what}: {line}");
    }
    assert!(
        branch_tip(&env.repo, "x").is_none(),
        "a failed save moved a ref"
    );
    // An incompatible protocol version needs an older server than can be
    // built here; the server's refusal names both versions (unit-tested in
    // src/remote).
}

/// Every process's id.
fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The parent of `pid` and its command name, from `/proc/PID/stat`.
fn parent_and_name(pid: i32) -> Option<(i32, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let ppid = tail.split_whitespace().nth(1)?.parse().ok()?;
    Some((ppid, name))
}

/// Processes with a file open under `dir`: the `rewind server` writing a
/// pack into a test's repository, and no other test's.
fn holding(dir: &Path) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
            })
        })
        .collect()
}

/// Waits until `repo` has a temporary pack (a save is streaming objects
/// into it), then kills the process `pick` names with SIGKILL.
fn kill_mid_save(repo: &Path, pick: impl Fn() -> Option<i32>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporaries(repo).is_empty() {
        assert!(Instant::now() < deadline, "no save started writing a pack");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = pick().expect("the process to kill");
    // SAFETY: kill(2) with a pid read from /proc just now; at worst the
    // process has exited and the call fails with ESRCH.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    pid
}

#[test]
fn killing_either_side_mid_save_leaves_the_server_valid_and_the_next_save_works() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::init();
    let c = Client::new(&env, sshd.client(), "web");
    let src = env.path("src");
    mkdir(&src);
    for i in 0..6 {
        write_random(&src.join(format!("part{i}")), 70 + i, 4 << 20);
    }
    c.save(&env.repo, "keep", &env.home);
    let before = refs(&env.repo);
    let packs = pack_dir_listing(&env.repo);
    let save = || {
        c.rw(&env.repo)
            .args(["save", "-n", "big"])
            .arg(&src)
            .command()
    };

    // The client's ssh killed: the client says the connection ended; the
    // server sees the end of its input and deletes its temporary pack.
    let mut cmd = save();
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rewind");
    let client = child.id() as i32;
    kill_mid_save(&env.repo, || {
        pids()
            .into_iter()
            .find(|p| parent_and_name(*p) == Some((client, "ssh".into())))
    });
    let out = finish(child, "save with its ssh killed").status(2);
    assert!(
        out.error_line()
            .contains("the connection to the server ended"),
        "{}",
        out.stderr
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !temporaries(&env.repo).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(temporaries(&env.repo), Vec::<PathBuf>::new());
    assert_eq!(refs(&env.repo), before, "a killed save moved a ref");
    assert_eq!(pack_dir_listing(&env.repo), packs);
    assert_fsck(&env.repo, false);

    // The server killed: its temporary pack stays (nothing can delete it),
    // which leaves the repository valid all the same.
    let mut cmd = save();
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rewind");
    kill_mid_save(&env.repo, || {
        holding(&env.repo.join("objects")).first().copied()
    });
    let out = finish(child, "save with its server killed").status(2);
    let line = out.error_line();
    eprintln!("a save whose server was killed says: {line}");
    assert_eq!(refs(&env.repo), before, "a killed server moved a ref");
    assert_eq!(pack_dir_listing(&env.repo), packs);
    assert_fsck(&env.repo, false);

    c.save(&env.repo, "big", &src);
    assert_fsck(&env.repo, false);
    c.assert_restores(&env, "big", &src, "restored");
}

/// A large file restored over SSH by several threads at once, each part
/// streamed from the server on the one connection, is the file: the
/// parts' announcements and reads interleave, and none may wait for
/// another's.
#[test]
fn a_large_file_restores_over_ssh_in_parts() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let c = Client::new(&env, sshd.client(), "db");
    let src = env.path("src");
    mkdir(&src);
    let dump = src.join("dump.sql");
    let mut data = random_bytes(5, 20 << 20);
    data[(6 << 20) + 3..(9 << 20) + 5].fill(0);
    fs::write(&dump, &data).expect("write");
    write_random(&src.join("small"), 6, 3000);
    c.rw(&env.repo).arg("init").run().success();
    c.save(&env.repo, "db", &src);
    let out = env.path("out");
    let restored = c
        .rw(&env.repo)
        .args(["-vv", "restore", "--threads", "3", "--outdir"])
        .arg(&out)
        .arg(with_slash(&snap_path("db", "latest", &src)))
        .run()
        .success();
    assert!(
        restored
            .stderr
            .lines()
            .any(|l| l.contains("dump.sql") && l.contains("written in")),
        "the file was not written in parts:\n{}",
        restored.stderr
    );
    assert_eq!(fs::read(out.join("dump.sql")).expect("restored"), data);
    assert_same_below_root(&src, &out);
    assert_fsck(&env.repo, false);
}

/// A restore whose connection is cut while several threads wait on it
/// for objects ends, every thread woken with the one error, instead of
/// some thread waiting for an answer that can no longer come.
#[test]
fn a_connection_cut_mid_restore_stops_every_thread_with_one_error() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let c = Client::new(&env, sshd.client(), "db");
    let src = env.path("src");
    mkdir(&src);
    write_random(&src.join("dump.sql"), 7, 96 << 20);
    for i in 0..40 {
        write_random(&src.join(format!("small{i}")), 100 + i, 20_000);
    }
    c.rw(&env.repo).arg("init").run().success();
    c.save(&env.repo, "db", &src);
    let out = env.path("out");
    let child = c
        .rw(&env.repo)
        .args(["restore", "--threads", "3", "--outdir"])
        .arg(&out)
        .arg(with_slash(&snap_path("db", "latest", &src)))
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rewind");
    let client = child.id() as i32;
    // Cut once the large file is being written (its parts are all asked
    // for by then), long before its 96 MiB are there.
    let dump = out.join("dump.sql");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&dump).map_or(true, |m| m.blocks() == 0) {
        assert!(Instant::now() < deadline, "the restore wrote nothing");
        std::thread::sleep(Duration::from_millis(1));
    }
    let ssh = pids()
        .into_iter()
        .find(|p| parent_and_name(*p) == Some((client, "ssh".into())))
        .expect("the restore's ssh");
    // SAFETY: kill(2) with a pid read from /proc just now.
    unsafe { libc::kill(ssh, libc::SIGKILL) };
    let out = finish(child, "restore with its ssh killed");
    assert_ne!(
        out.code, 0,
        "a restore cut short succeeded:\n{}",
        out.stderr
    );
    assert!(
        out.error_line()
            .contains("the connection to the server ended"),
        "{}",
        out.stderr
    );
}
