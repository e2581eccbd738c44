//! Shared helpers for the integration tests.
//!
//! These tests judge the `rewind` binary from the outside and trust nothing it
//! says about itself: trees are built here with plain syscalls and standard
//! tools, and compared with `lstat`, `llistxattr`, `getfacl` and byte reads.
//! `git` and `bup` are used as independent oracles for the repository format.
//!
//! Every child process runs with a fixed `TZ` (UTC unless a test says
//! otherwise), a private `HOME` and no `REWIND_REPO`, and is killed if it
//! outlives a generous timeout so that a hung binary fails a test instead of
//! the whole CI run.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any single child process may run before the test fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Path of the binary under test, built by cargo for the integration tests.
pub fn rewind_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rewind"))
}

/// A directory for test scratch space. Under cargo's target dir (a real disk,
/// so xattrs, ACLs and sparse files behave) unless `REWIND_TEST_TMP` says
/// otherwise.
pub fn scratch_base() -> PathBuf {
    match std::env::var_os("REWIND_TEST_TMP") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    }
}

pub fn tempdir() -> tempfile::TempDir {
    let base = scratch_base();
    fs::create_dir_all(&base).expect("create scratch base");
    tempfile::Builder::new()
        .prefix("rw")
        .tempdir_in(&base)
        .expect("tempdir")
}

// The unit tests' helpers, the same file.
#[path = "../../src/test_support.rs"]
mod test_support;
#[allow(unused_imports)] // not every test crate uses them, like the rest of this module
pub use test_support::{
    cannot_run, drop_cached, effective_ids, find_tool, in_ci, noise, require, require_fuse,
    require_root, write_pieces,
};

mod mount;
#[allow(unused_imports)] // not every test crate mounts
pub use mount::{is_mounted, Mount, Mounting, NotMounted};

/// A real S3 server (s3s-fs) and the client environment that reaches it (the mirror tests).
pub mod s3;
/// A real sshd and the client side that reaches it (the remote tests).
pub mod sshd;

/// Canonical absolute path (no symlinks), as rewind and bup record it.
pub fn canon(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// Running processes

/// Captured result of a child process.
#[derive(Debug)]
pub struct Out {
    /// Exit code, or 128+signal if killed by a signal.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub what: String,
}

impl Out {
    /// The one line a failed command prints: exactly one, starting
    /// "rewind: error: ".
    #[track_caller]
    pub fn error_line(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("rewind: error: "),
            "{}: expected one error line, got:\n{}",
            self.what,
            self.stderr
        );
        lines[0].to_string()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Lines of stdout (lossy UTF-8).
    pub fn lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_owned).collect()
    }

    /// Asserts exit status 0 and returns self for chaining.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code,
            0,
            "{} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code,
            self.stdout_str(),
            self.stderr
        );
        self
    }

    /// Asserts the given exit status.
    #[track_caller]
    pub fn status(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            code,
            "{}: expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code,
            self.stdout_str(),
            self.stderr
        );
        self
    }

    /// Asserts the program did not panic (Rust panics print "panicked").
    #[track_caller]
    pub fn no_panic(self) -> Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{} panicked:\n{}",
            self.what,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "{}: stderr should mention {needle:?}, got:\n{}",
            self.what,
            self.stderr
        );
        self
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with a timeout, capturing stdout and stderr.
pub fn run(cmd: &mut Command) -> Out {
    run_with_input(cmd, None)
}

pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Out {
    run_until(cmd, input, CHILD_TIMEOUT)
        .unwrap_or_else(|what| panic!("{what} did not finish within {CHILD_TIMEOUT:?}"))
}

/// Like [`run`], but a child that outlives `limit` is killed and `None`
/// returned: for tests that count a hang as one outcome among others
/// instead of failing at the first.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Option<Out> {
    run_until(cmd, None, limit).ok()
}

/// Runs `cmd` with `input` on stdin; `Err(description)` if it had to be
/// killed after `limit`.
fn run_until(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Result<Out, String> {
    let what = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end when the pipes close; a grandchild holding
            // them open would keep them, so they are not joined.
            return Err(what);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = t_out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&t_err.join().expect("stderr reader")).into_owned();
    Ok(Out {
        code: exit_code(status),
        stdout,
        stderr,
        what,
    })
}

/// Sets the environment every child gets: fixed TZ, private HOME, no
/// REWIND_REPO, C locale so tool messages are stable.
fn base_env(cmd: &mut Command, home: &Path) {
    cmd.env("TZ", "UTC")
        .env("HOME", home)
        .env("LC_ALL", "C")
        .env_remove("REWIND_REPO")
        .env_remove("BUP_DIR")
        .env_remove("GIT_DIR");
}

/// A command builder for `rewind`.
pub struct Rw {
    cmd: Command,
}

