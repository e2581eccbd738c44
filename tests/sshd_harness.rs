//! The SSH test harness (`tests/common/sshd.rs`) checked on its own, with
//! plain `ssh` and no rewind protocol: the remote tests can only be trusted
//! if the server, the keys, the host key checks and the relay's counts and
//! cuts do what they say. Also pins the texts OpenSSH prints for the
//! failures rewind turns into its own one-line errors.

mod common;

use std::path::Path;

use common::sshd::{forced, Relay, Sshd};
use common::{rewind_bin, run, run_with_input};

/// What `ssh` exits with when the connection or the login fails.
const SSH_FAILED: i32 = 255;

#[test]
fn a_command_runs_on_the_server_with_the_default_key() {
    let Some(sshd) = Sshd::start() else { return };
    let out = run(sshd.ssh().args(["echo", "hello"])).success();
    assert_eq!(out.stdout_str(), "hello\n");

    // What the lead's client is given: the ssh command split on
    // whitespace, and the host part of the scp and URL forms.
    let words: Vec<String> = sshd
        .ssh_command()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let remote = sshd.remote(Path::new("/srv/repo"));
    let (host, path) = remote.split_once(':').expect("scp form has a colon");
    assert_eq!(path, "/srv/repo");
    assert_eq!(host, format!("{}@127.0.0.1", sshd.user()));
    let out = run(std::process::Command::new(&words[0])
        .args(&words[1..])
        .args([host, "echo", "scp-form"]))
    .success();
    assert_eq!(out.stdout_str(), "scp-form\n");

    let url = sshd.ssh_url(Path::new("/srv/repo"));
    let authority = url.strip_suffix("/srv/repo").expect("URL ends with path");
    assert_eq!(
        authority,
        format!("ssh://{}@127.0.0.1:{}", sshd.user(), sshd.port())
    );
    // ssh takes the URL without its path as a destination.
    let out = run(std::process::Command::new(&words[0])
        .args(&words[1..])
        .args([authority, "echo", "url-form"]))
    .success();
    assert_eq!(out.stdout_str(), "url-form\n");
}

