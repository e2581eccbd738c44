//! Cached user and group name lookups through the system's NSS
//! (`getpwuid_r` and friends), as bup's `pwdgrp` module caches them.
//! A lookup error is treated like "no such entry": bup does the same, and
//! a name is only ever a convenience next to the numeric id.

use std::collections::HashMap;
use std::ffi::{CStr, CString};

#[derive(Default)]
pub(crate) struct IdNames {
    users: HashMap<u32, Option<Vec<u8>>>,
    groups: HashMap<u32, Option<Vec<u8>>>,
    uids: HashMap<Vec<u8>, Option<u32>>,
    gids: HashMap<Vec<u8>, Option<u32>>,
}

impl IdNames {
    pub(crate) fn user_name(&mut self, uid: u32) -> Option<&[u8]> {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup_pw_by_uid(uid).map(|(n, _)| n))
            .as_deref()
    }

    pub(crate) fn group_name(&mut self, gid: u32) -> Option<&[u8]> {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup_gr_by_gid(gid).map(|(n, _)| n))
            .as_deref()
    }

    pub(crate) fn uid_of(&mut self, name: &[u8]) -> Option<u32> {
        if let Some(v) = self.uids.get(name) {
            return *v;
        }
        let v = lookup_pw_by_name(name);
        self.uids.insert(name.to_vec(), v);
        v
    }

    pub(crate) fn gid_of(&mut self, name: &[u8]) -> Option<u32> {
        if let Some(v) = self.gids.get(name) {
            return *v;
        }
        let v = lookup_gr_by_name(name);
        self.gids.insert(name.to_vec(), v);
        v
    }
}

/// Runs a `get*_r` call with a buffer that grows on ERANGE.
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> Result<Option<T>, i32>) -> Option<T> {
    let mut size = 1024usize;
    loop {
        let mut buf = vec![0u8; size];
        match call(&mut buf) {
            Ok(v) => return v,
            Err(libc::ERANGE) if size < (1 << 24) => size *= 4,
            Err(_) => return None,
        }
    }
}

/// One password database entry, copied out of the `getpw*_r` buffer.
pub(crate) struct Passwd {
    pub(crate) name: Vec<u8>,
    pub(crate) uid: u32,
    /// The GECOS field (full name first, then comma-separated extras).
    pub(crate) gecos: Option<Vec<u8>>,
}

/// The password entry of `uid`, through the reentrant `getpwuid_r`: the
/// plain `getpwuid` returns static storage that another thread's lookup
/// may overwrite while we read it.
pub(crate) fn user_entry(uid: u32) -> Option<Passwd> {
    with_buffer(|buf| {
        // SAFETY: libc::passwd is a C struct of integers and pointers, for
        // which all-zero bytes are a valid value (null pointers).
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: pw, result and buf are live exclusive borrows for the
        // call, and buf.len() is the exact length of buf; getpwuid_r stores
        // the entry's strings in buf, which outlives passwd_result's reads.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        passwd_result(rc, result, &pw)
    })
}

fn lookup_pw_by_uid(uid: u32) -> Option<(Vec<u8>, u32)> {
    user_entry(uid).map(|p| (p.name, p.uid))
}

fn lookup_pw_by_name(name: &[u8]) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: as in user_entry: all-zero is a valid libc::passwd.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: cname is NUL-terminated and outlives the call; pw, result
        // and buf (of exactly buf.len() bytes) are live exclusive borrows,
        // and buf, which the entry's strings point into, outlives their use.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        passwd_result(rc, result, &pw)
    })
    .map(|p| p.uid)
}

