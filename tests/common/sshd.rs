//! A real OpenSSH server for the remote tests, and the client side that
//! reaches it without touching `~/.ssh`.
//!
//! [`Sshd::start`] runs the system's `sshd -D -e` on 127.0.0.1 on a free
//! port with everything in a temporary directory: a fresh ed25519 host key,
//! an `authorized_keys` file, a pid file and the server's log. Each way of
//! connecting is a [`ClientKey`]: a private key plus an `ssh_config` file
//! naming the address, port, user, key and a `known_hosts` file, so that
//! `ssh -F CONFIG HOST` (what [`ClientKey::ssh_command`] gives, for
//! `rewind --ssh` or `REWIND_SSH`) reads nothing from the user's setup.
//! Every config has `Host *`: whatever host name the command line gives,
//! the connection goes to this server.
//!
//! [`Relay`] is a TCP forwarder in the test process between a client and
//! the server: it counts the bytes on the wire in each direction and can
//! cut every connection after a given number of bytes, as a network
//! failure would.
//!
//! The far side runs commands with sshd's default `PATH`, which does not
//! hold the binary under test: a client names it by its absolute path
//! ([`super::rewind_bin`]), and a forced command ([`forced`]) does too.
//! Nothing else is needed from the session: sshd sets `HOME`, `USER` and
//! `SHELL` from the password database.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{cannot_run, effective_ids, find_tool, require};

/// How long sshd may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Attempts at a free port: another process may take the port between our
/// probe and sshd's bind.
const PORT_ATTEMPTS: usize = 5;
/// The address everything listens on and connects to.
const HOST: &str = "127.0.0.1";

/// A running `sshd`, killed when dropped. Its [`ClientKey`]s hold paths
/// into its directory and stop working once it is gone.
pub struct Sshd {
    _tmp: tempfile::TempDir,
    /// The scratch directory, canonical.
    dir: PathBuf,
    child: Child,
    port: u16,
    user: String,
    client: ClientKey,
    /// Names already given to keys, so each gets its own files.
    keys: Mutex<u32>,
}

/// One way of connecting: a private key and the `ssh_config` that uses it.
#[derive(Clone, Debug)]
pub struct ClientKey {
    dir: PathBuf,
    name: String,
    key: PathBuf,
    config: PathBuf,
    known_hosts: PathBuf,
    user: String,
    port: u16,
    sshd_port: u16,
}

impl Sshd {
    /// Starts sshd, or returns `None` when sshd, ssh or ssh-keygen is
    /// missing outside CI (see [`require`]; under CI that fails the test).
    /// Panics with sshd's log if it does not come up.
    pub fn start() -> Option<Sshd> {
        if !require("sshd") || !require("ssh") {
            return None;
        }
        if find_tool("ssh-keygen").is_none()
            && !cannot_run(
                "ssh-keygen (not found on the PATH)",
                "apt-get install openssh-client in .ci/run",
            )
        {
            return None;
        }
        let sshd = find_tool("sshd").expect("sshd was found above");
        if effective_ids().0 == 0 {
            privsep_dir();
        }
        let tmp = super::tempdir();
        let dir = super::canon(tmp.path());
        let user = current_user();
        keygen(&dir.join("host_ed25519"));
        let host_pub = public_key(&dir.join("host_ed25519"));
        let authorized = dir.join("authorized_keys");
        fs::write(&authorized, "").expect("write authorized_keys");
        // OpenSSH 9.8 and later shut out an address after failed logins,
        // which the refused-key tests make on purpose; older ones do not
        // know the option and refuse to start with it.
        static PENALTIES: OnceLock<bool> = OnceLock::new();
        let penalties = *PENALTIES.get_or_init(|| accepts_option(&sshd, "PerSourcePenalties=no"));
        let log = dir.join("sshd.log");

        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = dir.join("sshd_config");
            fs::write(&config, sshd_config(&dir, port)).expect("write sshd_config");
            let mut cmd = Command::new(&sshd);
            cmd.arg("-D").arg("-e").arg("-f").arg(&config);
            if penalties {
                cmd.args(["-o", "PerSourcePenalties=no"]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("create sshd.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    let known_hosts = dir.join("known_hosts");
                    fs::write(&known_hosts, format!("[{HOST}]:{port} {host_pub}\n"))
                        .expect("write known_hosts");
                    let key = dir.join("id_default");
                    keygen(&key);
                    authorize(&authorized, "", &key);
                    let client = ClientKey::new(&dir, "default", &key, &known_hosts, &user, port);
                    return Some(Sshd {
                        _tmp: tmp,
                        dir,
                        child,
                        port,
                        user,
                        client,
                        keys: Mutex::new(0),
                    });
                }
                Err(exited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    if !(exited && last_log.contains("Address already in use")) {
                        break;
                    }
                }
            }
        }
        panic!(
            "sshd did not accept connections on {HOST} within {READY_WITHIN:?}; its log:\n{last_log}"
        );
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user every client logs in as: the one running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The scratch directory holding the server's and clients' files.
    pub fn dir(&self) -> &Path {
        self.dir.as_path()
    }

    /// What sshd has logged so far (`-e`: its log goes to this file), for
    /// failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.as_path().join("sshd.log")).unwrap_or_default()
    }

