//! `rewind prune` on real repositories of many saves with controlled
//! author times (`save --date`, in a fixed `TZ`): the right snapshots
//! remain, each restores as before, git and bup 0.33 read the rewritten
//! branch, a save that lands during a prune is kept, empty rules are
//! refused and `--dry-run` changes nothing.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const PARIS: &str = "Europe/Paris";

/// Saves one snapshot a day at 10:00 Paris time from 2026-01-01, `days`
/// of them, changing one file each day and keeping another unchanged.
fn daily_saves(env: &Env, src: &Path, days: i64) {
    mkdir(src);
    write(&src.join("same"), b"unchanged every day\n");
    for k in 0..days {
        let (y, m, d) = civil_from_days(days_since_epoch(2026, 1, 1) + k);
        write(
            &src.join("day"),
            format!("day {k}\n").repeat(100 + k as usize).as_bytes(),
        );
        let date = format!("{y:04}-{m:02}-{d:02}T10:00");
        env.rw()
            .tz(PARIS)
            .args(["save", "-n", "etc", "--date", &date])
            .arg(src)
            .run()
            .success();
    }
}

fn days_since_epoch(y: i64, m: u32, d: u32) -> i64 {
    // Small search over the helper's inverse: tests must not share code
    // with what they test.
    let mut lo = 0;
    while civil_from_days(lo) < (y, m, d) {
        lo += 1;
    }
    lo
}

/// `rewind ls etc` in `tz`, dated names only.
fn listed(env: &Env, tz: &str) -> Vec<String> {
    snapshot_names(&env.rw().tz(tz).args(["ls", "etc"]).run().success().lines())
}

/// Restores every snapshot of `etc` into `into/<snapshot>`.
fn restore_all(env: &Env, src: &Path, into: &Path) -> Vec<String> {
    let names = listed(env, PARIS);
    for name in &names {
        env.rw()
            .tz(PARIS)
            .args(["restore", "--outdir"])
            .arg(into.join(name))
            .arg(with_slash(&snap_path("etc", name, src)))
            .run()
            .success();
    }
    names
}

/// `git cat-file commit` of each commit of the branch, by author time.
fn commits_by_time(env: &Env) -> BTreeMap<String, String> {
    let mut by_time = BTreeMap::new();
    for id in branch_commits(&env.repo, "etc") {
        let out = run(env.git().args(["cat-file", "commit", &id])).success();
        let body = out.stdout_str();
        let author = body
            .lines()
            .find(|l| l.starts_with("author "))
            .expect("author line")
            .to_string();
        by_time.insert(author, body);
    }
    by_time
}

