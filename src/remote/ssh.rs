//! Running the system's OpenSSH client to reach `rewind server` on the
//! far side (so `~/.ssh/config`, keys, `known_hosts` and the agent apply,
//! and no cryptography is ours), and saying in one line why it failed.

use super::location::SshTarget;
use crate::locks::lock;
use crate::repo::Error;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Lines of ssh's standard error kept to explain a failure.
const STDERR_LINES: usize = 40;

/// How to start ssh, from `--ssh`/`REWIND_SSH` and `--remote-rewind`.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// The ssh command and its options, split on whitespace (as rsync's
    /// `-e`); default `ssh`.
    pub ssh: Option<String>,
    /// The rewind binary on the server; default `rewind` (found in PATH).
    pub remote_rewind: Option<String>,
}

/// What ssh wrote on its standard error (the server's logging included).
#[derive(Default)]
pub(super) struct Stderr {
    lines: VecDeque<String>,
    /// After the handshake, the server's own warnings are shown as they come.
    forward: bool,
}

/// Starts `ssh ... HOST "rewind server"` with its three streams piped;
/// its standard error is collected by a thread of its own.
pub(super) fn spawn(
    target: &SshTarget,
    opts: &SshOptions,
) -> Result<(Child, Arc<Mutex<Stderr>>), Error> {
    let mut words: Vec<String> = opts
        .ssh
        .as_deref()
        .unwrap_or("ssh")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if words.is_empty() {
        words.push("ssh".into());
    }
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    let config = config_files(&words);
    if let Some(ciphers) = cipher_preference(&words, &config) {
        cmd.arg("-o").arg(ciphers);
    }
    for keepalive in keepalive_preference(&words, &config) {
        cmd.arg("-o").arg(keepalive);
    }
    if let Some(port) = target.port {
        cmd.arg("-p").arg(port.to_string());
    }
    // No terminal, no X11 or agent forwarding for a data channel.
    cmd.args(["-T", "-x", "-a", "--"]);
    cmd.arg(&target.destination);
    let remote_rewind = opts.remote_rewind.as_deref().unwrap_or("rewind");
    cmd.arg(format!("{remote_rewind} server"));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Remote {
        location: target.to_string(),
        detail: format!(
            "cannot run {:?}: {e}; install OpenSSH's client or name another ssh command with --ssh",
            words[0]
        ),
    })?;
    // Packs and objects stream through these: a wake-up of ssh and of
    // this process per MiB rather than per 64 KiB.
    if let Some(pipe) = &child.stdin {
        crate::pipe::widen(pipe.as_fd());
    }
    if let Some(pipe) = &child.stdout {
        crate::pipe::widen(pipe.as_fd());
    }
    let stderr = Arc::new(Mutex::new(Stderr::default()));
    if let Some(pipe) = child.stderr.take() {
        let log = stderr.clone();
        let _ = std::thread::Builder::new()
            .name("rewind-ssh-stderr".into())
            .spawn(move || collect_stderr(pipe, &log));
    }
    Ok((child, stderr))
}

/// OpenSSH's default ciphers with AES-GCM first: the same set, none added
/// or left out, so the server chooses among what it always could.
const AES_GCM_FIRST: &str = "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,\
chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";

/// The `-o Ciphers=...` to add, if any. Packs and restores are hundreds
/// of megabytes through ssh, and OpenSSH's first choice, ChaCha20-Poly1305,
/// is where its time goes: on a processor with AES instructions AES-GCM
/// moves the same bytes with about half the CPU (300 MB over a loopback
/// sshd here: 1.27 s against 0.82 s, 0.58 s against 0.32 s of the
/// client's CPU). Only where the user chose nothing: a `-c` or `Ciphers`
/// in the command, or a `Ciphers` line in the configuration files ssh
/// reads (`files`: their contents), and the choice is theirs.
fn cipher_preference(words: &[String], files: &[String]) -> Option<&'static str> {
    let chose =
        words.iter().skip(1).any(|w| w.starts_with("-c")) || user_set(words, files, &["Ciphers"]);
    (has_aes_instructions() && !chose).then_some(AES_GCM_FIRST)
}

/// ssh's keepalive, where the user set none: a connection that goes
/// silent (a network that drops everything, a server that froze) ends
/// ssh, and the save or restore with it, after a minute without an answer
/// from sshd, instead of hanging until the kernel gives up on the socket
/// (hours) and keeping the next day's run from starting. sshd answers
/// these itself, so a busy `rewind server` does not count as silent.
const KEEPALIVE: [&str; 2] = ["ServerAliveInterval=15", "ServerAliveCountMax=4"];