    /// The key authorized without options, connecting directly.
    pub fn client(&self) -> &ClientKey {
        &self.client
    }

    /// [`ClientKey::ssh_command`] of [`Sshd::client`].
    pub fn ssh_command(&self) -> String {
        self.client.ssh_command()
    }

    /// [`ClientKey::remote`] of [`Sshd::client`].
    pub fn remote(&self, path: &Path) -> String {
        self.client.remote(path)
    }

    /// [`ClientKey::ssh_url`] of [`Sshd::client`].
    pub fn ssh_url(&self, path: &Path) -> String {
        self.client.ssh_url(path)
    }

    /// [`ClientKey::ssh`] of [`Sshd::client`].
    pub fn ssh(&self) -> Command {
        self.client.ssh()
    }

    /// A new key, authorized with `options` in front of it (for example
    /// [`forced`]`("...")`; `""` for none).
    pub fn add_key(&self, options: &str) -> ClientKey {
        let key = self.new_key();
        authorize(
            &self.dir.as_path().join("authorized_keys"),
            options,
            &key.key,
        );
        key
    }

    /// A key the server has never heard of: every login is refused.
    pub fn unknown_key(&self) -> ClientKey {
        self.new_key()
    }

    /// The authorized key, with a `known_hosts` that holds a different key
    /// for this server, as after a reinstall or an attack.
    pub fn wrong_host_key(&self) -> ClientKey {
        let n = self.next_name();
        let dir = &self.dir;
        let fake = dir.join(format!("{n}_fake_host"));
        keygen(&fake);
        let known_hosts = dir.join(format!("{n}_known_hosts"));
        fs::write(
            &known_hosts,
            format!("[{HOST}]:{} {}\n", self.port, public_key(&fake)),
        )
        .expect("write known_hosts");
        ClientKey::new(
            dir,
            &n,
            &self.client.key,
            &known_hosts,
            &self.user,
            self.port,
        )
    }

    /// The authorized key, with an empty `known_hosts`: a first connection
    /// to a server nobody has vouched for.
    pub fn unknown_host(&self) -> ClientKey {
        let n = self.next_name();
        let dir = &self.dir;
        let known_hosts = dir.join(format!("{n}_known_hosts"));
        fs::write(&known_hosts, "").expect("write known_hosts");
        ClientKey::new(
            dir,
            &n,
            &self.client.key,
            &known_hosts,
            &self.user,
            self.port,
        )
    }

    /// The authorized key aimed at a port nothing listens on: a host that
    /// refuses the connection.
    pub fn unreachable(&self) -> ClientKey {
        let n = self.next_name();
        let c = &self.client;
        ClientKey::new(
            self.dir.as_path(),
            &n,
            &c.key,
            &c.known_hosts,
            &self.user,
            free_port(),
        )
    }

