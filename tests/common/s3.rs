//! A real S3-compatible server for the mirror tests: `s3s-fs` on 127.0.0.1.
//!
//! [`S3Server::start`] runs `s3s-fs` on a free port with a fresh random
//! access key and secret key (it checks every request's AWS signature V4
//! against them) and its storage root in a temporary directory. The
//! client side is environment variables only ([`S3Server::apply`]): the
//! AWS variables of the machine running the tests never reach a client,
//! so a CA bundle, profile or session token there changes nothing.
//!
//! What s3s-fs 0.14.1 keeps on disk, found by experiment and in its
//! `fs.rs`, and what the methods here rely on:
//! - a bucket is the directory `ROOT/BUCKET`: creating that directory
//!   creates the bucket ([`S3Server::create_bucket`]), removing it makes
//!   every request on it fail with NoSuchBucket;
//! - an object's bytes are the plain file `ROOT/BUCKET/KEY` (a `/` in a
//!   key is a subdirectory): [`S3Server::object_file`] is where a test
//!   damages or deletes one;
//! - its bookkeeping lives beside the buckets, never inside one: per
//!   object `ROOT/.bucket-B64(BUCKET).object-B64(KEY).internal.json`
//!   (the ETag, an MD5 computed at upload and not recomputed on a read,
//!   so bytes damaged on disk are served under the ETag of the good ones)
//!   and `...metadata.json` (content type, user metadata); per multipart
//!   upload begun and neither completed nor aborted `ROOT/.upload-UUID.json`
//!   and its parts `ROOT/.upload_id-UUID.part-N`; uploads in flight
//!   `ROOT/.tmp.N.internal.part`, removed when the server starts.
//!
//! Where s3s-fs 0.14.1 differs from S3 (pinned in tests/s3_harness.rs):
//! a HEAD of a key that is a prefix of others (a directory on disk) is a
//! 500 InternalError, not a 404; listings carry no ETag (a client that
//! wants checksums asks HEAD or GET; `s3cmd sync` fails on it); and an
//! empty `delimiter=` parameter is taken as a delimiter (rclone's
//! recursive listing finds nothing; object_store omits the parameter).
//!
//! [`S3Server::stop`] kills the server with SIGKILL, as a crash or a
//! power cut would, and [`S3Server::restart`] brings it back on the same
//! port, root and keys: what a client sees when the server dies in the
//! middle of a push.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cannot_run, find_tool};