impl Rw {
    /// `rewind` with no `-d` (for repo-resolution tests).
    pub fn bare(home: &Path) -> Rw {
        let mut cmd = Command::new(rewind_bin());
        base_env(&mut cmd, home);
        Rw { cmd }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Rw {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, a: I) -> Rw
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(a);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Rw {
        self.cmd.env(k, v);
        self
    }

    pub fn tz(self, tz: &str) -> Rw {
        self.env("TZ", tz)
    }

    pub fn run(mut self) -> Out {
        run(&mut self.cmd).no_panic()
    }

    /// Starts the child without waiting (for kill and concurrency tests).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.cmd.spawn().expect("spawn rewind")
    }

    pub fn command(self) -> Command {
        self.cmd
    }
}

/// A scratch directory with a repository path inside it (not yet created).
///
/// When an `Env` is dropped at the end of a passing test and its repository
/// exists, `git fsck --strict` must be clean: every repository a test writes
/// is checked. Tests that kill writers set `dangling_ok`; tests that corrupt
/// the repository on purpose set `corrupted`.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub repo: PathBuf,
    pub home: PathBuf,
    pub dangling_ok: std::cell::Cell<bool>,
    pub corrupted: std::cell::Cell<bool>,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempdir();
        let root = canon(tmp.path());
        let home = root.join("home");
        fs::create_dir(&home).expect("home");
        Env {
            repo: root.join("repo"),
            root,
            home,
            tmp,
            dangling_ok: std::cell::Cell::new(false),
            corrupted: std::cell::Cell::new(false),
        }
    }

    /// A new Env whose repository is already initialised by `rewind init`.
    pub fn init() -> Env {
        let e = Env::new();
        e.rw().arg("init").run().success();
        e
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `rewind -d REPO`.
    pub fn rw(&self) -> Rw {
        Rw::bare(&self.home).arg("-d").arg(&self.repo)
    }

    /// `rewind -d REPO save -n NAME --date DATE PATH`, asserting success.
    pub fn save(&self, name: &str, date: Option<&str>, path: &Path) -> Out {
        let mut r = self.rw().args(["save", "-n", name]);
        if let Some(d) = date {
            r = r.args(["--date", d]);
        }
        r.arg(path).run().success()
    }

    /// `rewind restore --outdir OUT SNAPPATH`, asserting success.
    pub fn restore(&self, out: &Path, snap_path: &OsStr) -> Out {
        self.rw()
            .arg("restore")
            .arg("--outdir")
            .arg(out)
            .arg(snap_path)
            .run()
            .success()
    }

    pub fn git(&self) -> Command {
        git(&self.repo)
    }

    /// `rewind ls PATH` under time zone `tz`: the names, without the `/`
    /// that marks directories, in rewind's order.
    pub fn ls_names(&self, tz: &str, path: &str) -> Vec<String> {
        self.rw()
            .tz(tz)
            .args(["ls", path])
            .run()
            .success()
            .lines()
            .into_iter()
            .map(|l| l.trim_end_matches('/').to_owned())
            .collect()
    }

    pub fn bup(&self) -> Command {
        bup(&self.repo, &self.home)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.corrupted.get() && self.repo.join("objects").is_dir()
        {
            assert_fsck(&self.repo, self.dangling_ok.get());
        }
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// `NAME/SNAP` followed by an absolute path (`NAME/SNAP/abs/path`).
pub fn snap_path(name: &str, snap: &str, abs: &Path) -> OsString {
    assert!(abs.is_absolute(), "{} must be absolute", abs.display());
    let mut v = format!("{name}/{snap}").into_bytes();
    v.extend_from_slice(abs.as_os_str().as_bytes());
    OsString::from_vec(v)
}

/// Same with a trailing slash (restore the directory's contents).
pub fn with_slash(p: &OsStr) -> OsString {
    let mut v = p.as_bytes().to_vec();
    v.push(b'/');
    OsString::from_vec(v)
}

/// `git --git-dir REPO` with ownership checks off (some repos are chowned).
pub fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .arg("-c")
        .arg("safe.directory=*")
        .arg("--git-dir")
        .arg(repo);
    c
}

/// `git` without a repository (clone and friends).
pub fn git_plain() -> Command {
    let mut c = Command::new("git");
    c.env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .arg("-c")
        .arg("safe.directory=*");
    c
}

/// `bup -d REPO` with a private HOME and TZ=UTC.
pub fn bup(repo: &Path, home: &Path) -> Command {
    let mut c = Command::new("bup");
    base_env(&mut c, home);
    c.arg("-d").arg(repo);
    c
}

/// Asserts `git fsck --strict` is clean: exit 0 and nothing reported except
/// (when `allow_dangling`) dangling objects, which an interrupted save may
/// legitimately leave behind.
#[track_caller]
pub fn assert_fsck(repo: &Path, allow_dangling: bool) {
    let out = run(git(repo).args(["fsck", "--strict", "--no-progress", "--full"]));
    let mut bad = Vec::new();
    for line in out.stdout_str().lines().chain(out.stderr.lines()) {
        let l = line.trim();
        if l.is_empty() || l.starts_with("Checking") || l.starts_with("notice:") {
            continue;
        }
        if allow_dangling && l.starts_with("dangling ") {
            continue;
        }
        bad.push(l.to_owned());
    }
    assert!(
        out.code == 0 && bad.is_empty(),
        "git fsck --strict on {} exited {} and reported:\n{}\nstderr:\n{}",
        repo.display(),
        out.code,
        bad.join("\n"),
        out.stderr
    );
}

/// Commit ids of a branch, newest first; empty if the branch does not exist.
pub fn branch_commits(repo: &Path, name: &str) -> Vec<String> {
    let out = run(git(repo).args(["rev-list", &format!("refs/heads/{name}"), "--"]));
    if out.code != 0 {
        return Vec::new();
    }
    out.lines()
}

/// The tip of a branch, if any.
pub fn branch_tip(repo: &Path, name: &str) -> Option<String> {
    let out = run(git(repo).args([
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("refs/heads/{name}^{{commit}}"),
    ]));
    (out.code == 0).then(|| out.stdout_str().trim().to_owned())
}

/// File names in `objects/pack`, sorted.
pub fn pack_dir_listing(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(repo.join("objects/pack"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Dated snapshot names printed by a listing (ignores `latest` and anything
/// not shaped like bup's `YYYY-MM-DD-HHMMSS[-N]`).
pub fn snapshot_names(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| is_snapshot_name(l))
        .collect()
}

pub fn is_snapshot_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 17 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let base = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'-'
        && digits(11..17);
    base && (b.len() == 17 || (b[17] == b'-' && b.len() > 18 && digits(18..b.len())))
}

/// `strftime("%Y-%m-%d-%H%M%S")` of an epoch in UTC, computed here without
/// any library so that the expectation does not share code with rewind.
pub fn utc_snapshot_name(epoch: i64) -> String {
    let days = epoch.div_euclid(86400);
    let secs = epoch.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---------------------------------------------------------------------------
// Building trees

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough to
/// defeat compression and deduplication.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        v.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes `len` pseudo-random bytes to `path` without holding them all.
pub fn write_random(path: &Path, seed: u64, len: usize) {
    let mut f = fs::File::create(path).expect("create random file");
    let mut left = len;
    let mut i = 0u64;
    while left > 0 {
        let n = left.min(1 << 20);
        f.write_all(&random_bytes(seed ^ (i << 32), n))
            .expect("write random");
        left -= n;
        i += 1;
    }
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in path")
}

#[track_caller]
fn check(rc: libc::c_int, what: &str, p: &Path) {
    if rc != 0 {
        panic!(
            "{what} {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
}

pub fn mknod(p: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    // SAFETY: the temporary CString lives to the end of the statement, so
    // the pointer is NUL-terminated and valid for the call, which reads it.
    check(
        unsafe { libc::mknod(cstr(p).as_ptr(), mode, dev) },
        "mknod",
        p,
    );
}

pub fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", p.display()));
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Sets atime and mtime with nanoseconds, not following symlinks.
pub fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ];
    // SAFETY: the temporary CString outlives the call (end of statement);
    // utimensat reads exactly two timespecs from ts, a live array of two.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cstr(p).as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(rc, "utimensat", p);
}

pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).expect("xattr name");
    // SAFETY: the path (a temporary living to the end of the statement)
    // and n are NUL-terminated; the kernel reads value.len() bytes of value.
    let rc = unsafe {
        libc::lsetxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc, "setxattr", p);
}

/// uid and primary gid of a named user, from `id` (getpwnam's static
/// buffer is not safe to read while tests on other threads look users up).
pub fn user_ids(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run(Command::new("id").arg(flag).arg(name));
        assert_eq!(out.code, 0, "no user {name}: {}", out.stderr);
        out.stdout_str().trim().parse().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// A scratch root for running rewind as the unprivileged user `nobody`, so
/// that a mode-0000 file really cannot be read: a world-traversable
/// directory under /var/tmp (the build tree may sit under a 0700 home), a
/// copy of the binary that user can execute, and a home it owns.
pub struct Nobody {
    pub root: PathBuf,
    pub bin: PathBuf,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    _dir: tempfile::TempDir,
}

impl Nobody {
    pub fn new() -> Nobody {
        let dir = tempfile::Builder::new()
            .prefix("rw-nobody")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = canon(dir.path());
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let bin = root.join("rewind");
        fs::copy(rewind_bin(), &bin).unwrap();
        chmod(&bin, 0o755);
        let (uid, gid) = user_ids("nobody");
        let home = root.join("home");
        mkdir(&home);
        lchown(&home, uid, gid);
        Nobody {
            root,
            bin,
            home,
            uid,
            gid,
            _dir: dir,
        }
    }

    /// Hands `path` (a repository made as root) over to the user.
    pub fn give(&self, path: &Path) {
        sh(Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path));
    }

    /// The binary run as the user, with its home, `TZ=UTC` and no
    /// `REWIND_REPO`; the caller adds the arguments.
    pub fn rewind(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(&self.bin)
            .env("HOME", &self.home)
            .env("TZ", "UTC")
            .env_remove("REWIND_REPO");
        c
    }
}

impl Default for Nobody {
    fn default() -> Self {
        Nobody::new()
    }
}

#[track_caller]
pub fn sh(cmd: &mut Command) {
    run(cmd).success();
}

pub fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

pub fn mkdir(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
}

/// A path inside `dir` from raw name bytes.
pub fn raw(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// Names in the zoo that tests refer to.
pub mod zoo {
    pub const REGULAR: &str = "regular.txt";
    pub const REGULAR_CONTENT: &[u8] = b"hello, rewind\nsecond line\n";
    pub const BIG: &str = "big.bin";
    pub const SPARSE: &str = "sparse.img";
    pub const SPARSE_LEN: u64 = 16 << 20;
    pub const PLAIN_DIR: &str = "plain";
}

/// Builds a tree in `dir` with every kind of file, name and metadata the
/// backup must preserve. Must run as root (devices, chown). Times are set
/// last, children before parents, so every entry (directories and symlinks
/// included) ends with a distinct mtime that has a non-zero nanosecond part.
pub fn make_zoo(dir: &Path) {
    mkdir(dir);
    let p = |rel: &str| dir.join(rel);

    // Regular files.
    write(&p(zoo::REGULAR), zoo::REGULAR_CONTENT);
    write(&p("empty"), b"");
    // Multi-chunk: random (no dedup, no compression) then a compressible tail.
    {
        let mut data = random_bytes(1, 3 << 20);
        let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
        while data.len() < (4 << 20) + 12345 {
            data.extend_from_slice(line);
        }
        write(&p(zoo::BIG), &data);
    }
    // Sparse: data islands and a trailing hole.
    {
        let f = fs::File::create(p(zoo::SPARSE)).expect("sparse");
        f.set_len(zoo::SPARSE_LEN).expect("truncate");
        use std::os::unix::fs::FileExt;
        f.write_all_at(&random_bytes(2, 4096), 0).expect("w");
        f.write_all_at(&random_bytes(3, 65536), 5 << 20).expect("w");
        f.write_all_at(b"island", (9 << 20) + 17).expect("w");
    }

    // A directory of ordinary things, for listings that must agree with bup.
    let plain = p(zoo::PLAIN_DIR);
    mkdir(&plain);
    write(&plain.join("a.txt"), b"alpha\n");
    write(&plain.join("b.conf"), &random_bytes(4, 1000));
    write(&plain.join("c-chunked.dat"), &random_bytes(5, 300_000));
    chmod(&plain.join("b.conf"), 0o600);
    write(&plain.join("run.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&plain.join("run.sh"), 0o755);
    mkdir(&plain.join("subdir"));
    symlink("a.txt", plain.join("link-to-a")).expect("symlink");
    write(&plain.join("owned"), b"owned by 1234\n");
    lchown(&plain.join("owned"), 1234, 5678);

    // Symlinks: relative, dangling, absolute, to a directory, owned.
    let links = p("links");
    mkdir(&links);
    symlink("../regular.txt", links.join("rel")).expect("symlink");
    symlink("no/such/target", links.join("dangling")).expect("symlink");
    symlink("/etc/hostname", links.join("abs")).expect("symlink");
    symlink("../dirs", links.join("to-dir")).expect("symlink");
    symlink("x", links.join("owned")).expect("symlink");
    lchown(&links.join("owned"), 1234, 5678);

    // Hardlinks: a group of three across directories and a pair.
    let hard = p("hard");
    mkdir(&hard.join("sub"));
    write(&hard.join("a1"), b"group a\n");
    fs::hard_link(hard.join("a1"), hard.join("a2")).expect("link");
    fs::hard_link(hard.join("a1"), hard.join("sub/a3")).expect("link");
    write(&hard.join("b1"), b"group b\n");
    fs::hard_link(hard.join("b1"), hard.join("b2")).expect("link");
    // Same content as group b but a separate inode: must stay separate.
    write(&hard.join("b-lookalike"), b"group b\n");

    // Special files.
    let special = p("special");
    mkdir(&special);
    mknod(&special.join("fifo"), libc::S_IFIFO | 0o640, 0);
    {
        let sock = special.join("sock");
        match std::os::unix::net::UnixListener::bind(&sock) {
            Ok(l) => drop(l),
            // Paths longer than sun_path: create the inode directly.
            Err(_) => mknod(&sock, libc::S_IFSOCK | 0o755, 0),
        }
    }
    mknod(
        &special.join("chr"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    mknod(
        &special.join("blk"),
        libc::S_IFBLK | 0o660,
        libc::makedev(7, 200),
    );

    // Empty directories.
    mkdir(&p("dirs/empty"));
    mkdir(&p("dirs/nested/deeper/empty"));

    // Awkward names.
    let names = p("names");
    mkdir(&names);
    let raw_files: &[&[u8]] = &[
        b"with space",
        b" leading space",
        b"new\nline",
        b"bad-\xff\xfe-utf8",
        b"tab\there",
        b"x.bup",
        b"x.bupm",
        b"x.bupl",
        b"x.bup.bupl",
        b".bupm",
        b".hidden",
        b"-dash",
        b"\xc3\xbcn\xc3\xafc\xc3\xb6de",
        b"back\\slash",
        b"star*?[q]",
    ];
    for (i, n) in raw_files.iter().enumerate() {
        write(&raw(&names, n), format!("name #{i}\n").as_bytes());
    }
    // A chunked file whose name ends in .bup (mangled twice by bup).
    write(&names.join("chunky.bup"), &random_bytes(6, 100_000));
    mkdir(&names.join("d.bup"));
    write(&names.join("d.bup/inside"), b"inside d.bup\n");
    mkdir(&names.join("e.bupm"));
    mkdir(&raw(&names, b"dir\xffbad"));
    write(&raw(&names, b"dir\xffbad/f"), b"in a badly named dir\n");

    // Metadata: xattrs and ACLs.
    let meta = p("meta");
    mkdir(&meta);
    write(&meta.join("xattr-file"), b"has xattrs\n");
    set_xattr(&meta.join("xattr-file"), "user.comment", b"hello");
    set_xattr(&meta.join("xattr-file"), "user.binary", b"\x00\x01\xff\n");
    mkdir(&meta.join("xattr-dir"));
    set_xattr(&meta.join("xattr-dir"), "user.dir", b"on a directory");
    write(&meta.join("acl-file"), b"has an acl\n");
    sh(Command::new("setfacl")
        .arg("-m")
        .arg("u:1234:rw,g:5678:r,m::rw")
        .arg(meta.join("acl-file")));
    mkdir(&meta.join("acl-dir"));
    sh(Command::new("setfacl")
        .arg("-m")
        .arg("u:1234:rwx")
        .arg("-d")
        .arg("-m")
        .arg("u:1234:rx,g:5678:rwx")
        .arg(meta.join("acl-dir")));
    // Inherits the default ACL as its access ACL.
    write(&meta.join("acl-dir/child"), b"inherited acl\n");

    // Owners (chown before chmod: chown clears setuid bits).
    let owners = p("owners");
    mkdir(&owners.join("dir-1234"));
    write(&owners.join("u1234"), b"numeric owner\n");
    lchown(&owners.join("u1234"), 1234, 5678);
    lchown(&owners.join("dir-1234"), 1234, 5678);
    let (nuid, ngid) = user_ids("nobody");
    write(&owners.join("nobody"), b"named owner\n");
    lchown(&owners.join("nobody"), nuid, ngid);

    // Modes.
    let modes = p("modes");
    mkdir(&modes);
    for (name, mode) in [
        ("m0600", 0o600),
        ("m0755", 0o755),
        ("m0000", 0o000),
        ("m0444", 0o444),
        ("setuid", 0o4755),
        ("setgid", 0o2750),
        ("all", 0o7777),
    ] {
        write(&modes.join(name), name.as_bytes());
        chmod(&modes.join(name), mode);
    }
    mkdir(&modes.join("sticky-dir"));
    chmod(&modes.join("sticky-dir"), 0o1777);
    mkdir(&modes.join("private-dir"));
    write(&modes.join("private-dir/f"), b"in a 0700 dir\n");
    chmod(&modes.join("private-dir"), 0o700);
    mkdir(&modes.join("setgid-dir"));
    chmod(&modes.join("setgid-dir"), 0o2775);

    // Times beyond the ordinary: pre-1970 and far future.
    let times = p("times");
    mkdir(&times);
    write(&times.join("old"), b"before the epoch\n");
    write(&times.join("future"), b"after 2038\n");

    chmod(dir, 0o755);
    set_all_times(dir);
    set_times(
        &times.join("old"),
        (-100_000_000, 250_000_000),
        (-86_400 * 365, 500_000_001),
    );
    set_times(
        &times.join("future"),
        (4_102_444_800, 1),
        (4_102_444_800 + 12_345, 999_999_999),
    );
}

/// Gives every entry under `dir` (and `dir`) deterministic, distinct times
/// with nanoseconds; children first so directory mtimes stick.
pub fn set_all_times(dir: &Path) {
    let mut all = Vec::new();
    walk(dir, &mut all);
    // Deepest first: setting a child's times does not touch its parent, but
    // creating entries would, and there is no creation after this point.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        let i = i as i64;
        let mtime = (
            1_600_000_000 + i * 3_607,
            (i * 123_456_791 + 7) % 1_000_000_000,
        );
        let atime = (
            1_650_000_000 + i * 11,
            (i * 987_654_323 + 3) % 1_000_000_000,
        );
        set_times(p, atime, mtime);
    }
}

/// All paths under `dir` including `dir`, not following symlinks.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    let md = fs::symlink_metadata(dir).expect("lstat");
    if md.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    }
}

/// A tree of many small files (bup chunks the `.bupm` of big directories).
pub fn make_big_dir(dir: &Path, n: usize) {
    mkdir(dir);
    for i in 0..n {
        write(
            &dir.join(format!("f{i:05}")),
            format!("file {i}\n").as_bytes(),
        );
    }
}

// ---------------------------------------------------------------------------
// Comparing trees

/// What to compare. Every difference is reported as "CATEGORY: path: detail"
/// so tests can tell known limitations from regressions.
#[derive(Clone, Debug)]
pub struct Compare {
    /// Check that files in `b` allocate no more than `a` plus slack.
    pub sparse: bool,
    /// Check atime of fifos, sockets and devices (nothing reads those, so a
    /// backup can preserve them exactly).
    pub atime: bool,
    /// Compare the metadata of the two roots themselves.
    pub root_meta: bool,
    /// Categories whose differences are dropped (e.g. "sparse").
    pub ignore: Vec<&'static str>,
}

impl Default for Compare {
    fn default() -> Self {
        Compare {
            sparse: true,
            atime: true,
            root_meta: true,
            ignore: Vec::new(),
        }
    }
}

/// Compares tree `b` against reference tree `a` with every check enabled.
pub fn compare_trees(a: &Path, b: &Path) -> Vec<String> {
    compare_with(a, b, &Compare::default())
}

#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    assert_compares_equal(a, b, &Compare::default());
}

/// As [`assert_same_tree`], but the roots' own metadata aside (they are
/// `--outdir` folders the restore made, say).
#[track_caller]
pub fn assert_same_below_root(a: &Path, b: &Path) {
    let compare = Compare {
        root_meta: false,
        ..Compare::default()
    };
    assert_compares_equal(a, b, &compare);
}

#[track_caller]
fn assert_compares_equal(a: &Path, b: &Path, compare: &Compare) {
    let d = compare_with(a, b, compare);
    assert!(
        d.is_empty(),
        "{} differs from {} in {} ways:\n{}",
        b.display(),
        a.display(),
        d.len(),
        d.join("\n")
    );
}

fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        ".".to_owned()
    } else {
        rel.escape_ascii().to_string()
    }
}

/// Relative path bytes -> lstat, for every entry below `root` (root = "").
fn index_tree(root: &Path) -> BTreeMap<Vec<u8>, fs::Metadata> {
    let mut all = Vec::new();
    walk(root, &mut all);
    let rb = root.as_os_str().as_bytes();
    all.into_iter()
        .map(|p| {
            let pb = p.as_os_str().as_bytes();
            let rel = pb[rb.len()..].strip_prefix(b"/").unwrap_or(&pb[rb.len()..]);
            let md = fs::symlink_metadata(&p).expect("lstat");
            (rel.to_vec(), md)
        })
        .collect()
}

fn kind(md: &fs::Metadata) -> &'static str {
    match md.mode() & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "chardev",
        libc::S_IFBLK => "blockdev",
        _ => "unknown",
    }
}