    fn next_name(&self) -> String {
        let mut n = self.keys.lock().expect("key counter");
        *n += 1;
        format!("k{n}")
    }

    fn new_key(&self) -> ClientKey {
        let n = self.next_name();
        let dir = &self.dir;
        let key = dir.join(format!("id_{n}"));
        keygen(&key);
        let c = &self.client;
        ClientKey::new(dir, &n, &key, &c.known_hosts, &self.user, self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the listener: each connection's sshd is in a session of its
        // own and ends when its client goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ClientKey {
    fn new(
        dir: &Path,
        name: &str,
        key: &Path,
        known_hosts: &Path,
        user: &str,
        port: u16,
    ) -> ClientKey {
        let c = ClientKey {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            key: key.to_path_buf(),
            config: dir.join(format!("{name}.ssh_config")),
            known_hosts: known_hosts.to_path_buf(),
            user: user.to_owned(),
            port,
            sshd_port: port,
        };
        c.write_config();
        c
    }

    fn write_config(&self) {
        let mut text = format!(
            "Host *\n\
             \tHostName {HOST}\n\
             \tPort {port}\n\
             \tUser {user}\n\
             \tIdentityFile \"{key}\"\n\
             \tIdentitiesOnly yes\n\
             \tIdentityAgent none\n\
             \tUserKnownHostsFile \"{known_hosts}\"\n\
             \tGlobalKnownHostsFile /dev/null\n\
             \tStrictHostKeyChecking yes\n\
             \tUpdateHostKeys no\n\
             \tCheckHostIP no\n\
             \tBatchMode yes\n\
             \tPasswordAuthentication no\n\
             \tKbdInteractiveAuthentication no\n\
             \tControlMaster no\n\
             \tControlPath none\n\
             \tConnectTimeout 10\n\
             \tLogLevel ERROR\n",
            port = self.port,
            user = self.user,
            key = self.key.display(),
            known_hosts = self.known_hosts.display(),
        );
        if self.port != self.sshd_port {
            // Through a relay: the host key is the server's, listed under
            // the server's own port.
            text.push_str(&format!("\tHostKeyAlias [{HOST}]:{}\n", self.sshd_port));
        }
        fs::write(&self.config, text).expect("write ssh_config");
    }

    /// The same key, connecting through `relay` (which must forward to
    /// this key's server).
    pub fn via(&self, relay: &Relay) -> ClientKey {
        let name = format!("{}_via_{}", self.name, relay.port());
        let c = ClientKey {
            config: self.dir.join(format!("{name}.ssh_config")),
            name,
            port: relay.port(),
            ..self.clone()
        };
        c.write_config();
        c
    }

    /// `ssh -F CONFIG`: the ssh command for `rewind --ssh` or `REWIND_SSH`,
    /// to be split on whitespace (no path in it holds any).
    pub fn ssh_command(&self) -> String {
        let config = self.config.display().to_string();
        assert!(
            !config.contains(char::is_whitespace),
            "the ssh command is split on whitespace, and {config} holds some"
        );
        format!("ssh -F {config}")
    }

    /// `USER@127.0.0.1:PATH`, the scp form: the port comes from the config.
    pub fn remote(&self, path: &Path) -> String {
        assert!(path.is_absolute(), "{} is not absolute", path.display());
        format!("{}@{HOST}:{}", self.user, path.display())
    }

    /// `ssh://USER@127.0.0.1:PORT/PATH`, with this key's port (the relay's
    /// when going through one), which wins over the config's.
    pub fn ssh_url(&self, path: &Path) -> String {
        assert!(path.is_absolute(), "{} is not absolute", path.display());
        format!("ssh://{}@{HOST}:{}{}", self.user, self.port, path.display())
    }

    /// `ssh -F CONFIG 127.0.0.1`: append the remote command as arguments.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.config).arg(HOST);
        cmd
    }

    /// The `ssh_config` file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The port this key connects to (sshd's, or a relay's).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `command="COMMAND",restrict`: authorized_keys options that run COMMAND
/// whatever the client asks (the request is in `$SSH_ORIGINAL_COMMAND`)
/// and allow no forwarding or terminal. COMMAND runs with sshd's default
/// `PATH`, so name programs by absolute path.
pub fn forced(command: &str) -> String {
    let quoted = command.replace('\\', "\\\\").replace('"', "\\\"");
    format!("command=\"{quoted}\",restrict")
}

/// The configuration of a server confined to `dir`.
fn sshd_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "ListenAddress {HOST}:{port}\n\
         HostKey \"{d}/host_ed25519\"\n\
         PidFile \"{d}/sshd.pid\"\n\
         AuthorizedKeysFile \"{d}/authorized_keys\"\n\
         AuthorizedPrincipalsFile none\n\
         # The scratch directory's owners and modes are not sshd's business.\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         PermitUserEnvironment no\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         # Many clients at once (the concurrency tests) must not be dropped\n\
         # before they authenticate.\n\
         MaxStartups 100\n\
         MaxSessions 100\n\
         LogLevel VERBOSE\n"
    )
}