fn without_parents(body: &str) -> String {
    body.lines()
        .filter(|l| !l.starts_with("parent "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn prune_keeps_the_right_snapshots_and_each_restores_as_before() {
    let env = Env::init();
    env.dangling_ok.set(true); // removed commits stay until gc
    let src = env.path("src");
    daily_saves(&env, &src, 40); // 2026-01-01 .. 2026-02-09
    let all = listed(&env, PARIS);
    assert_eq!(all.len(), 40);
    let before = env.path("before");
    restore_all(&env, &src, &before);
    let commits_before = commits_by_time(&env);
    // A tag on a snapshot the prune removes keeps pointing at it.
    let tagged = branch_commits(&env.repo, "etc")[20].clone();
    run(env.git().args(["tag", "keepme", &tagged])).success();

    let out = env
        .rw()
        .tz(PARIS)
        .args([
            "prune",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "3",
        ])
        .run()
        .success();
    // Daily: Feb 3..9. ISO weeks (Mondays Feb 9, Feb 2, Jan 26, Jan 19):
    // Feb 9, Feb 8, Feb 1, Jan 25. Monthly: Feb 9, Jan 31, and, with two
    // months of history for three, the oldest (Jan 1).
    let mut expect: Vec<String> = ["01-01", "01-25", "01-31", "02-01"]
        .iter()
        .map(|md| format!("2026-{md}-100000"))
        .collect();
    expect.extend((3..=9).map(|d| format!("2026-02-{d:02}-100000")));
    assert_eq!(listed(&env, PARIS), expect);
    let plan = out.stdout_str();
    assert!(
        plan.contains("+ keep    2026-01-01-100000  oldest, for monthly (only 2 of 3 months)"),
        "{plan}"
    );
    assert!(plan.contains("- remove  2026-01-02-100000"), "{plan}");
    assert!(
        plan.contains("+ keep    2026-02-09-100000  newest, daily 1/7, weekly 1/4, monthly 1/3"),
        "{plan}"
    );
    assert_eq!(
        out.stderr.trim(),
        "prune: removed 29 of 40 snapshots (etc 29 of 40)"
    );

    // Each kept snapshot restores byte- and metadata-identical.
    let after = env.path("after");
    for name in restore_all(&env, &src, &after) {
        let d = compare_with(&before.join(&name), &after.join(&name), &Compare::default());
        assert!(d.is_empty(), "{name}: {d:#?}");
    }
    // Rewritten as bup rm does: same tree, author, committer, message.
    let commits_after = commits_by_time(&env);
    assert_eq!(commits_after.len(), 11);
    for (author, body) in &commits_after {
        assert_eq!(
            without_parents(body),
            without_parents(&commits_before[author]),
            "{author}"
        );
    }
    assert_eq!(
        run(env.git().args(["rev-parse", "keepme"]))
            .success()
            .stdout_str()
            .trim(),
        tagged
    );
    assert_fsck(&env.repo, true);

    // bup 0.33 reads the result: ls lists the same snapshots (in UTC,
    // an hour earlier), and restore gives the files back.
    if require("bup") {
        let utc = listed(&env, "UTC");
        let bup_ls = env.bup().args(["ls", "etc"]).output().expect("bup ls");
        assert!(bup_ls.status.success(), "{bup_ls:?}");
        let bup_names = snapshot_names(
            &String::from_utf8_lossy(&bup_ls.stdout)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>(),
        );
        assert_eq!(bup_names, utc);
        let bup_out = env.path("bup-restore");
        let mut from = format!("/etc/{}", utc[1]).into_bytes();
        from.extend_from_slice(src.as_os_str().as_encoded_bytes());
        from.push(b'/');
        let r = env
            .bup()
            .args(["restore", "-C"])
            .arg(&bup_out)
            .arg(String::from_utf8(from).expect("utf-8 path"))
            .output()
            .expect("bup restore");
        assert!(r.status.success(), "{r:?}");
        for f in ["same", "day"] {
            assert_eq!(
                fs::read(bup_out.join(f)).expect("bup restored"),
                fs::read(before.join(&expect[1]).join(f)).expect("restored before"),
                "{f}"
            );
        }
    }

    // A second prune with the same rules removes nothing more.
    let again = env
        .rw()
        .tz(PARIS)
        .args(["prune", "--keep-daily", "7", "--keep-weekly", "4"])
        .args(["--keep-monthly", "3", "etc"])
        .run()
        .success();
    assert!(again.stderr.contains("removed 0 of 11"), "{}", again.stderr);
}

#[test]
fn empty_rules_are_refused_with_exit_2_and_one_line() {
    let env = Env::init();
    let src = env.path("src");
    daily_saves(&env, &src, 3);
    let tip = branch_tip(&env.repo, "etc");
    for args in [&["prune"][..], &["prune", "--keep-daily", "0", "etc"]] {
        let out = env.rw().args(args).run().status(2);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("no retention rule"), "{}", out.stderr);
    }
    let out = env
        .rw()
        .args(["prune", "--keep-within", "30", "etc"])
        .run()
        .status(2);
    assert!(
        out.error_line()
            .contains("invalid keep-within duration \"30\""),
        "{}",
        out.stderr
    );
    let out = env
        .rw()
        .args(["prune", "--keep-last", "1", "nosuch"])
        .run()
        .status(2);
    assert!(
        out.error_line().contains("no backup named \"nosuch\""),
        "{}",
        out.stderr
    );
    assert_eq!(branch_tip(&env.repo, "etc"), tip);
    assert_eq!(listed(&env, PARIS).len(), 3);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let env = Env::init();
    let src = env.path("src");
    daily_saves(&env, &src, 5);
    let refs = run(env.git().args(["show-ref"])).success().stdout_str();
    let packs = pack_dir_listing(&env.repo);
    let out = env
        .rw()
        .tz(PARIS)
        .args(["prune", "--dry-run", "--keep-last", "2"])
        .run()
        .success();
    let plan = out.stdout_str();
    assert!(
        plan.contains("etc: 5 snapshots, keep 2, remove 3"),
        "{plan}"
    );
    assert!(plan.contains("- remove  2026-01-01-100000"), "{plan}");
    assert!(
        plan.contains("+ keep    2026-01-04-100000  last 2/2"),
        "{plan}"
    );
    assert!(out.stderr.contains("would remove 3 of 5"), "{}", out.stderr);
    assert_eq!(
        run(env.git().args(["show-ref"])).success().stdout_str(),
        refs
    );
    assert_eq!(pack_dir_listing(&env.repo), packs);
    assert_eq!(listed(&env, PARIS).len(), 5);
}

/// A repository that lets another process save to `etc` just before the
/// prune's first compare-and-swap: the save lands between plan and update.
struct SaveDuringPrune {
    inner: rewind::repo::Repository,
    env_repo: PathBuf,
    home: PathBuf,
    src: PathBuf,
    fired: std::sync::atomic::AtomicBool,
}

impl rewind::repo::Repo for SaveDuringPrune {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn objects(&self) -> &dyn rewind::repo::Objects {
        rewind::repo::Repo::objects(&self.inner)
    }
    fn read_ref(
        &self,
        name: &str,
    ) -> Result<Option<rewind::object::ObjectId>, rewind::repo::Error> {
        self.inner.read_ref(name)
    }
    fn list_refs(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, rewind::object::ObjectId)>, rewind::repo::Error> {
        self.inner.list_refs(prefix)
    }
    fn update_ref(
        &self,
        name: &str,
        new: rewind::object::ObjectId,
        old: Option<rewind::object::ObjectId>,
    ) -> Result<(), rewind::repo::Error> {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            write(&self.src.join("day"), b"saved during the prune\n");
            Rw::bare(&self.home)
                .arg("-d")
                .arg(&self.env_repo)
                .tz(PARIS)
                .args(["save", "-n", "etc", "--date", "2026-01-06T10:00"])
                .arg(&self.src)
                .run()
                .success();
        }
        rewind::repo::Repo::update_ref(&self.inner, name, new, old)
    }
    fn set_head_if_dangling(&self, branch: &str) -> Result<bool, rewind::repo::Error> {
        self.inner.set_head_if_dangling(branch)
    }
    fn known_objects(&self) -> rewind::repo::known::KnownObjects {
        self.inner.known_objects()
    }
    fn current_indexes(&self) -> Result<Vec<String>, rewind::repo::Error> {
        self.inner.current_indexes()
    }
    fn pack_sink(&self) -> Result<Box<dyn rewind::repo::PackSink>, rewind::repo::Error> {
        self.inner.pack_sink()
    }
    fn state_dir(&self) -> PathBuf {
        self.inner.state_dir()
    }
    fn read_shared(
        &self,
        name: rewind::repo::SharedFile,
    ) -> Result<Option<Vec<u8>>, rewind::repo::Error> {
        self.inner.read_shared(name)
    }
    fn write_shared(
        &self,
        name: rewind::repo::SharedFile,
        bytes: &[u8],
    ) -> Result<(), rewind::repo::Error> {
        self.inner.write_shared(name, bytes)
    }
}

#[test]
fn a_save_landing_between_plan_and_ref_update_is_kept() {
    let env = Env::init();
    env.dangling_ok.set(true);
    let src = env.path("src");
    daily_saves(&env, &src, 5);
    let repo = SaveDuringPrune {
        inner: rewind::repo::Repository::open(&env.repo).expect("open"),
        env_repo: env.repo.clone(),
        home: env.home.clone(),
        src: src.clone(),
        fired: Default::default(),
    };
    let rules = rewind::retention::Rules {
        last: 2,
        ..Default::default()
    };
    let plan = rewind::prune::plan(&repo, "etc", &rules).expect("plan");
    assert_eq!(plan.removed(), 3);
    let outcome = rewind::prune::execute(&repo, &plan).expect("prune");
    assert_eq!(outcome.landed_meanwhile, 1);
    // The two kept snapshots and the one saved meanwhile, in order.
    assert_eq!(
        listed(&env, PARIS),
        [
            "2026-01-04-100000",
            "2026-01-05-100000",
            "2026-01-06-100000"
        ]
    );
    let out = env.path("meanwhile");
    env.rw()
        .tz(PARIS)
        .args(["restore", "--outdir"])
        .arg(&out)
        .arg(with_slash(&snap_path("etc", "latest", &src)))
        .run()
        .success();
    assert_eq!(
        fs::read(out.join("day")).expect("restored"),
        b"saved during the prune\n"
    );
    assert_fsck(&env.repo, true);
}

/// A configuration saving `src` as backup "etc" into the test's
/// repository, with `top` (top-level keys) and a `[retention]` of `rules`.
fn write_run_config(env: &Env, src: &Path, top: &str, rules: &str) -> PathBuf {
    let config = env.path("rewind.toml");
    write(
        &config,
        format!(
            "repository = \"{}\"\n{top}[retention]\n{rules}\n[[backup]]\nname = \"etc\"\npaths = [\"{}\"]\n",
            env.repo.display(),
            src.display()
        )
        .as_bytes(),
    );
    config
}

/// `rewind --config CONFIG ARGS`, asserting success.
fn run_with(env: &Env, config: &Path, args: &[&str]) -> Out {
    env.rw()
        .arg("--config")
        .arg(config)
        .args(args)
        .run()
        .success()
}

#[test]
fn run_prunes_after_its_backups_and_status_still_knows_the_run() {
    let env = Env::init();
    env.dangling_ok.set(true);
    let src = env.path("src");
    daily_saves(&env, &src, 4);
    let config = write_run_config(&env, &src, "", "keep-last = 2");
    let dry = run_with(&env, &config, &["run", "--dry-run"]);
    assert!(
        dry.stdout_str()
            .contains("then would prune with --keep-last 2"),
        "{}",
        dry.stdout_str()
    );
    assert!(
        dry.stdout_str().contains("- remove  2026-01-01"),
        "{}",
        dry.stdout_str()
    );
    assert_eq!(listed(&env, PARIS).len(), 4);

    let out = run_with(&env, &config, &["run"]);
    assert!(
        out.stderr.contains("etc: pruned 3 of 5 snapshots (2 kept)"),
        "{}",
        out.stderr
    );
    assert_eq!(listed(&env, PARIS).len(), 2);
    // The run record names the rewritten tip, so status matches them up.
    let records = fs::read_to_string(env.repo.join("rewind/runs.toml")).expect("records");
    let tip = branch_tip(&env.repo, "etc").expect("tip");
    assert!(
        records.contains(&format!("commit = \"{tip}\"")),
        "{records}"
    );
}

#[test]
fn run_with_gc_reclaims_what_its_prune_removed() {
    let env = Env::init();
    let src = env.path("src");
    daily_saves(&env, &src, 6);
    let packs = |env: &Env| -> (u64, usize) {
        let mut bytes = 0;
        let mut count = 0;
        for e in fs::read_dir(env.repo.join("objects/pack")).expect("pack dir") {
            let e = e.expect("entry");
            if e.file_name().to_string_lossy().ends_with(".pack") {
                bytes += e.metadata().expect("stat").len();
                count += 1;
            }
        }
        (bytes, count)
    };
    let (bytes_before, count_before) = packs(&env);
    let config = write_run_config(&env, &src, "gc = true\n", "keep-last = 1");
    let dry = run_with(&env, &config, &["run", "--dry-run"]);
    assert!(
        dry.stdout_str().contains("then would gc"),
        "{}",
        dry.stdout_str()
    );
    assert_eq!(
        packs(&env),
        (bytes_before, count_before),
        "a dry run changes nothing"
    );

    let out = run_with(&env, &config, &["run"]);
    assert!(
        out.stderr.contains("etc: pruned 6 of 7 snapshots"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(": reclaimed "), "{}", out.stderr);
    let (bytes_after, count_after) = packs(&env);
    // Six days of "day" content (100 to 105 lines each) are gone: their
    // packs are deleted or rewritten into one (the run's own small pack
    // stays: fewer than 50 small packs are not merged, see rewind-gc(1)).
    assert!(
        bytes_after < bytes_before,
        "{bytes_after} bytes of packs after, {bytes_before} before"
    );
    assert!(
        count_after < count_before,
        "{count_after} packs after, {count_before} before"
    );
    assert_eq!(listed(&env, PARIS).len(), 1);
    // The kept snapshot restores as the source is now.
    let out_dir = env.path("out");
    env.restore(&out_dir, &snap_path("etc", "latest", &src));
    assert_eq!(
        fs::read(out_dir.join("src/day")).expect("restored"),
        fs::read(src.join("day")).expect("source")
    );
}

#[test]
fn prune_over_ssh_rewrites_the_servers_branch() {
    let Some(sshd) = common::sshd::Sshd::start() else {
        return;
    };
    let env = Env::init();
    env.dangling_ok.set(true);
    let src = env.path("src");
    daily_saves(&env, &src, 4);
    let key = sshd.client();
    let out = Rw::bare(&env.home)
        .arg("--ssh")
        .arg(key.ssh_command())
        .arg("--remote-rewind")
        .arg(rewind_bin())
        .env("REWIND_CACHE_DIR", env.path("cache"))
        .arg("-r")
        .arg(key.remote(&env.repo))
        .tz(PARIS)
        .args(["prune", "--keep-last", "2", "--keep-within", "1d"])
        .run()
        .success();
    assert!(out.stderr.contains("removed 2 of 4"), "{}", out.stderr);
    assert_eq!(
        listed(&env, PARIS),
        ["2026-01-03-100000", "2026-01-04-100000"]
    );
}