/// Copies the entry out of `pw`, whose string pointers point into the
/// buffer the caller passed to `getpw*_r` and still holds.
fn passwd_result(
    rc: i32,
    result: *mut libc::passwd,
    pw: &libc::passwd,
) -> Result<Option<Passwd>, i32> {
    if rc != 0 {
        return Err(rc);
    }
    if result.is_null() || pw.pw_name.is_null() {
        return Ok(None);
    }
    // SAFETY: getpw*_r succeeded and found an entry (result is non-null),
    // so pw_name is a non-null pointer to a NUL-terminated string inside
    // the caller's buffer, which is alive for the whole of this function.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_bytes().to_vec();
    let gecos = (!pw.pw_gecos.is_null()).then(|| {
        // SAFETY: as for pw_name; checked non-null just above.
        unsafe { CStr::from_ptr(pw.pw_gecos) }.to_bytes().to_vec()
    });
    Ok(Some(Passwd {
        name,
        uid: pw.pw_uid,
        gecos,
    }))
}

fn lookup_gr_by_gid(gid: u32) -> Option<(Vec<u8>, u32)> {
    with_buffer(|buf| {
        // SAFETY: libc::group is a C struct of integers and pointers, for
        // which all-zero bytes are a valid value (null pointers).
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: gr, result and buf are live exclusive borrows for the
        // call, and buf.len() is the exact length of buf; getgrgid_r stores
        // the entry's strings in buf, which outlives group_result's reads.
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        group_result(rc, result, &gr)
    })
}

fn lookup_gr_by_name(name: &[u8]) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: as in lookup_gr_by_gid: all-zero is a valid libc::group.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: cname is NUL-terminated and outlives the call; gr, result
        // and buf (of exactly buf.len() bytes) are live exclusive borrows,
        // and buf, which the entry's strings point into, outlives their use.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        group_result(rc, result, &gr)
    })
    .map(|(_, gid)| gid)
}

/// Copies the entry out of `gr`, whose string pointers point into the
/// buffer the caller passed to `getgr*_r` and still holds.
fn group_result(
    rc: i32,
    result: *mut libc::group,
    gr: &libc::group,
) -> Result<Option<(Vec<u8>, u32)>, i32> {
    if rc != 0 {
        return Err(rc);
    }
    if result.is_null() || gr.gr_name.is_null() {
        return Ok(None);
    }
    // SAFETY: getgr*_r succeeded and found an entry (result is non-null),
    // so gr_name is a non-null pointer to a NUL-terminated string inside
    // the caller's buffer, which is alive for the whole of this function.
    let name = unsafe { CStr::from_ptr(gr.gr_name) }.to_bytes().to_vec();
    Ok(Some((name, gr.gr_gid)))
}

/// The process's effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and
    // cannot fail (POSIX); the libc crate marks every foreign call unsafe.
    unsafe { libc::geteuid() }
}

/// The process's effective group id.
pub(crate) fn egid() -> u32 {
    // SAFETY: as for geteuid: no arguments, no memory, cannot fail.
    unsafe { libc::getegid() }
}

/// The process's real user id.
pub(crate) fn uid() -> u32 {
    // SAFETY: as for geteuid: no arguments, no memory, cannot fail.
    unsafe { libc::getuid() }
}

/// The process's supplementary groups plus its effective gid (bup's
/// `helpers.getgroups`, which adds the egid because getgroups(2) may omit it).
pub(crate) fn process_groups() -> Vec<u32> {
    // SAFETY: with a size of 0 getgroups(2) only returns the count and
    // never touches the (null) list pointer.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0 as libc::gid_t; n.max(0) as usize];
    if n > 0 {
        // SAFETY: `groups` holds exactly n gid_t slots, the size passed; if
        // the list grew meanwhile the call fails (EINVAL) without writing.
        let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
        groups.truncate(got.max(0) as usize);
    }
    let egid = egid();
    if !groups.contains(&egid) {
        groups.push(egid);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_both_ways() {
        let mut ids = IdNames::default();
        assert_eq!(ids.user_name(0), Some(&b"root"[..]));
        assert_eq!(ids.uid_of(b"root"), Some(0));
        assert_eq!(ids.gid_of(b"root"), Some(0));
        assert_eq!(ids.uid_of(b"no such user \xff"), None);
        assert_eq!(ids.uid_of(b"nul\0inside"), None);
        assert_eq!(ids.user_name(4_000_000_123), None);
    }
}