/// All xattrs of a path (not following symlinks), name -> value.
pub fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = cstr(p);
    let mut out = BTreeMap::new();
    // SAFETY: c is NUL-terminated and outlives the call; a null buffer of
    // length 0 only asks for the size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return out;
    }
    let mut buf = vec![0u8; n as usize + 256];
    // SAFETY: c outlives the call; buf is live and exactly buf.len() bytes,
    // of which the kernel writes at most that many.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return out;
    }
    buf.truncate(n as usize);
    for name in buf.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).expect("xattr name");
        // SAFETY: c and cn are NUL-terminated and outlive the call; a null
        // buffer of length 0 only asks for the size.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        let mut val = vec![0u8; len.max(0) as usize + 256];
        // SAFETY: c and cn outlive the call; val is live and exactly
        // val.len() bytes, of which the kernel writes at most that many.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        val.truncate(len.max(0) as usize);
        out.insert(name.to_vec(), val);
    }
    out
}

/// `getfacl` text with numeric ids and without the header (which names the path).
fn getfacl(p: &Path) -> String {
    let out = run(Command::new("getfacl")
        .args(["-n", "-P", "--omit-header", "--absolute-names"])
        .arg(p));
    format!("{}{}", out.stdout_str(), out.stderr)
}

/// Compares the contents of two files; returns the first differing offset.
fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let mut fa = fs::File::open(a).ok()?;
    let mut fb = match fs::File::open(b) {
        Ok(f) => f,
        Err(_) => return Some(0),
    };
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if let Some(i) = (0..na.min(nb)).find(|&i| ba[i] != bb[i]) {
            return Some(off + i as u64);
        }
        if na != nb {
            return Some(off + na.min(nb) as u64);
        }
        if na == 0 {
            return None;
        }
        off += na as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

