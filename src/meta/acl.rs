//! POSIX ACLs between the kernel's binary xattr form
//! (`system.posix_acl_access` / `system.posix_acl_default`) and the libacl
//! short text forms bup stores.
//!
//! bup 0.33 reads ACLs with libacl: `acl_extended_file()` decides whether a
//! file has one, then `acl_to_any_text(acl, "", ',', TEXT_ABBREVIATE)` gives
//! the text form (`u::rw-,u:alice:r--,g::r--,m::r--,o::r--`) and the same
//! with `TEXT_NUMERIC_IDS` the numeric form. We produce the same strings
//! without linking libacl, by decoding the xattrs ourselves.

use std::ffi::CStr;
use std::io;

use super::ids::IdNames;
use super::{sys, PosixAcl};

pub const XATTR_ACCESS: &str = "system.posix_acl_access";
pub const XATTR_DEFAULT: &str = "system.posix_acl_default";
const C_XATTR_ACCESS: &CStr = c"system.posix_acl_access";
const C_XATTR_DEFAULT: &CStr = c"system.posix_acl_default";

const XATTR_VERSION: u32 = 2;
/// Entry tags as the kernel numbers them; their numeric order is also the
/// order the kernel requires and libacl keeps.
pub const TAG_USER_OBJ: u16 = 0x01;
pub const TAG_USER: u16 = 0x02;
pub const TAG_GROUP_OBJ: u16 = 0x04;
pub const TAG_GROUP: u16 = 0x08;
pub const TAG_MASK: u16 = 0x10;
pub const TAG_OTHER: u16 = 0x20;
/// Qualifier of entries that have none.
const UNDEFINED_ID: u32 = u32::MAX;
const HEADER_LEN: usize = 4;
const ENTRY_LEN: usize = 8;

/// One ACL entry; `id` is only meaningful for `TAG_USER` and `TAG_GROUP`.
/// Field order makes the derived ordering the kernel's (tag, then id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclEntry {
    pub tag: u16,
    pub id: u32,
    /// rwx bits: 4 read, 2 write, 1 execute.
    pub perm: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    #[error("ACL xattr has a bad length or version")]
    BadXattr,
    #[error("ACL xattr has unknown entry tag {0:#x}")]
    BadTag(u16),
    #[error("ACL text entry {0:?} is not valid")]
    BadText(String),
    #[error("ACL names unknown {kind} {name:?}")]
    UnknownName { kind: &'static str, name: String },
}

fn has_qualifier(tag: u16) -> bool {
    tag == TAG_USER || tag == TAG_GROUP
}

/// Decodes a `system.posix_acl_*` value.
pub fn parse_xattr(bytes: &[u8]) -> Result<Vec<AclEntry>, AclError> {
    if bytes.len() < HEADER_LEN || !(bytes.len() - HEADER_LEN).is_multiple_of(ENTRY_LEN) {
        return Err(AclError::BadXattr);
    }
    let version = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if version != XATTR_VERSION {
        return Err(AclError::BadXattr);
    }
    let mut entries = Vec::with_capacity((bytes.len() - HEADER_LEN) / ENTRY_LEN);
    for e in bytes[HEADER_LEN..].chunks_exact(ENTRY_LEN) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        if ![
            TAG_USER_OBJ,
            TAG_USER,
            TAG_GROUP_OBJ,
            TAG_GROUP,
            TAG_MASK,
            TAG_OTHER,
        ]
        .contains(&tag)
        {
            return Err(AclError::BadTag(tag));
        }
        let id = if has_qualifier(tag) { id } else { UNDEFINED_ID };
        entries.push(AclEntry {
            tag,
            id,
            perm: perm & 7,
        });
    }
    entries.sort();
    Ok(entries)
}