#[test]
fn the_server_side_finds_rewind_by_its_absolute_path_only() {
    let Some(sshd) = Sshd::start() else { return };
    let out = run(sshd.ssh().arg("echo HOME=$HOME; echo PATH=$PATH")).success();
    let env = out.stdout_str();
    let home = env.lines().find_map(|l| l.strip_prefix("HOME=")).unwrap();
    assert!(home.starts_with('/'), "no HOME in the session:\n{env}");
    let bin_dir = rewind_bin().parent().unwrap().display().to_string();
    let path = env.lines().find_map(|l| l.strip_prefix("PATH=")).unwrap();
    assert!(
        !path.split(':').any(|d| d == bin_dir),
        "sshd's PATH holds the binary under test, so a test would not see a missing --remote-rewind: {path}"
    );

    let out = run(sshd.ssh().arg(rewind_bin()).arg("--version")).success();
    assert!(out.stdout_str().starts_with("rewind "), "{:?}", out);

    // A missing binary, as on a server without rewind installed: the
    // shell's "No such file or directory" and its exit status 127.
    let out = run(sshd.ssh().args(["/nonexistent/rewind", "server"])).status(127);
    assert!(
        out.stderr
            .contains("/nonexistent/rewind: No such file or directory"),
        "{}",
        out.stderr
    );
    // Not on the PATH at all: "command not found", also 127.
    let out = run(sshd.ssh().args(["rewind-not-installed", "server"])).status(127);
    assert!(
        out.stderr
            .contains("rewind-not-installed: command not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_relay_counts_bytes_both_ways() {
    let Some(sshd) = Sshd::start() else { return };
    let relay = Relay::start(sshd.port());
    let via = sshd.client().via(&relay);
    assert_eq!(via.port(), relay.port());
    let out = run(via.ssh().args(["echo", "through"])).success();
    assert_eq!(out.stdout_str(), "through\n");
    assert_eq!(relay.connections(), 1);
    let (up, down) = (relay.sent(), relay.received());
    assert!(up > 0 && down > 0, "up {up} down {down}");

    // A megabyte sent up shows up in the upward count, not the downward.
    let data = vec![7u8; 1 << 20];
    let out = run_with_input(via.ssh().arg("wc -c"), Some(&data)).success();
    assert_eq!(out.stdout_str().trim(), (1 << 20).to_string());
    let (up2, down2) = (relay.sent() - up, relay.received() - down);
    assert!(up2 > 1 << 20, "sent {up2}");
    assert!(down2 < 256 << 10, "received {down2} for a megabyte sent up");
    assert_eq!(relay.cuts(), 0);
    assert_eq!(relay.connections(), 2);

    // The URL form with the relay's port goes through the relay too.
    let url = via.ssh_url(Path::new("/x"));
    let authority = url.strip_suffix("/x").unwrap();
    let words: Vec<String> = via
        .ssh_command()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    run(std::process::Command::new(&words[0])
        .args(&words[1..])
        .args([authority, "true"]))
    .success();
    assert_eq!(relay.connections(), 3);
}

#[test]
fn the_relay_cuts_a_long_transfer_at_the_armed_byte_count() {
    let Some(sshd) = Sshd::start() else { return };
    let relay = Relay::start(sshd.port());
    let via = sshd.client().via(&relay);
    let cut = 2u64 << 20;
    relay.cut_after(cut);
    let data = vec![0u8; 50 << 20];
    let out = run_with_input(via.ssh().arg("cat > /dev/null"), Some(&data));
    assert_eq!(out.code, SSH_FAILED, "a cut transfer must fail: {out:?}");
    assert_eq!(relay.cuts(), 1);
    assert_eq!(relay.sent(), cut, "exactly the armed bytes go up");
    // The counters stay where the cut left them.
    let (up, down) = (relay.sent(), relay.received());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!((relay.sent(), relay.received()), (up, down));
    eprintln!("ssh's stderr after a cut: {:?}", out.stderr);

    // The cut is done once: the next connection goes through.
    let out = run(via.ssh().args(["echo", "again"])).success();
    assert_eq!(out.stdout_str(), "again\n");
}

#[test]
fn a_forced_command_runs_whatever_the_client_asks() {
    let Some(sshd) = Sshd::start() else { return };
    let key = sshd.add_key(&forced("echo \"forced: $SSH_ORIGINAL_COMMAND\""));
    let out = run(key.ssh().args(["echo", "asked"])).success();
    assert_eq!(out.stdout_str(), "forced: echo asked\n");
    // The binary under test as a forced command, by its absolute path, as
    // the restricted-key tests will name `rewind server`.
    let bin = rewind_bin().display().to_string();
    let key = sshd.add_key(&forced(&format!("{bin} --version")));
    let out = run(key.ssh().args(["rewind", "server"])).success();
    assert!(out.stdout_str().starts_with("rewind "), "{out:?}");
    // The default key still runs what it asks.
    let out = run(sshd.ssh().args(["echo", "asked"])).success();
    assert_eq!(out.stdout_str(), "asked\n");
}

#[test]
fn an_unknown_key_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let out = run(sshd.unknown_key().ssh().arg("true")).status(SSH_FAILED);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    eprintln!("ssh's stderr for an unknown key: {:?}", out.stderr);
}

#[test]
fn a_changed_host_key_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let out = run(sshd.wrong_host_key().ssh().arg("true")).status(SSH_FAILED);
    assert!(
        out.stderr
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            && out.stderr.contains("Host key verification failed."),
        "{}",
        out.stderr
    );
    eprintln!("ssh's stderr for a changed host key: {:?}", out.stderr);

    let out = run(sshd.unknown_host().ssh().arg("true")).status(SSH_FAILED);
    assert!(
        out.stderr.contains("Host key verification failed."),
        "{}",
        out.stderr
    );
    eprintln!("ssh's stderr for an unknown host: {:?}", out.stderr);
}

#[test]
fn an_unreachable_host_is_reported() {
    let Some(sshd) = Sshd::start() else { return };
    let out = run(sshd.unreachable().ssh().arg("true")).status(SSH_FAILED);
    assert!(out.stderr.contains("Connection refused"), "{}", out.stderr);
    eprintln!("ssh's stderr for an unreachable host: {:?}", out.stderr);
}