/// For each non-directory path, the set of paths sharing its inode.
fn link_groups(idx: &BTreeMap<Vec<u8>, fs::Metadata>) -> BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> {
    let mut by_ino: BTreeMap<(u64, u64), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for (rel, md) in idx {
        if !md.is_dir() {
            by_ino
                .entry((md.dev(), md.ino()))
                .or_default()
                .insert(rel.clone());
        }
    }
    let mut out = BTreeMap::new();
    for set in by_ino.values() {
        for p in set {
            out.insert(p.clone(), set.clone());
        }
    }
    out
}

/// Compares tree `b` with reference tree `a` without trusting any tool under
/// test: types, permission bits, owners, content bytes, mtimes to the
/// nanosecond, symlink targets, device numbers, xattrs, ACLs, hardlink
/// groups and (optionally) sparseness and atimes.
pub fn compare_with(a: &Path, b: &Path, opts: &Compare) -> Vec<String> {
    for root in [a, b] {
        if fs::symlink_metadata(root).is_err() {
            return vec![format!("missing: .: {} does not exist", root.display())];
        }
    }
    let ia = index_tree(a);
    let ib = index_tree(b);
    let mut diffs = Vec::new();
    let mut push = |cat: &'static str, rel: &[u8], detail: String| {
        if !opts.ignore.contains(&cat) {
            diffs.push(format!("{cat}: {}: {detail}", show(rel)));
        }
    };

    for rel in ia.keys() {
        if !ib.contains_key(rel) {
            push("missing", rel, format!("absent from {}", b.display()));
        }
    }
    for rel in ib.keys() {
        if !ia.contains_key(rel) {
            push("extra", rel, format!("not in {}", a.display()));
        }
    }

    for (rel, ma) in &ia {
        let Some(mb) = ib.get(rel) else { continue };
        let pa = if rel.is_empty() {
            a.to_path_buf()
        } else {
            raw(a, rel)
        };
        let pb = if rel.is_empty() {
            b.to_path_buf()
        } else {
            raw(b, rel)
        };
        let (ka, kb) = (kind(ma), kind(mb));
        if ka != kb {
            push("type", rel, format!("{ka} vs {kb}"));
            continue;
        }
        let is_root = rel.is_empty();
        if !is_root || opts.root_meta {
            if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
                push(
                    "mode",
                    rel,
                    format!("{:04o} vs {:04o}", ma.mode() & 0o7777, mb.mode() & 0o7777),
                );
            }
            if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
                push(
                    "owner",
                    rel,
                    format!("{}:{} vs {}:{}", ma.uid(), ma.gid(), mb.uid(), mb.gid()),
                );
            }
            if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
                push(
                    "mtime",
                    rel,
                    format!(
                        "{}.{:09} vs {}.{:09}",
                        ma.mtime(),
                        ma.mtime_nsec(),
                        mb.mtime(),
                        mb.mtime_nsec()
                    ),
                );
            }
            let xa = xattrs(&pa);
            let xb = xattrs(&pb);
            let names: BTreeSet<&Vec<u8>> = xa.keys().chain(xb.keys()).collect();
            let mut has_acl = false;
            for n in names {
                if n.starts_with(b"system.posix_acl") {
                    has_acl = true;
                }
                let (va, vb) = (xa.get(n), xb.get(n));
                if va != vb {
                    push(
                        "xattr",
                        rel,
                        format!(
                            "{}: {:?} vs {:?}",
                            show(n),
                            va.map(|v| show(v)),
                            vb.map(|v| show(v))
                        ),
                    );
                }
            }
            if has_acl {
                let (fa, fb) = (getfacl(&pa), getfacl(&pb));
                if fa != fb {
                    push("acl", rel, format!("{fa:?} vs {fb:?}"));
                }
            }
        }
        match ka {
            "file" => {
                if ma.len() != mb.len() {
                    push("size", rel, format!("{} vs {}", ma.len(), mb.len()));
                }
                if let Some(off) = first_difference(&pa, &pb) {
                    push("content", rel, format!("first difference at byte {off}"));
                }
                if opts.sparse {
                    let (ba, bb) = (ma.blocks() * 512, mb.blocks() * 512);
                    let slack = 256 * 1024 + ba / 8;
                    if bb > ba + slack {
                        push(
                            "sparse",
                            rel,
                            format!("{bb} bytes allocated vs {ba} in the source"),
                        );
                    }
                }
            }
            "symlink" => {
                let (ta, tb) = (fs::read_link(&pa).ok(), fs::read_link(&pb).ok());
                if ta != tb {
                    push("target", rel, format!("{ta:?} vs {tb:?}"));
                }
            }
            "chardev" | "blockdev" if ma.rdev() != mb.rdev() => {
                push("rdev", rel, format!("{} vs {}", ma.rdev(), mb.rdev()));
            }
            _ => {}
        }
        if opts.atime
            && matches!(ka, "fifo" | "socket" | "chardev" | "blockdev")
            && (ma.atime(), ma.atime_nsec()) != (mb.atime(), mb.atime_nsec())
        {
            push(
                "atime",
                rel,
                format!(
                    "{}.{:09} vs {}.{:09}",
                    ma.atime(),
                    ma.atime_nsec(),
                    mb.atime(),
                    mb.atime_nsec()
                ),
            );
        }
    }

    let (ga, gb) = (link_groups(&ia), link_groups(&ib));
    for (rel, set_a) in &ga {
        let Some(set_b) = gb.get(rel) else { continue };
        // Only paths present on both sides matter; missing ones are reported above.
        let set_a: BTreeSet<_> = set_a.iter().filter(|p| ib.contains_key(*p)).collect();
        let set_b: BTreeSet<_> = set_b.iter().filter(|p| ia.contains_key(*p)).collect();
        if set_a != set_b {
            let fmt =
                |s: &BTreeSet<&Vec<u8>>| s.iter().map(|p| show(p)).collect::<Vec<_>>().join(", ");
            push(
                "hardlink",
                rel,
                format!("linked with [{}] vs [{}]", fmt(&set_a), fmt(&set_b)),
            );
        }
    }
    diffs
}

