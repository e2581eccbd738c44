//! Git tree objects and bup's name mangling.
//!
//! A tree is a list of `<octal mode> <name>\0<20-byte id>` entries sorted
//! bytewise by name, where directories (any entry with mode 40000) compare as
//! if their name ended in `/`. bup adds a layer on top: chunked files are
//! stored as trees named `name.bup`, names that would be mistaken for such
//! markers get `.bupl` appended, and every directory has a `.bupm` holding the
//! metadata of its non-directory entries (see BUP-FORMAT.md A.4).

use super::ObjectId;
use std::cmp::Ordering;

/// The git modes bup and rewind use. bup never writes 100755: exec bits live
/// in `.bupm`. Readers accept 100755 and submodule links anyway.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Mode {
    Tree,
    Blob,
    BlobExecutable,
    Symlink,
    /// A submodule (gitlink); never written, only tolerated when reading.
    Commit,
}

impl Mode {
    pub fn as_octal(self) -> &'static [u8] {
        match self {
            Mode::Tree => b"40000",
            Mode::Blob => b"100644",
            Mode::BlobExecutable => b"100755",
            Mode::Symlink => b"120000",
            Mode::Commit => b"160000",
        }
    }

    fn from_octal(octal: &[u8]) -> Option<Mode> {
        Some(match octal {
            b"40000" | b"040000" => Mode::Tree,
            b"100644" | b"100664" | b"100640" => Mode::Blob,
            b"100755" => Mode::BlobExecutable,
            b"120000" => Mode::Symlink,
            b"160000" => Mode::Commit,
            _ => return None,
        })
    }

    pub fn is_tree(self) -> bool {
        self == Mode::Tree
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub mode: Mode,
    pub name: Vec<u8>,
    pub id: ObjectId,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("malformed tree entry at byte {offset}: {detail}")]
    Malformed { offset: usize, detail: &'static str },
}

/// Git's tree order: bytewise by name, with trees compared as `name/`.
pub fn git_order(a_name: &[u8], a_is_tree: bool, b_name: &[u8], b_is_tree: bool) -> Ordering {
    let common = a_name.len().min(b_name.len());
    match a_name[..common].cmp(&b_name[..common]) {
        Ordering::Equal => {}
        other => return other,
    }
    let next = |name: &[u8], is_tree: bool| -> Option<u8> {
        match name.get(common) {
            Some(&b) => Some(b),
            None if is_tree => Some(b'/'),
            None => None,
        }
    };
    next(a_name, a_is_tree).cmp(&next(b_name, b_is_tree))
}

/// Sorts `entries` into git order and encodes them as a tree object body.
/// Names must be unique and contain neither `/` nor NUL; the caller (tree
/// builder) guarantees that, because a tree with duplicate names fails
/// `git fsck`.
pub fn encode(entries: &mut [Entry]) -> Vec<u8> {
    entries.sort_by(|a, b| git_order(&a.name, a.mode.is_tree(), &b.name, b.mode.is_tree()));
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.name.len() + 28).sum());
    for e in entries.iter() {
        debug_assert!(!e.name.is_empty() && !e.name.contains(&0) && !e.name.contains(&b'/'));
        out.extend_from_slice(e.mode.as_octal());
        out.push(b' ');
        out.extend_from_slice(&e.name);
        out.push(0);
        out.extend_from_slice(e.id.as_bytes());
    }
    out
}