/// The `-o` options of [`KEEPALIVE`] to add: none if the user set either.
fn keepalive_preference(words: &[String], files: &[String]) -> &'static [&'static str] {
    if user_set(
        words,
        files,
        &["ServerAliveInterval", "ServerAliveCountMax"],
    ) {
        &[]
    } else {
        &KEEPALIVE
    }
}

/// Whether the user set one of the ssh options `keys`: as `-o KEY=...` or
/// `-o KEY ...` in the command, or on a line of the configuration files
/// ssh reads (`files`: their contents). ssh reads option names in any case.
fn user_set(words: &[String], files: &[String], keys: &[&str]) -> bool {
    let names_key = |option: &str| {
        let name: String = option
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        keys.iter().any(|k| name.eq_ignore_ascii_case(k))
    };
    let in_command = words.iter().enumerate().skip(1).any(|(i, w)| {
        (w.starts_with("-o") && names_key(&w[2..]))
            || (i > 1 && words[i - 1] == "-o" && names_key(w))
    });
    in_command
        || files
            .iter()
            .any(|text| text.lines().any(|line| names_key(line.trim_start())))
}

/// The configuration files ssh will read for this command, as text: the
/// `-F` file if there is one, else the user's and the system's (with the
/// system's usual `Include` directory). Unreadable ones are skipped.
fn config_files(words: &[String]) -> Vec<String> {
    let given = words
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, w)| match w.as_str() {
            "-F" => words.get(i + 1).map(std::path::PathBuf::from),
            w if w.starts_with("-F") => Some(std::path::PathBuf::from(&w[2..])),
            _ => None,
        });
    let mut paths = Vec::new();
    match given {
        Some(path) => paths.push(path),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                paths.push(std::path::Path::new(&home).join(".ssh/config"));
            }
            paths.push("/etc/ssh/ssh_config".into());
            if let Ok(dir) = std::fs::read_dir("/etc/ssh/ssh_config.d") {
                paths.extend(dir.flatten().map(|e| e.path()));
            }
        }
    }
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn has_aes_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// From now on the server's own log lines are shown as they come.
pub(super) fn show_server_logging(stderr: &Mutex<Stderr>) {
    lock(stderr).forward = true;
}

