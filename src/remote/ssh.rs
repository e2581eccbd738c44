//! Running the system's OpenSSH client to reach `rewind server` on the
//! far side (so `~/.ssh/config`, keys, `known_hosts` and the agent apply,
//! and no cryptography is ours), and saying in one line why it failed.

use super::location::SshTarget;
use crate::repo::Error;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
