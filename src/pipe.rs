//! Pipe sizing: the pipes rewind streams bulk data through (a dump
//! command's output, ssh's standard input and output) default to 64 KiB,
//! which costs a wake-up of each side per 64 KiB; 1 MiB (Linux's default
//! limit for an unprivileged process) costs one per MiB.

use std::os::fd::{AsRawFd, BorrowedFd};

/// What [`widen`] asks for.
pub const SIZE: libc::c_int = 1 << 20;

/// Asks the kernel to make the pipe behind `fd` [`SIZE`] bytes. A hint: a
/// kernel that refuses, or an `fd` that is not a pipe, changes nothing.
pub fn widen(fd: BorrowedFd<'_>) {
    // SAFETY: `fd` is borrowed, so open for the call; the F_SETPIPE_SZ
    // argument is an int, so no memory is passed.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, SIZE);
    }
}