/// Copies a tree with `cp -a` (an independent reference copy).
pub fn cp_a(from: &Path, to: &Path) {
    sh(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// A tmpfs mount that is unmounted (lazily) when dropped.
pub struct TmpfsMount {
    pub path: PathBuf,
}

impl TmpfsMount {
    pub fn new(path: &Path, size: &str) -> TmpfsMount {
        mkdir(path);
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(path));
        assert_eq!(
            out.code, 0,
            "mounting a tmpfs needs root with CAP_SYS_ADMIN: {}",
            out.stderr
        );
        TmpfsMount {
            path: path.to_path_buf(),
        }
    }

    /// Bytes used on the mount.
    pub fn used(&self) -> u64 {
        let c = cstr(&self.path);
        // SAFETY: libc::statvfs is a C struct of plain integers, for which
        // all-zero bytes are a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is NUL-terminated and outlives the call; st is a live
        // exclusive borrow of a whole struct statvfs, which the call fills.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `ls -l` style mode string (`-rwsr-xr-x`), computed from st_mode here.
pub fn mode_string(mode: u32) -> String {
    let t = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        _ => '-',
    };
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: u32, s: u32, lower: char, upper: char| match (mode & x != 0, mode & s != 0) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        t,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// One parsed `ls -l` line: mode, owner, size, the text between size and
/// name (the date), and the name (a ` -> target` suffix removed).
#[derive(Debug, Clone, PartialEq)]
pub struct LsLine {
    pub mode: String,
    pub owner: String,
    pub size: String,
    pub middle: String,
    pub name: String,
}

/// Parses `MODE OWNER SIZE DATE... NAME [-> TARGET]` lines whose name has no
/// spaces; lines that do not fit are skipped.
pub fn parse_ls_long(lines: &[String]) -> Vec<LsLine> {
    lines
        .iter()
        .filter_map(|l| {
            let l = match l.find(" -> ") {
                Some(i) => &l[..i],
                None => l.as_str(),
            };
            let t: Vec<&str> = l.split_whitespace().collect();
            if t.len() < 5 {
                return None;
            }
            Some(LsLine {
                mode: t[0].to_owned(),
                owner: t[1].to_owned(),
                size: t[2].to_owned(),
                middle: t[3..t.len() - 1].join(" "),
                name: t[t.len() - 1].to_owned(),
            })
        })
        .collect()
}

/// Names printed by a short listing, with a trailing `/` (directory marker)
/// removed.
pub fn listed_names(out: &Out) -> Vec<String> {
    out.lines()
        .into_iter()
        .map(|l| l.strip_suffix('/').map(str::to_owned).unwrap_or(l))
        .collect()
}

/// Waits for a spawned child (see `Rw::spawn`) with the usual timeout and
/// collects its stderr.
pub fn finish(mut child: std::process::Child, what: &str) -> Out {
    let mut se = child.stderr.take();
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = String::from_utf8_lossy(&t_err.join().expect("stderr reader")).into_owned();
    Out {
        code: exit_code(status),
        stdout: Vec::new(),
        stderr,
        what: what.to_owned(),
    }
}

/// The repository's gc lock file (`rewind/gc.lock`), opened as gc and
/// the writers open it, for a test to hold it itself.
pub fn open_gc_lock(repo: &Path) -> fs::File {
    fs::create_dir_all(repo.join("rewind")).expect("rewind dir");
    fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(repo.join("rewind/gc.lock"))
        .expect("open gc.lock")
}