/// Why the connection ended: ssh's exit status and last words, in one line.
pub(super) fn why_it_ended(child: &mut Child, stderr: &Mutex<Stderr>) -> String {
    // ssh has exited or is about to: give it a moment to say why.
    let status = (0..50).find_map(|_| match child.try_wait() {
        Ok(Some(s)) => Some(s),
        _ => {
            std::thread::sleep(std::time::Duration::from_millis(20));
            None
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let lines: Vec<String> = lock(stderr).lines.iter().cloned().collect();
    explain_ssh_failure(&lines, status.and_then(|s| s.code()))
}

fn collect_stderr(pipe: impl Read, log: &Mutex<Stderr>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { return };
        let line = line.trim_end().to_string();
        let mut log = lock(log);
        if log.forward && from_server(&line) {
            eprintln!("{line}");
        }
        if log.lines.len() == STDERR_LINES {
            log.lines.pop_front();
        }
        log.lines.push_back(line);
    }
}

/// Whether a line on ssh's standard error is the logging of `rewind
/// server` (its level first, as rewind writes it without a terminal),
/// shown to the user as it comes. ssh's own words ("Connection to HOST
/// closed by remote host.") are kept only to explain a failure in its one
/// error line, not printed as a second line.
fn from_server(line: &str) -> bool {
    matches!(
        line.split_whitespace().next(),
        Some("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")
    )
}

/// One line saying why ssh could not reach `rewind server`.
pub fn explain_ssh_failure(lines: &[String], code: Option<i32>) -> String {
    let all = lines.join("\n");
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with('@'))
        .cloned()
        .unwrap_or_default();
    if all.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return "the server's host key has changed (ssh refused to connect): if the server was reinstalled, remove its old key with `ssh-keygen -R HOST`; otherwise someone may be intercepting the connection".into();
    }
    if all.contains("Host key verification failed") {
        return format!("ssh does not know the server's host key ({last}): connect once with `ssh HOST` to check and accept it");
    }
    if all.contains("Permission denied") {
        return format!("the server refused the login ({last}): check the user, the key and the server's authorized_keys");
    }
    if all.contains("Could not resolve hostname")
        || all.contains("Connection refused")
        || all.contains("No route to host")
        || all.contains("timed out")
        || all.contains("Network is unreachable")
    {
        return format!("cannot reach the server: {last}");
    }
    if all.contains("not responding") {
        return format!(
            "the connection to the server went silent ({last}): check the network and the server"
        );
    }
    if code == Some(127)
        || all.contains("command not found")
        || all.contains("No such file or directory")
    {
        return format!("rewind is not installed on the server ({last}): install it there (the same release as here), or name its path with --remote-rewind");
    }
    if all.contains("unrecognized subcommand") {
        return "the server's rewind has no `server` command: install the same rewind release on the server".into();
    }
    match (code, last.is_empty()) {
        (Some(c), false) => {
            format!("the connection to the server ended (ssh exit status {c}): {last}")
        }
        (Some(c), true) => format!("the connection to the server ended (ssh exit status {c})"),
        (None, false) => format!("the connection to the server ended: {last}"),
        (None, true) => "the connection to the server ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(cmd: &str) -> Vec<String> {
        cmd.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn aes_gcm_goes_first_only_where_the_user_chose_no_ciphers() {
        let none: &[String] = &[];
        let expected = has_aes_instructions().then_some(AES_GCM_FIRST);
        assert_eq!(cipher_preference(&words("ssh"), none), expected);
        assert_eq!(
            cipher_preference(&words("ssh -F /x -o ConnectTimeout=5 -i key"), none),
            expected
        );
        for chosen in [
            "ssh -c aes256-ctr",
            "ssh -caes256-ctr",
            "ssh -o Ciphers=aes256-ctr",
            "ssh -o ciphers aes256-ctr",
            "ssh -oCiphers=aes256-ctr",
        ] {
            assert_eq!(cipher_preference(&words(chosen), none), None, "{chosen}");
        }
        let config = vec!["Host *\n  Port 22\n".to_string()];
        assert_eq!(cipher_preference(&words("ssh"), &config), expected);
        let config = vec!["Host *\n\tCiphers chacha20-poly1305@openssh.com\n".to_string()];
        assert_eq!(cipher_preference(&words("ssh"), &config), None);
        // Every default cipher is still offered.
        for c in [
            "chacha20-poly1305@openssh.com",
            "aes128-ctr",
            "aes192-ctr",
            "aes256-ctr",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
        ] {
            assert!(AES_GCM_FIRST.split(['=', ',']).any(|x| x == c), "{c}");
        }
    }

    #[test]
    fn a_keepalive_is_asked_for_only_where_the_user_set_none() {
        let none: &[String] = &[];
        assert_eq!(keepalive_preference(&words("ssh"), none), KEEPALIVE);
        assert_eq!(
            keepalive_preference(&words("ssh -F /x -o ConnectTimeout=5"), none),
            KEEPALIVE
        );
        for chosen in [
            "ssh -o ServerAliveInterval=0",
            "ssh -o serveralivecountmax 10",
            "ssh -oServerAliveInterval=60",
        ] {
            assert!(
                keepalive_preference(&words(chosen), none).is_empty(),
                "{chosen}"
            );
        }
        let config = vec!["Host backup\n  ServerAliveInterval 30\n".to_string()];
        assert!(keepalive_preference(&words("ssh"), &config).is_empty());
        let config = vec!["Host *\n  TCPKeepAlive no\n".to_string()];
        assert_eq!(keepalive_preference(&words("ssh"), &config), KEEPALIVE);
    }

    #[test]
    fn ssh_own_words_are_not_forwarded_as_the_servers_logging() {
        // What `rewind server` logs, through ssh (no terminal: no colours).
        assert!(from_server(
            "  WARN refusing the pack being received: object 00 claims 9 bytes"
        ));
        assert!(from_server("ERROR writing to the client: Broken pipe"));
        // What ssh itself says when a connection goes.
        for line in [
            "Connection to 127.0.0.1 closed by remote host.",
            "client_loop: send disconnect: Broken pipe",
            "ssh: connect to host 127.0.0.1 port 22: Connection refused",
            "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.",
            "",
        ] {
            assert!(!from_server(line), "{line:?}");
        }
    }
}