/// Decodes a tree object body. Unknown modes are an error rather than a
/// guess, so that a damaged tree is never shown as something else.
pub fn decode(body: &[u8]) -> Result<Vec<Entry>, TreeError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let rest = &body[pos..];
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or(TreeError::Malformed {
                offset: pos,
                detail: "no space after mode",
            })?;
        let mode = Mode::from_octal(&rest[..space]).ok_or(TreeError::Malformed {
            offset: pos,
            detail: "unknown mode",
        })?;
        let name_start = space + 1;
        let nul = rest[name_start..]
            .iter()
            .position(|&b| b == 0)
            .ok_or(TreeError::Malformed {
                offset: pos,
                detail: "unterminated name",
            })?
            + name_start;
        let id = rest
            .get(nul + 1..nul + 21)
            .and_then(ObjectId::from_bytes)
            .ok_or(TreeError::Malformed {
                offset: pos,
                detail: "truncated object id",
            })?;
        let name = rest[name_start..nul].to_vec();
        if name.is_empty() {
            return Err(TreeError::Malformed {
                offset: pos,
                detail: "empty name",
            });
        }
        entries.push(Entry { mode, name, id });
        pos += nul + 21;
    }
    Ok(entries)
}

/// What a stored (mangled) tree entry name stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Demangled {
    /// An ordinary entry stored under its own name.
    Normal,
    /// A file split into a chunk tree (`name.bup`).
    Chunked,
    /// The directory's metadata file (`.bupm`).
    Metadata,
}

/// True when bup would append `.bupl` to `name` so that it is not read as a
/// marker: names ending in `.bup`, or in `.bup` plus any one byte.
fn needs_bupl(name: &[u8]) -> bool {
    name.ends_with(b".bup") || (!name.is_empty() && name[..name.len() - 1].ends_with(b".bup"))
}

/// The stored name of a directory entry. `chunked` is true for a regular file
/// stored as a chunk tree.
pub fn mangle(name: &[u8], chunked: bool) -> Vec<u8> {
    // bup checks "chunked" first: a chunked `x.bup` is stored as `x.bup.bup`,
    // which demangles unambiguously because only trees lose a `.bup`.
    let mut out = name.to_vec();
    if chunked {
        out.extend_from_slice(b".bup");
    } else if needs_bupl(name) {
        out.extend_from_slice(b".bupl");
    }
    out
}

/// Inverse of [`mangle`], following bup 0.33's `demangle_name`.
pub fn demangle(stored: &[u8], mode: Mode) -> (&[u8], Demangled) {
    if stored == b".bupm" {
        return (b"", Demangled::Metadata);
    }
    if let Some(name) = stored.strip_suffix(b".bupl") {
        return (name, Demangled::Normal);
    }
    if mode.is_tree() {
        if let Some(name) = stored.strip_suffix(b".bup") {
            return (name, Demangled::Chunked);
        }
    }
    (stored, Demangled::Normal)
}

/// Why a directory entry's (demangled) name cannot be shown or restored.
///
/// One definition for the whole view: a name must be something a single
/// directory can hold, because restore creates it inside the target and the
/// mount hands it to the kernel. Anything else would let a damaged or
/// hostile repository point a restore outside its target (`..`, `a/b`) or
/// name no file at all. git itself never writes such names (`git fsck
/// --strict` calls them errors: `fullPathname`, `hasDot`, `hasDotdot`,
/// `emptyName`, and `duplicateEntries` for twins), and neither does bup or
/// rewind. `...bupl` passes git but demangles to `..`, so the check is on
/// the demangled name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeName {
    #[error("the name is empty")]
    Empty,
    #[error("`.` and `..` name no file of their own")]
    Dot,
    #[error("the name contains `/`")]
    Slash,
    #[error("the name contains a NUL byte")]
    Nul,
}