/// How long s3s-fs may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Attempts at a free port: another process may take the port between our
/// probe and the server's bind.
const PORT_ATTEMPTS: usize = 5;
/// The address the server listens on and clients connect to.
const HOST: &str = "127.0.0.1";
/// The region clients sign for. s3s-fs accepts any well-formed region, but
/// every client must sign for the same one it is told.
pub const REGION: &str = "us-east-1";
/// The version `.ci/run` installs; newer ones need a newer rustc.
pub const S3S_FS_VERSION: &str = "0.14.1";
/// The AWS variables a client could pick up from the machine, removed
/// from every client's environment besides every other `AWS_*` variable
/// the test process has. Named here too so that they are removed even if
/// the test process gains them after `apply` looked.
const FOREIGN_AWS: &[&str] = &[
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// A running `s3s-fs`, killed when dropped; its storage goes with it.
pub struct S3Server {
    _tmp: tempfile::TempDir,
    /// The scratch directory (canonical): `root/` and `s3s-fs.log`.
    dir: PathBuf,
    /// The storage root handed to s3s-fs.
    root: PathBuf,
    binary: PathBuf,
    /// `None` while stopped.
    child: Option<Child>,
    port: u16,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// Starts s3s-fs, or returns `None` when it is not installed outside CI
    /// (see [`cannot_run`]; under CI that fails the test). Panics with the
    /// server's log if it does not come up.
    pub fn start() -> Option<S3Server> {
        let binary = s3s_fs()?;
        let tmp = super::tempdir();
        let dir = super::canon(tmp.path());
        let root = dir.join("root");
        fs::create_dir(&root).expect("create the S3 storage root");
        let mut server = S3Server {
            _tmp: tmp,
            dir,
            root,
            binary,
            child: None,
            port: 0,
            access_key: random_hex(10),
            secret_key: random_hex(20),
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(log) => {
                    let taken = log.contains("Address already in use");
                    last_log = log;
                    if !taken {
                        break;
                    }
                }
            }
        }
        panic!(
            "s3s-fs did not accept connections on {HOST} within {READY_WITHIN:?}; its log:\n{last_log}"
        );
    }

    /// Runs the server on `self.port` and waits until it accepts
    /// connections; `Err(log)` if it exits or time runs out first.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "s3s-fs is already running");
        let log = self.dir.join("s3s-fs.log");
        // Appended to: a restart keeps what the server said before.
        let log_file = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open s3s-fs.log")
        };
        let mut child = Command::new(&self.binary)
            .args(["--host", HOST, "--port", &self.port.to_string()])
            .args(["--access-key", &self.access_key])
            .args(["--secret-key", &self.secret_key])
            .arg(&self.root)
            // Its tracing goes to stdout; warnings and errors (a refused
            // signature, say) are what a failing test wants to see.
            .env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        let start = Instant::now();
        while start.elapsed() < READY_WITHIN {
            if child.try_wait().expect("wait for s3s-fs").is_some() {
                return Err(fs::read_to_string(&log).unwrap_or_default());
            }
            if TcpStream::connect((HOST, self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(fs::read_to_string(&log).unwrap_or_default())
    }

    /// Kills the server with SIGKILL (no graceful shutdown: uploads in
    /// flight are cut) and waits for it to exit. Requests fail with
    /// "connection refused" until [`S3Server::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, root and keys, stopping
    /// it first if it runs. Panics with its log if it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        // Should another process have taken the port meanwhile, the
        // panic shows the server's "Address already in use".
        if let Err(log) = self.spawn() {
            panic!(
                "s3s-fs did not come back on {HOST}:{} within {READY_WITHIN:?}; its log:\n{log}",
                self.port
            );
        }
    }

    /// Whether the server process is running (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("wait for s3s-fs").is_none(),
            None => false,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{HOST}:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The storage root: one directory per bucket, bookkeeping beside them.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The scratch directory holding the root, the log and client configs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the server has logged so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("s3s-fs.log")).unwrap_or_default()
    }

    /// `s3://BUCKET/PREFIX`, or `s3://BUCKET` for an empty prefix.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        }
    }

    /// Creates an empty bucket. A directory under the root is a bucket to
    /// s3s-fs (checked in tests/s3_harness.rs), so no request is needed.
    /// Panics on a name S3 would refuse, so that a test does not
    /// mistake the refusal for the behaviour it checks.
    pub fn create_bucket(&self, name: &str) {
        assert!(
            valid_bucket_name(name),
            "{name:?} is not a valid S3 bucket name (3 to 63 of a-z, 0-9, '-', '.', starting and ending with a letter or digit)"
        );
        fs::create_dir(self.root.join(name))
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
    }

    /// Removes a bucket and every object in it, as if someone deleted it
    /// from under the client (its bookkeeping files stay, unused).
    pub fn remove_bucket(&self, name: &str) {
        fs::remove_dir_all(self.root.join(name))
            .unwrap_or_else(|e| panic!("remove bucket {name}: {e}"));
    }

    /// The environment a client needs to reach this server: credentials,
    /// region, endpoint, and permission to use plain HTTP.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Gives `cmd` [`S3Server::env`] and removes every other AWS variable
    /// (a CA bundle, a profile, a session token, a default region, config
    /// and credential files, ...), so that only this server's settings
    /// reach the client. Returns `cmd` for chaining.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&key);
            }
        }
        for key in FOREIGN_AWS {
            cmd.env_remove(key);
        }
        cmd.envs(self.env())
    }

    /// Where s3s-fs keeps the bytes of `key` in `bucket`: overwrite it to
    /// damage the object (its recorded ETag does not change), remove it
    /// to lose the object.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        assert!(
            !key.is_empty() && !key.starts_with('/') && !key.split('/').any(|c| c == ".."),
            "key {key:?} does not name a file under the bucket"
        );
        self.root.join(bucket).join(key)
    }

    /// The keys of every object in `bucket`, sorted, from the files under
    /// its directory (s3s-fs's bookkeeping is outside it). Panics if the
    /// bucket does not exist.
    pub fn list_objects(&self, bucket: &str) -> Vec<String> {
        let dir = self.root.join(bucket);
        assert!(
            dir.is_dir(),
            "no bucket {bucket} under {}",
            self.root.display()
        );
        let mut keys = Vec::new();
        walk(&dir, "", &mut keys);
        keys.sort();
        keys
    }

    /// The keys under `prefix` in `bucket` (`prefix` taken as is: give
    /// `"web/"` to exclude `"web2/..."`).
    pub fn list_prefix(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.list_objects(bucket)
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    /// Multipart uploads begun and neither completed nor aborted, on any
    /// bucket: what an interrupted push leaves until it resumes or aborts
    /// them.
    pub fn open_multipart_uploads(&self) -> usize {
        fs::read_dir(&self.root)
            .expect("read the S3 storage root")
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(".upload-") && name.ends_with(".json")
            })
            .count()
    }

    /// The s3cmd configuration file for this server (written on first
    /// use): path-style requests, plain HTTP, signature V4 for
    /// [`REGION`].
    pub fn s3cmd_config(&self) -> PathBuf {
        let config = self.dir.join("s3cmd.cfg");
        if !config.exists() {
            let host = format!("{HOST}:{}", self.port);
            fs::write(
                &config,
                format!(
                    "[default]\n\
                     access_key = {ak}\n\
                     secret_key = {sk}\n\
                     host_base = {host}\n\
                     host_bucket = {host}\n\
                     bucket_location = {REGION}\n\
                     use_https = False\n\
                     signature_v2 = False\n\
                     progress_meter = False\n",
                    ak = self.access_key,
                    sk = self.secret_key,
                ),
            )
            .expect("write s3cmd.cfg");
        }
        config
    }

    /// An `s3cmd` command set up for this server by
    /// [`S3Server::s3cmd_config`] (nothing read from `~/.s3cfg`). The
    /// caller checks `require("s3cmd")`.
    pub fn s3cmd(&self) -> Command {
        let mut cmd = Command::new("s3cmd");
        cmd.arg("-c").arg(self.s3cmd_config());
        for key in FOREIGN_AWS {
            cmd.env_remove(key);
        }
        cmd
    }

    /// An `rclone` command with the remote `s3test:` set to this server by
    /// `RCLONE_CONFIG_S3TEST_*` variables and an empty config file (nothing
    /// read from `~/.config/rclone`). `AWS_CA_BUNDLE` is removed: rclone
    /// refuses it with a plain-HTTP endpoint. The caller checks
    /// `require("rclone")`.
    pub fn rclone(&self) -> Command {
        let config = self.dir.join("rclone.conf");
        if !config.exists() {
            File::create(&config).expect("create rclone.conf");
        }
        let mut cmd = Command::new("rclone");
        for key in FOREIGN_AWS {
            cmd.env_remove(key);
        }
        cmd.arg("--config")
            .arg(config)
            .env("RCLONE_CONFIG_S3TEST_TYPE", "s3")
            .env("RCLONE_CONFIG_S3TEST_PROVIDER", "Other")
            .env("RCLONE_CONFIG_S3TEST_ENV_AUTH", "false")
            .env("RCLONE_CONFIG_S3TEST_ACCESS_KEY_ID", &self.access_key)
            .env("RCLONE_CONFIG_S3TEST_SECRET_ACCESS_KEY", &self.secret_key)
            .env("RCLONE_CONFIG_S3TEST_REGION", REGION)
            .env("RCLONE_CONFIG_S3TEST_ENDPOINT", self.endpoint())
            .env("RCLONE_CONFIG_S3TEST_FORCE_PATH_STYLE", "true");
        cmd
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The s3s-fs binary: on the PATH, or where `cargo install` puts it (a
/// test run from an IDE may not have `~/.cargo/bin` on its PATH). `None`
/// outside CI when it is missing; under CI that fails the test.
fn s3s_fs() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin").join("s3s-fs"));
    let found = find_tool("s3s-fs").or_else(|| cargo_bin.filter(|p| p.is_file()));
    if found.is_none() {
        cannot_run(
            "s3s-fs (not found on the PATH nor in ~/.cargo/bin)",
            &format!("cargo install s3s-fs@{S3S_FS_VERSION} --features binary --locked in .ci/run"),
        );
    }
    found
}

/// S3's rules for a bucket name, the part s3s checks.
fn valid_bucket_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(name.chars().next())
        && edge(name.chars().last())
        && !name.contains("..")
}

/// Appends to `keys` the key of every regular file under `dir`, `prefix`
/// being the key of `dir` itself.
fn walk(dir: &Path, prefix: &str, keys: &mut Vec<String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        let name = entry.file_name();
        let name = name
            .to_str()
            .unwrap_or_else(|| panic!("non-UTF-8 name under {}", dir.display()));
        let key = format!("{prefix}{name}");
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            walk(&entry.path(), &format!("{key}/"), keys);
        } else if kind.is_file() {
            keys.push(key);
        }
    }
}

/// `bytes` random bytes from the kernel, in hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port nothing listens on at the moment.
fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
