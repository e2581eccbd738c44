//! One damaged copy of the repository: every command run on it, each
//! outcome judged against the undamaged repository and recorded.

use crate::cases::{variant_repo, Case, Kind};
use crate::common::{git, run_limited, Out, Rw};
use crate::fixture::{copy_tree, fingerprint, hex_sha1, reads, rw, Fixture, READ_BACK};
use crate::mount_read::{mount_read, MountRead};
use crate::outcome::{ending, error_kind, excerpt, Outcome, Record};
use crate::{keep_copies, LIMIT};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

pub struct Copy<'a> {
    fx: &'a Fixture,
    case: &'a Case,
    dir: PathBuf,
    repo: PathBuf,
    records: Vec<Record>,
}

impl Copy<'_> {
    fn rw(&self) -> Rw {
        rw(&self.fx.home, &self.repo)
    }

    fn record(&mut self, command: &'static str, outcome: Outcome, detail: String) {
        // A damaged cache may not change what the user gets.
        let outcome =
            if self.case.kind.is_cache() && !outcome.is_failure() && outcome != Outcome::Right {
                Outcome::CacheTrusted
            } else {
                outcome
            };
        self.records.push(Record {
            case: self.case.describe(),
            kind: self.case.kind,
            command,
            outcome,
            detail,
        });
    }

    fn detail(out: &Option<Out>) -> String {
        match out {
            None => format!("did not finish within {LIMIT:?}"),
            Some(o) => format!(
                "{}: exit {}; stderr: {}",
                o.what,
                o.code,
                excerpt(&o.stderr)
            ),
        }
    }

    /// Runs the read commands; returns for each whether it gave the right
    /// bytes.
    fn reads(&mut self) -> Vec<bool> {
        let mut right = Vec::new();
        for (i, (command, args)) in reads(self.fx).into_iter().enumerate() {
            let out = run_limited(&mut self.rw().args(&args).command(), LIMIT);
            let outcome = match ending(&out) {
                Some(o) => o,
                None => {
                    let o = out.as_ref().expect("finished");
                    if o.stdout == self.fx.expect.reads[i] {
                        Outcome::Right
                    } else if i == 0 && self.case.kind.is_ref() && self.lists_as_git(&o.stdout) {
                        Outcome::AsGitSees
                    } else {
                        Outcome::WrongBytes
                    }
                }
            };
            right.push(outcome == Outcome::Right);
            let mut detail = Self::detail(&out);
            if let (Outcome::WrongBytes, Some(o)) = (outcome, &out) {
                detail.push_str(&format!(
                    "; stdout: {:?}; undamaged: {:?}",
                    excerpt(&String::from_utf8_lossy(&o.stdout)),
                    excerpt(&String::from_utf8_lossy(&self.fx.expect.reads[i]))
                ));
                if i == 0 {
                    let g = run_limited(git(&self.repo).args(["for-each-ref"]), LIMIT);
                    detail.push_str(&format!("; git for-each-ref: {}", Self::detail(&g)));
                }
            }
            self.record(command, outcome, detail);
        }
        right
    }

    /// Whether `stdout` of `rewind ls` names exactly the branches git
    /// finds in the damaged repository.
    fn lists_as_git(&self, stdout: &[u8]) -> bool {
        let Some(g) = run_limited(
            // All refs, filtered here: with a prefix, git binary-searches a
            // `packed-refs` that says it is sorted, and a damaged name
            // that breaks the order hides its neighbours.
            git(&self.repo).args(["for-each-ref", "--format=%(refname)"]),
            LIMIT,
        ) else {
            return false;
        };
        if g.code != 0 || !g.stderr.trim().is_empty() {
            return false;
        }
        let from_git: BTreeSet<String> = g
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("refs/heads/").map(str::to_owned))
            .collect();
        let ours: BTreeSet<String> = String::from_utf8_lossy(stdout)
            .lines()
            .map(|l| l.trim_end_matches('/').to_owned())
            .collect();
        from_git == ours
    }

    fn restore(&mut self) {
        let out_dir = self.dir.join("out");
        let out = run_limited(
            &mut self
                .rw()
                .args(["restore", "--outdir"])
                .arg(&out_dir)
                .arg("one/latest/")
                .command(),
            LIMIT,
        );
        let got = fingerprint(&out_dir);
        let outcome = match (ending(&out), &out) {
            (None, _) if got == self.fx.expect.restore => Outcome::Right,
            (None, _) => Outcome::WrongBytes,
            (Some(Outcome::UnclearError), Some(o)) if o.code == 1 => {
                // Partial: every file restored must be right unless a
                // warning names it.
                let want: BTreeMap<&str, &str> = self
                    .fx
                    .expect
                    .restore
                    .lines()
                    .filter_map(|l| Some((l.split('\t').next()?, l)))
                    .collect();
                let silent_wrong = got.lines().any(|l| {
                    let path = l.split('\t').next().unwrap_or("");
                    let is_dir = l.split('\t').nth(1) == Some("d");
                    !is_dir && want.get(path) != Some(&l) && !o.stderr.contains(path)
                });
                if silent_wrong {
                    Outcome::WrongBytes
                } else {
                    Outcome::Partial
                }
            }
            (Some(o), _) => o,
        };
        let mut detail = Self::detail(&out);
        if outcome == Outcome::WrongBytes {
            detail.push_str(&format!("; restored:\n{got}"));
        }
        self.record("restore", outcome, detail);
    }

    fn mount(&mut self) {
        let (outcome, detail) = match mount_read(&self.fx.home, &self.repo, &self.dir) {
            MountRead::Read { listing, files } => {
                let want = &self.fx.expect.mount_files;
                let listing_want = &self.fx.expect.mount_listing;
                let mut wrong = Vec::new();
                let mut errors = Vec::new();
                match &listing {
                    Ok(l) if l != listing_want => wrong.push(format!("listing:\n{l}")),
                    Ok(_) => {}
                    Err(e) => errors.push(format!("listing: {e}")),
                }
                for (p, r) in &files {
                    match r {
                        Ok(b) if want.get(p) != Some(&hex_sha1(b)) => {
                            wrong.push(format!("{p}: {} bytes, not the saved ones", b.len()))
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(format!("{p}: {e}")),
                    }
                }
                if !wrong.is_empty() {
                    (Outcome::WrongBytes, wrong.join("; "))
                } else if !errors.is_empty() {
                    (Outcome::ReadError, errors.join("; "))
                } else {
                    (Outcome::Right, String::new())
                }
            }
            MountRead::Hang(what) => (Outcome::Hang, what),
            MountRead::Panic(log) => (Outcome::Panic, excerpt(&log)),
            MountRead::Died(code, log) => {
                let o = match code {
                    128.. => Outcome::Signal,
                    2 => error_kind(&log),
                    _ => Outcome::UnclearError,
                };
                (o, format!("mount exited {code}: {}", excerpt(&log)))
            }
        };
        self.record("mount", outcome, detail);
    }

    /// A new save of `one`, read back with `cat-file`. `before` says which
    /// of the read-back files the damaged copy gave right before the save.
    fn save(&mut self, before: &BTreeMap<&str, bool>) {
        let out = run_limited(
            &mut self
                .rw()
                .args(["save", "-n", "one", "--date", "1800000000", "--strip"])
                .arg(&self.fx.src)
                .command(),
            LIMIT,
        );
        let outcome = match (ending(&out), &out) {
            (Some(Outcome::UnclearError), Some(o)) if o.code == 1 => Outcome::Partial,
            (Some(o), _) => o,
            (None, _) => {
                let mut outcome = Outcome::Right;
                let mut detail = Vec::new();
                for p in READ_BACK {
                    let r = run_limited(
                        &mut self
                            .rw()
                            .arg("cat-file")
                            .arg(format!("one/latest/{p}"))
                            .command(),
                        LIMIT,
                    );
                    let o = match ending(&r) {
                        None => {
                            let got = &r.as_ref().expect("finished").stdout;
                            if *got == fs::read(self.fx.src.join(p)).expect("source") {
                                Outcome::Right
                            } else {
                                Outcome::WrongBytes
                            }
                        }
                        Some(Outcome::CleanError) if before.get(p) == Some(&false) => {
                            Outcome::SavedOntoDamage
                        }
                        Some(Outcome::CleanError) => Outcome::SavedUnreadable,
                        Some(o) => o,
                    };
                    if o != Outcome::Right {
                        detail.push(format!("read back {p}: {}", Self::detail(&r)));
                    }
                    outcome = outcome.max(o);
                }
                let detail = detail.join("; ");
                self.record("save", outcome, detail);
                return;
            }
        };
        let detail = Self::detail(&out);
        self.record("save", outcome, detail);
    }

    /// `rewind status` over the damaged run records, then `rewind run`,
    /// which must start new records, then `status` again.
    fn run_records(&mut self) {
        let config = self.dir.join("rewind.toml");
        fs::write(
            &config,
            format!(
                "repository = \"{}\"\n[[backup]]\nname = \"three\"\npaths = [\"{}\"]\n",
                self.repo.display(),
                self.fx.src.join("d").display()
            ),
        )
        .expect("config");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");
        let cmd = |what: &str| {
            Rw::bare(&self.fx.home)
                .arg("--config")
                .arg(&config)
                .arg(what)
                .command()
        };
        let status = |mut c: Command| {
            let out = run_limited(&mut c, LIMIT);
            let outcome = match (&out, ending(&out)) {
                (_, Some(o @ (Outcome::Hang | Outcome::Panic | Outcome::Signal))) => o,
                (Some(o), _) if o.code == 0 && o.stdout_str().starts_with("OK: ") => Outcome::Right,
                (Some(o), _)
                    if o.code == 3
                        && o.stdout_str().starts_with("UNKNOWN: ")
                        && o.stdout_str().lines().count() == 1
                        && o.stdout_str().contains("runs.toml") =>
                {
                    Outcome::CleanError
                }
                (Some(o), _)
                    if (1..=2).contains(&o.code)
                        && ["WARNING: ", "CRITICAL: "]
                            .iter()
                            .any(|p| o.stdout_str().starts_with(p)) =>
                {
                    Outcome::Reported
                }
                _ => Outcome::UnclearError,
            };
            let detail = match &out {
                Some(o) => format!(
                    "{} (stdout: {})",
                    Self::detail(&out),
                    excerpt(&o.stdout_str())
                ),
                None => Self::detail(&out),
            };
            (outcome, detail)
        };
        let (o, d) = status(cmd("status"));
        self.record("status", o, d);
        let out = run_limited(&mut cmd("run"), LIMIT);
        let o = match ending(&out) {
            None => Outcome::Right,
            Some(o) => o,
        };
        let d = Self::detail(&out);
        self.record("run", o, d);
        // After a run the records are whole again.
        let (o, d) = status(cmd("status"));
        let o = if o == Outcome::Right {
            o
        } else {
            Outcome::CacheTrusted
        };
        self.record("run", o, d);
    }

    /// A damaged cache must be rewritten by the commands that use it.
    fn cache_rebuilt(&mut self, damaged: &[u8]) {
        let path = self.repo.join(&self.case.file);
        let now = fs::read(&path).ok();
        let (o, d) = match now {
            Some(b) if b == damaged => (
                Outcome::CacheTrusted,
                format!("{} still holds the damaged bytes", self.case.file.display()),
            ),
            _ => (Outcome::Right, String::new()),
        };
        self.record("rebuilt", o, d);
    }
}

pub fn run_case(fx: &Fixture, case: &Case, n: usize) -> Vec<Record> {
    let dir = fx.root.join(format!("copy{n:04}"));
    let repo = dir.join("repo");
    copy_tree(variant_repo(&fx.loose, &fx.packed, case.variant), &repo);
    let path = repo.join(&case.file);
    let original = fs::read(&path).expect("read");
    let damaged = case.damage.apply(&original);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&path, &damaged).expect("write damage");
    let mut copy = Copy {
        fx,
        case,
        dir: dir.clone(),
        repo,
        records: Vec::new(),
    };
    let right = copy.reads();
    copy.restore();
    if case.mount {
        copy.mount();
    }
    let before: BTreeMap<&str, bool> = [
        ("a.txt", right[5]),
        ("big.bin", right[6]),
        ("d/e/f", right[7]),
    ]
    .into_iter()
    .collect();
    copy.save(&before);
    if case.kind == Kind::RunRecords {
        copy.run_records();
    }
    if case.kind.is_cache() {
        copy.cache_rebuilt(&damaged);
    }
    let records = copy.records;
    if keep_copies().is_none() {
        let _ = fs::remove_dir_all(&dir);
    }
    records
}