/// Checks that `name`, as [`demangle`] returned it, names one entry of one
/// directory.
pub fn check_name(name: &[u8]) -> Result<(), UnsafeName> {
    match name {
        b"" => Err(UnsafeName::Empty),
        b"." | b".." => Err(UnsafeName::Dot),
        _ if name.contains(&b'/') => Err(UnsafeName::Slash),
        _ if name.contains(&0) => Err(UnsafeName::Nul),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{hash_object, Kind};

    fn entry(mode: Mode, name: &str) -> Entry {
        Entry {
            mode,
            name: name.as_bytes().to_vec(),
            id: ObjectId::EMPTY_BLOB,
        }
    }

    #[test]
    fn directories_sort_as_if_followed_by_slash() {
        let mut entries = vec![
            entry(Mode::Tree, "two.bin.bup"),
            entry(Mode::Blob, "two.bin.a"),
            entry(Mode::Blob, "a-"),
            entry(Mode::Tree, "a"),
            entry(Mode::Blob, "a0"),
        ];
        let body = encode(&mut entries);
        let names: Vec<_> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        // "a-" (0x2d) < "a/" (0x2f) < "a0" (0x30); "two.bin.a" < "two.bin.bup/".
        assert_eq!(names, ["a-", "a", "a0", "two.bin.a", "two.bin.bup"]);
        assert_eq!(decode(&body).unwrap(), entries);
    }

    #[test]
    fn encoding_matches_git_for_a_known_tree() {
        // `printf hello > f; git add f; git write-tree` gives this id.
        let mut entries = vec![Entry {
            mode: Mode::Blob,
            name: b"f".to_vec(),
            id: hash_object(Kind::Blob, b"hello"),
        }];
        let body = encode(&mut entries);
        assert_eq!(
            hash_object(Kind::Tree, &body).to_string(),
            "42bb57d1e79cc0af4c2af35480fd5ca001630afc"
        );
    }

    #[test]
    fn mangling_follows_bup() {
        assert_eq!(mangle(b"plain", false), b"plain");
        assert_eq!(mangle(b"big", true), b"big.bup");
        assert_eq!(mangle(b"name.bup", false), b"name.bup.bupl");
        assert_eq!(mangle(b"name.bup", true), b"name.bup.bup");
        assert_eq!(mangle(b"weird.bupm", false), b"weird.bupm.bupl");
        assert_eq!(mangle(b".bupm", false), b".bupm.bupl");
        assert_eq!(mangle(b"x.bupxy", false), b"x.bupxy");
        for (name, chunked) in [
            (&b"plain"[..], false),
            (b"big", true),
            (b"name.bup", false),
            (b"name.bup", true),
            (b".bupm", false),
            (b"d.bupl", false),
        ] {
            let mode = if chunked { Mode::Tree } else { Mode::Blob };
            let stored = mangle(name, chunked);
            let want = if chunked {
                Demangled::Chunked
            } else {
                Demangled::Normal
            };
            assert_eq!(demangle(&stored, mode), (name, want), "{stored:?}");
        }
        assert_eq!(
            demangle(b".bupm", Mode::Blob),
            (&b""[..], Demangled::Metadata)
        );
    }

    #[test]
    fn names_that_leave_their_directory_are_unsafe() {
        for ok in [&b"a"[..], b"...", b".a", b"..a", b"a..", b".bupm", b"\xff"] {
            assert_eq!(check_name(ok), Ok(()), "{}", ok.escape_ascii());
        }
        assert_eq!(check_name(b""), Err(UnsafeName::Empty));
        assert_eq!(check_name(b"."), Err(UnsafeName::Dot));
        assert_eq!(check_name(b".."), Err(UnsafeName::Dot));
        assert_eq!(check_name(b"/abs"), Err(UnsafeName::Slash));
        assert_eq!(check_name(b"../x"), Err(UnsafeName::Slash));
        assert_eq!(check_name(b"a\0b"), Err(UnsafeName::Nul));
        // What the stored names of the issue demangle to.
        assert_eq!(demangle(b"...bupl", Mode::Blob).0, b"..");
        assert_eq!(demangle(b"...bup", Mode::Tree).0, b"..");
        assert_eq!(demangle(b"..bupl", Mode::Blob).0, b".");
    }

    #[test]
    fn malformed_trees_are_errors() {
        assert!(decode(b"100644 f").is_err());
        assert!(decode(b"100644 f\0short").is_err());
        assert!(decode(b"777 f\0aaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(decode(b"100644 \0aaaaaaaaaaaaaaaaaaaa").is_err());
    }
}
