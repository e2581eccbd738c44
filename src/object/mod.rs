//! Git objects as values: ids, kinds, and the pure encoding and decoding of
//! trees and commits (with bup's name mangling). No I/O lives here.

pub mod commit;
pub mod tree;

use sha1::{Digest, Sha1};
use std::fmt;

/// A SHA-1 object id. Repositories are SHA-1 git repositories, as bup requires.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 20]);

impl ObjectId {
    /// The id of the empty blob, which bup stores for fifos, sockets and devices.
    pub const EMPTY_BLOB: ObjectId = ObjectId([
        0xe6, 0x9d, 0xe2, 0x9b, 0xb2, 0xd1, 0xd6, 0x43, 0x4b, 0x8b, 0x29, 0xae, 0x77, 0x5a, 0xd8,
        0xc2, 0xe4, 0x8c, 0x53, 0x91,
    ]);

    /// The id of the empty tree, which git treats as present in every
    /// repository; the view serves gitlinks (submodules) as this tree.
    pub const EMPTY_TREE: ObjectId = ObjectId([
        0x4b, 0x82, 0x5d, 0xc6, 0x42, 0xcb, 0x6e, 0xb9, 0xa0, 0x60, 0xe5, 0x4b, 0xf8, 0xd6, 0x92,
        0x88, 0xfb, 0xee, 0x49, 0x04,
    ]);

    pub fn from_bytes(bytes: &[u8]) -> Option<ObjectId> {
        Some(ObjectId(bytes.try_into().ok()?))
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(hex: &[u8]) -> Option<ObjectId> {
        if hex.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(ObjectId(out))
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

/// The four git object kinds, numbered as in pack entry headers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Kind {
    Commit = 1,
    Tree = 2,
    Blob = 3,
    Tag = 4,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Tree => "tree",
            Kind::Blob => "blob",
            Kind::Tag => "tag",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Kind> {
        Some(match name {
            b"commit" => Kind::Commit,
            b"tree" => Kind::Tree,
            b"blob" => Kind::Blob,
            b"tag" => Kind::Tag,
            _ => return None,
        })
    }

    /// The type number used in pack entry headers (1-4).
    pub fn from_pack_type(t: u8) -> Option<Kind> {
        Some(match t {
            1 => Kind::Commit,
            2 => Kind::Tree,
            3 => Kind::Blob,
            4 => Kind::Tag,
            _ => return None,
        })
    }
}

/// Hashes `data` as a git object of `kind`: SHA-1 over "<kind> <len>\0<data>".
pub fn hash_object(kind: Kind, data: &[u8]) -> ObjectId {
    let mut hasher = object_hasher(kind, data.len() as u64);
    hasher.update(data);
    ObjectId(hasher.finalize().into())
}

/// A SHA-1 fed with the header of a `kind` object of `size` bytes: fed the
/// bytes in pieces next, it yields the id [`hash_object`] gives them.
pub fn object_hasher(kind: Kind, size: u64) -> Sha1 {
    let mut hasher = Sha1::new();
    hasher.update(kind.name().as_bytes());
    hasher.update(b" ");
    hasher.update(size.to_string().as_bytes());
    hasher.update([0u8]);
    hasher
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_id_matches_git() {
        assert_eq!(hash_object(Kind::Blob, b""), ObjectId::EMPTY_BLOB);
        assert_eq!(
            ObjectId::EMPTY_BLOB.to_string(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(hash_object(Kind::Tree, b""), ObjectId::EMPTY_TREE);
        assert_eq!(
            ObjectId::EMPTY_TREE.to_string(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = hash_object(Kind::Blob, b"hello\n");
        assert_eq!(id.to_string(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(ObjectId::from_hex(id.to_string().as_bytes()), Some(id));
        assert_eq!(ObjectId::from_hex(b"zz"), None);
        assert_eq!(ObjectId::from_hex(&[b'g'; 40]), None);
    }
}
