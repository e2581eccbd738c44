//! SIGINT and SIGTERM during a save or a run. Killed outright, a save
//! leaves its temporary pack (hundreds of MB) in `objects/`; instead the
//! first signal is only noted here, the save sees it at its next chunk or
//! entry and returns [`crate::save::SaveError::Interrupted`], and the
//! unwinding drops delete the temporary files. Nothing is committed, since
//! the branch moves last.
//!
//! The handler does what is async-signal-safe only: it stores the signal
//! number and forwards the signal to the process group of a running dump
//! command (which may sit silent for minutes, e.g. waiting on a database
//! lock, and would otherwise keep the save blocked on its pipe). It resets
//! itself (`SA_RESETHAND`): a second Ctrl-C kills at once, as a user who
//! presses it twice wants; `rewind gc` removes what that leaves.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received since [`install`], or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The process group of the dump command running now, or 0.
static CHILD_GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    let group = CHILD_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers; a
        // group that has gone away only makes it fail with ESRCH.
        unsafe { libc::kill(-group, sig) };
    }
}

/// Catches SIGINT and SIGTERM for the rest of the process (once each).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the
        // handler is an `extern "C" fn(c_int)` that only touches atomics and
        // calls kill(2), both async-signal-safe; `action` is a live local
        // read by the call and a null old-action pointer is allowed.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SA_RESTART: reads and writes in progress go on rather than
            // fail with EINTR (which would read as an I/O error on a file);
            // the flag is looked at between chunks anyway.
            action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Gives SIGINT and SIGTERM back their default action (the process ends
/// at once), for a last step that is safe to kill at any moment but does
/// not look at [`pending`] as it works: a mirror push, whose bucket keeps
/// its old manifest until every object is sent (and the next push sends
/// only what is missing). Call [`pending`] after this, not before, so a
/// signal that came in between is not lost.
pub fn restore_default() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: signal(2) with a valid signal number and SIG_DFL, which
        // takes no handler code.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The signal that asked the process to stop, if one did.
pub fn pending() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// The exit status of a process stopped by `signal`, as a shell reports a
/// process killed by it: 130 for SIGINT, 143 for SIGTERM.
pub fn exit_status(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(255)
}

/// "SIGINT", "SIGTERM", or the number.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// While alive, a signal is forwarded to the process group `group` (a
/// dump command started in its own group). A signal that came before
/// the registration is forwarded at once.
pub struct ChildGroup(());

impl ChildGroup {
    pub fn register(group: u32) -> ChildGroup {
        let group = i32::try_from(group).unwrap_or(0);
        CHILD_GROUP.store(group, Ordering::SeqCst);
        if let (Some(sig), true) = (pending(), group > 0) {
            // SAFETY: kill(2) with plain integers; see `on_signal`.
            unsafe { libc::kill(-group, sig) };
        }
        ChildGroup(())
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        CHILD_GROUP.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_the_shells() {
        assert_eq!(exit_status(libc::SIGINT), 130);
        assert_eq!(exit_status(libc::SIGTERM), 143);
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }
}