/// sshd's privilege separation directory, which it refuses to start
/// without when run by root (a fresh container has no /run/sshd).
fn privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        fs::create_dir_all(dir).expect("create /run/sshd");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod /run/sshd");
    }
}

/// Whether this sshd accepts `-o OPTION` (checked with `-t`, which starts
/// nothing).
fn accepts_option(sshd: &Path, option: &str) -> bool {
    let probe = tempfile::tempdir().expect("tempdir");
    let key = probe.path().join("host");
    keygen(&key);
    let config = probe.path().join("sshd_config");
    fs::write(&config, format!("HostKey {}\n", key.display())).expect("write sshd_config");
    Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(&config)
        .args(["-o", option])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until `port` answers with an SSH banner. `Err(true)` if sshd
/// exited first, `Err(false)` if time ran out.
fn wait_ready(child: &mut Child, port: u16) -> Result<(), bool> {
    let start = Instant::now();
    while start.elapsed() < READY_WITHIN {
        if child.try_wait().expect("wait for sshd").is_some() {
            return Err(true);
        }
        if let Ok(mut s) = TcpStream::connect((HOST, port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut banner = [0u8; 8];
            if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-" {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(false)
}

/// A port nothing listens on at the moment.
fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// The login name of the user running the tests.
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_owned()
}

/// A new ed25519 key pair without passphrase at `path` and `path.pub`.
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rewind-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `TYPE BASE64` of the public half of the key at `path` (no comment).
fn public_key(path: &Path) -> String {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    let text = fs::read_to_string(&p).expect("read public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends the key at `key` to `authorized`, with `options` in front.
fn authorize(authorized: &Path, options: &str, key: &Path) {
    let line = if options.is_empty() {
        format!("{}\n", public_key(key))
    } else {
        format!("{options} {}\n", public_key(key))
    };
    OpenOptions::new()
        .append(true)
        .open(authorized)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .expect("append to authorized_keys");
}

// ---------------------------------------------------------------------------
// The relay

/// A TCP forwarder on 127.0.0.1 to a target port, counting bytes both ways
/// and able to cut its connections; stopped, with every connection closed,
/// when dropped.
pub struct Relay {
    port: u16,
    shared: Arc<RelayShared>,
    accept: Option<JoinHandle<()>>,
}

struct RelayShared {
    /// Bytes forwarded client to server, over every connection.
    up: AtomicU64,
    /// Bytes forwarded server to client.
    down: AtomicU64,
    connections: AtomicU64,
    cuts: AtomicU64,
    /// The value of `up` at which every connection is cut; `u64::MAX` when
    /// no cut is armed.
    cut_at: AtomicU64,
    /// Serializes deciding how much of a read may go up before the cut.
    up_lock: Mutex<()>,
    /// At the armed point, go silent instead of cutting (see `stall_after`).
    stall_armed: AtomicBool,
    /// Silent: every byte read either way is dropped, nothing is closed.
    silent: AtomicBool,
    stop: AtomicBool,
    /// Both sockets of each live connection, by connection number.
    live: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl RelayShared {
    fn cut_all(&self) {
        for (a, b) in self.live.lock().expect("relay connections").values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl Relay {
    /// Starts forwarding connections on a free port to `target_port`.
    pub fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind((HOST, 0)).expect("relay: bind");
        let port = listener.local_addr().expect("relay: address").port();
        let shared = Arc::new(RelayShared {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            up_lock: Mutex::new(()),
            stall_armed: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::spawn(move || accept_loop(listener, target_port, s));
        Relay {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn sent(&self) -> u64 {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn received(&self) -> u64 {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Cuts done so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Arms a cut: once `bytes` more have gone from clients to the server
    /// (counted from now, over all connections), exactly that many are
    /// delivered and every live connection is shut down both ways. The cut
    /// happens once; later connections go through.
    pub fn cut_after(&self, bytes: u64) {
        self.arm(bytes, false);
    }

    /// Like [`cut_after`](Self::cut_after), but at that point the relay
    /// goes silent instead: it keeps reading both ways and delivers
    /// nothing more, closing nothing, as a network that drops every packet.
    pub fn stall_after(&self, bytes: u64) {
        self.arm(bytes, true);
    }

    /// Arms the cut, or with `stall` the silence, `bytes` from now.
    fn arm(&self, bytes: u64, stall: bool) {
        let _guard = self.shared.up_lock.lock().expect("relay lock");
        let at = self.sent().saturating_add(bytes);
        self.shared.stall_armed.store(stall, Ordering::SeqCst);
        self.shared.cut_at.store(at, Ordering::SeqCst);
    }

    /// Whether the relay went silent.
    pub fn stalled(&self) -> bool {
        self.shared.silent.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept, which then sees `stop`.
        let _ = TcpStream::connect((HOST, self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        self.shared.cut_all();
    }
}

fn accept_loop(listener: TcpListener, target_port: u16, shared: Arc<RelayShared>) {
    for (id, client) in listener.incoming().enumerate() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect((HOST, target_port)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let id = id as u64;
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        shared
            .live
            .lock()
            .expect("relay connections")
            .insert(id, (c2, s2));
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let (Ok(c_read), Ok(s_write)) = (client.try_clone(), server.try_clone()) else {
                s.live.lock().expect("relay connections").remove(&id);
                return;
            };
            let s_down = Arc::clone(&s);
            let down = std::thread::spawn(move || pump(server, client, &s_down, false));
            pump(c_read, s_write, &s, true);
            let _ = down.join();
            s.live.lock().expect("relay connections").remove(&id);
        });
    }
}

/// Copies `from` to `to` until either ends, counting; `up` is the client to
/// server direction, where a cut may be armed.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &RelayShared, up: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.silent.load(Ordering::SeqCst) {
            continue;
        }
        if !up {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            shared.down.fetch_add(n as u64, Ordering::SeqCst);
            continue;
        }
        // Reserve this read's share below the cut before writing, so that
        // concurrent connections together deliver exactly up to it.
        let (allowed, cut) = {
            let _guard = shared.up_lock.lock().expect("relay lock");
            let before = shared.up.load(Ordering::SeqCst);
            let at = shared.cut_at.load(Ordering::SeqCst);
            let allowed = (n as u64).min(at.saturating_sub(before)) as usize;
            shared.up.fetch_add(allowed as u64, Ordering::SeqCst);
            let cut = before + allowed as u64 >= at;
            if cut {
                shared.cut_at.store(u64::MAX, Ordering::SeqCst);
            }
            (allowed, cut)
        };
        let ok = to.write_all(&buf[..allowed]).is_ok();
        if cut && shared.stall_armed.load(Ordering::SeqCst) {
            shared.silent.store(true, Ordering::SeqCst);
            continue;
        }
        if cut {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            shared.cut_all();
            break;
        }
        if !ok {
            break;
        }
    }
    // The other direction may still have bytes to deliver (a half-close).
    let _ = to.shutdown(Shutdown::Write);
}