/// Encodes entries as the kernel expects them (sorted by tag, then id).
pub fn encode_xattr(entries: &[AclEntry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort();
    let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * sorted.len());
    out.extend_from_slice(&XATTR_VERSION.to_le_bytes());
    for e in sorted {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        let id = if has_qualifier(e.tag) {
            e.id
        } else {
            UNDEFINED_ID
        };
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// The three-entry ACL equivalent to a mode, which libacl reports as the
/// access ACL of a file that has no `system.posix_acl_access`.
pub fn from_mode(mode: u32) -> Vec<AclEntry> {
    let e = |tag, shift: u32| AclEntry {
        tag,
        id: UNDEFINED_ID,
        perm: ((mode >> shift) & 7) as u16,
    };
    vec![e(TAG_USER_OBJ, 6), e(TAG_GROUP_OBJ, 3), e(TAG_OTHER, 0)]
}

/// libacl's short text. `name_of(is_user, id)` gives the name to print for
/// a qualified entry, or None to print the number (what libacl does when
/// the id has no name, and always with TEXT_NUMERIC_IDS).
pub fn to_text(
    entries: &[AclEntry],
    mut name_of: impl FnMut(bool, u32) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let letter = match e.tag {
            TAG_USER_OBJ | TAG_USER => b'u',
            TAG_GROUP_OBJ | TAG_GROUP => b'g',
            TAG_MASK => b'm',
            _ => b'o',
        };
        out.push(letter);
        out.push(b':');
        if has_qualifier(e.tag) {
            match name_of(e.tag == TAG_USER, e.id) {
                Some(name) => quote_into(&mut out, &name),
                None => out.extend_from_slice(e.id.to_string().as_bytes()),
            }
        }
        out.push(b':');
        out.push(if e.perm & 4 != 0 { b'r' } else { b'-' });
        out.push(if e.perm & 2 != 0 { b'w' } else { b'-' });
        out.push(if e.perm & 1 != 0 { b'x' } else { b'-' });
    }
    out
}

/// libacl escapes separators in names as `\ooo` and a backslash as `\\`.
fn quote_into(out: &mut Vec<u8>, name: &[u8]) {
    for &b in name {
        if b":, \t\n\r".contains(&b) {
            out.push(b'\\');
            out.push(b'0' + (b >> 6));
            out.push(b'0' + ((b >> 3) & 7));
            out.push(b'0' + (b & 7));
        } else if b == b'\\' {
            out.extend_from_slice(b"\\\\");
        } else {
            out.push(b);
        }
    }
}

fn unquote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            if s.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if let Some(d) = s.get(i + 1..i + 4) {
                if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                    let v = (u32::from(d[0] - b'0') << 6)
                        | (u32::from(d[1] - b'0') << 3)
                        | u32::from(d[2] - b'0');
                    if let Ok(b) = u8::try_from(v) {
                        out.push(b);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Parses the text forms libacl's `acl_from_text()` accepts in practice:
/// entries separated by commas or newlines, long or one-letter tags, an
/// optional empty qualifier field for mask and other, `#` comments.
/// Qualifiers are numbers or names; `resolve(is_user, name)` maps names.
pub fn parse_text(
    text: &[u8],
    mut resolve: impl FnMut(bool, &[u8]) -> Option<u32>,
) -> Result<Vec<AclEntry>, AclError> {
    let mut entries = Vec::new();
    for raw in text.split(|&b| b == b',' || b == b'\n') {
        let raw = match raw.iter().position(|&b| b == b'#') {
            Some(p) => &raw[..p],
            None => raw,
        };
        let entry = raw.trim_ascii();
        if entry.is_empty() {
            continue;
        }
        let bad = || AclError::BadText(String::from_utf8_lossy(entry).into_owned());
        let fields: Vec<&[u8]> = entry.split(|&b| b == b':').collect();
        let tag = match fields[0] {
            b"u" | b"user" => TAG_USER_OBJ,
            b"g" | b"group" => TAG_GROUP_OBJ,
            b"m" | b"mask" => TAG_MASK,
            b"o" | b"other" => TAG_OTHER,
            _ => return Err(bad()),
        };
        let (qualifier, perms): (&[u8], &[u8]) = match (tag, fields.len()) {
            (_, 3) => (fields[1], fields[2]),
            (TAG_MASK | TAG_OTHER, 2) => (b"", fields[1]),
            _ => return Err(bad()),
        };
        let mut perm = 0u16;
        for &c in perms.trim_ascii() {
            perm |= match c {
                b'r' => 4,
                b'w' => 2,
                b'x' => 1,
                b'-' => 0,
                _ => return Err(bad()),
            };
        }
        let qualifier = qualifier.trim_ascii();
        let (tag, id) = if qualifier.is_empty() {
            (tag, UNDEFINED_ID)
        } else {
            let is_user = match tag {
                TAG_USER_OBJ => true,
                TAG_GROUP_OBJ => false,
                _ => return Err(bad()),
            };
            let name = unquote(qualifier);
            let numeric = std::str::from_utf8(&name)
                .ok()
                .and_then(|s| s.parse::<u32>().ok());
            let id = match numeric.or_else(|| resolve(is_user, &name)) {
                Some(id) => id,
                None => {
                    return Err(AclError::UnknownName {
                        kind: if is_user { "user" } else { "group" },
                        name: String::from_utf8_lossy(&name).into_owned(),
                    })
                }
            };
            (if is_user { TAG_USER } else { TAG_GROUP }, id)
        };
        entries.push(AclEntry { tag, id, perm });
    }
    entries.sort();
    Ok(entries)
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
}

/// Reads a file's ACLs the way bup's `read_acl` does. Returns None when the
/// file has no extended ACL (per `acl_extended_file`: an access ACL of more
/// than three entries, or any default ACL), or when the file system does
/// not support ACLs. The caller must not pass symlinks (bup skips them).
pub(crate) fn capture(
    path: &CStr,
    mode: u32,
    is_dir: bool,
    names: &mut IdNames,
) -> io::Result<Option<PosixAcl>> {
    let access = match sys::lgetxattr(path, C_XATTR_ACCESS) {
        Ok(v) => v,
        Err(e) if is_unsupported(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let default = match sys::lgetxattr(path, C_XATTR_DEFAULT) {
        Ok(v) => v,
        Err(e) if is_unsupported(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let base_len = HEADER_LEN + 3 * ENTRY_LEN;
    let extended = access.as_ref().is_some_and(|a| a.len() > base_len)
        || default.as_ref().is_some_and(|d| d.len() >= base_len);
    if !extended {
        return Ok(None);
    }
    let invalid = |e: AclError| io::Error::new(io::ErrorKind::InvalidData, e);
    let access = match access {
        Some(a) => parse_xattr(&a).map_err(invalid)?,
        None => from_mode(mode),
    };
    let default = match (is_dir, default) {
        (true, Some(d)) => parse_xattr(&d).map_err(invalid)?,
        _ => Vec::new(),
    };
    let mut named = |is_user: bool, id: u32| {
        if is_user {
            names.user_name(id).map(<[u8]>::to_vec)
        } else {
            names.group_name(id).map(<[u8]>::to_vec)
        }
    };
    Ok(Some(PosixAcl {
        access_text: to_text(&access, &mut named),
        access_numeric: to_text(&access, |_, _| None),
        default_text: to_text(&default, &mut named),
        default_numeric: to_text(&default, |_, _| None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Taken from `getfattr -d -m -` of a file after `setfacl -m u:nobody:r`.
    const NOBODY_ACCESS: &[u8] = &[
        2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 2, 0, 4, 0, 254, 255, 0, 0, 4, 0, 4, 0, 255,
        255, 255, 255, 16, 0, 4, 0, 255, 255, 255, 255, 32, 0, 4, 0, 255, 255, 255, 255,
    ];

    #[test]
    fn xattr_to_text_like_libacl() {
        let entries = parse_xattr(NOBODY_ACCESS).unwrap();
        let text = to_text(&entries, |u, id| {
            (u && id == 65534).then(|| b"nobody".to_vec())
        });
        assert_eq!(text, b"u::rw-,u:nobody:r--,g::r--,m::r--,o::r--");
        assert_eq!(
            to_text(&entries, |_, _| None),
            b"u::rw-,u:65534:r--,g::r--,m::r--,o::r--"
        );
        assert_eq!(encode_xattr(&entries), NOBODY_ACCESS);
        assert_eq!(
            to_text(&from_mode(0o40755), |_, _| None),
            b"u::rwx,g::r-x,o::r-x"
        );
        assert_eq!(to_text(&[], |_, _| None), b"");
    }

    #[test]
    fn text_round_trips_through_parse() {
        let text = b"u::rw-,u:65534:r--,g::r--,g:1:r-x,m::r-x,o::---";
        let entries = parse_text(text, |_, _| None).unwrap();
        assert_eq!(to_text(&entries, |_, _| None), text);
        let named = parse_text(
            b"user::rwx\ngroup::r-x\ngroup:daemon:r-x\nmask:r-x\nother:r-x # comment",
            |u, n| (!u && n == b"daemon").then_some(1),
        )
        .unwrap();
        assert_eq!(
            to_text(&named, |_, _| None),
            b"u::rwx,g::r-x,g:1:r-x,m::r-x,o::r-x".as_slice()
        );
        assert_eq!(
            parse_text(b"u:ghost:r--", |_, _| None),
            Err(AclError::UnknownName {
                kind: "user",
                name: "ghost".into()
            })
        );
        assert!(parse_text(b"z::rwx", |_, _| None).is_err());
        assert!(parse_text(b"u::rwq", |_, _| None).is_err());
        assert!(parse_text(b"m:1:rwx", |_, _| None).is_err());
    }

    #[test]
    fn names_with_separators_are_quoted() {
        let entries = [AclEntry {
            tag: TAG_USER,
            id: 7,
            perm: 4,
        }];
        let text = to_text(&entries, |_, _| Some(b"a b,c\\d".to_vec()));
        assert_eq!(text, b"u:a\\040b\\054c\\\\d:r--");
        let back = parse_text(&text, |_, n| (n == b"a b,c\\d").then_some(7)).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn bad_xattrs_are_rejected() {
        assert_eq!(parse_xattr(&[]), Err(AclError::BadXattr));
        assert_eq!(parse_xattr(&[1, 0, 0, 0]), Err(AclError::BadXattr));
        assert_eq!(parse_xattr(&NOBODY_ACCESS[..10]), Err(AclError::BadXattr));
        let mut bad = NOBODY_ACCESS.to_vec();
        bad[4] = 0x40;
        assert_eq!(parse_xattr(&bad), Err(AclError::BadTag(0x40)));
    }
}
