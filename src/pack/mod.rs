//! Git pack files (v2) and their indexes (idx v2, v1 read-only).
//!
//! This module owns the byte formats: the pack entry header (`encode_entry_header`,
//! `parse_entry_header`), the idx (`idx`), deltas (`delta`), inflating
//! whole streams held in memory (`inflate`), reading entries by
//! offset with `pread` (`reader`) and writing new packs crash-safely (`writer`).
//! `lookup` answers "which pack holds this id, at which rank" across a
//! fixed set of packs in one search (gc's mark, fsck's walk). Reading
//! objects across a changing set of packs and loose objects is
//! `repo::store`'s job.
//!
//! Pack layout: "PACK", version (2), object count, then entries, then the
//! SHA-1 of everything before it. An entry is a header (type in bits 4-6 of the
//! first byte, size in 4 + 7n bits, little-endian groups, MSB = more), for
//! OFS_DELTA a big-endian "offset minus one per continuation" distance back to
//! the base, for REF_DELTA the base's 20-byte id, then a zlib stream.

pub mod delta;
pub mod idx;
pub mod inflate;
pub mod lookup;
pub mod reader;
pub mod writer;

pub use idx::{IdxEntry, PackIndex};
pub use lookup::PackLookup;
pub use reader::PackFile;
pub use writer::PackWriter;

use crate::object::{Kind, ObjectId};

pub const PACK_SIGNATURE: &[u8; 4] = b"PACK";
pub const PACK_HEADER_LEN: u64 = 12;
pub const PACK_TRAILER_LEN: u64 = 20;

const OBJ_OFS_DELTA: u8 = 6;
const OBJ_REF_DELTA: u8 = 7;

/// What an entry holds: a whole object or a delta against some base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Base(Kind),
    /// The base starts at this absolute offset in the same pack.
    OfsDelta {
        base_offset: u64,
    },
    RefDelta {
        base: ObjectId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Where the entry starts (its header).
    pub offset: u64,
    pub kind: EntryKind,
    /// Inflated size of the entry's zlib stream (for deltas: of the delta data).
    pub size: u64,
    /// Where the zlib stream starts.
    pub data_offset: u64,
    /// CRC-32 of the header bytes, to be continued over the zlib stream and
    /// compared with the idx (catches damage zlib cannot see, such as padding bits).
    pub header_crc: u32,
}

/// Appends the type-and-size header of a whole (non-delta) object to `out`.
pub fn encode_entry_header(kind: Kind, size: u64, out: &mut Vec<u8>) {
    let mut byte = ((kind as u8) << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest != 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
}

/// Parses the entry header at `offset` from `buf` (the bytes starting there;
/// 32 bytes suffice for any header). Errors are descriptions of the damage.
pub fn parse_entry_header(offset: u64, buf: &[u8]) -> Result<EntryHeader, String> {
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<u8, String> {
        let b = *buf
            .get(pos)
            .ok_or_else(|| format!("entry header at offset {offset} is truncated ({what})"))?;
        pos += 1;
        Ok(b)
    };
    let first = next("type")?;
    let type_bits = (first >> 4) & 7;
    let mut size = u64::from(first & 0x0f);
    let mut shift = 4u32;
    let mut byte = first;
    while byte & 0x80 != 0 {
        byte = next("size")?;
        let bits = u64::from(byte & 0x7f);
        // The last group that fits starts at bit 60 and may use only 4 bits.
        if shift > 60 || (bits << shift) >> shift != bits {
            return Err(format!("entry size at offset {offset} overflows 64 bits"));
        }
        size |= bits << shift;
        shift += 7;
    }
    let kind = match type_bits {
        OBJ_OFS_DELTA => {
            let mut c = next("delta offset")?;
            let mut dist = u64::from(c & 0x7f);
            while c & 0x80 != 0 {
                c = next("delta offset")?;
                dist = dist
                    .checked_add(1)
                    .and_then(|d| d.checked_mul(128))
                    .map(|d| d | u64::from(c & 0x7f))
                    .ok_or_else(|| format!("delta base distance at offset {offset} overflows"))?;
            }
            // A base lies strictly before its delta and after the pack header,
            // which also rules out cycles through OFS_DELTA links.
            match offset.checked_sub(dist) {
                Some(b) if dist > 0 && b >= PACK_HEADER_LEN => {
                    EntryKind::OfsDelta { base_offset: b }
                }
                _ => {
                    return Err(format!(
                        "delta at offset {offset} points {dist} bytes back, outside the pack"
                    ))
                }
            }
        }
        OBJ_REF_DELTA => {
            let bytes = buf
                .get(pos..pos + 20)
                .ok_or_else(|| format!("entry header at offset {offset} is truncated (base id)"))?;
            pos += 20;
            EntryKind::RefDelta {
                base: ObjectId::from_bytes(bytes).expect("slice of 20 bytes"),
            }
        }
        t => EntryKind::Base(
            Kind::from_pack_type(t)
                .ok_or_else(|| format!("invalid object type {t} at offset {offset}"))?,
        ),
    };
    let data_offset = offset
        .checked_add(pos as u64)
        .ok_or_else(|| format!("entry at offset {offset} ends beyond any pack"))?;
    Ok(EntryHeader {
        offset,
        kind,
        size,
        data_offset,
        header_crc: crc32fast::hash(&buf[..pos]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_header_round_trip() {
        for size in [
            0u64,
            1,
            15,
            16,
            127,
            128,
            2047,
            2048,
            1 << 20,
            u32::MAX as u64 + 7,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            encode_entry_header(Kind::Blob, size, &mut buf);
            let h = parse_entry_header(100, &buf).unwrap();
            assert_eq!(h.kind, EntryKind::Base(Kind::Blob));
            assert_eq!(h.size, size);
            assert_eq!(h.data_offset, 100 + buf.len() as u64);
        }
    }

    #[test]
    fn known_header_bytes() {
        // A 300-byte blob: 0xb0 | (300 & 15) = 0xbc, then 300 >> 4 = 18.
        let mut buf = Vec::new();
        encode_entry_header(Kind::Blob, 300, &mut buf);
        assert_eq!(buf, [0xbc, 0x12]);
    }

    #[test]
    fn ofs_delta_distance() {
        // Distance 128 encodes as [0x80, 0x00] ("one per continuation" bias).
        let h = parse_entry_header(1000, &[0x60, 0x80, 0x00]).unwrap();
        assert_eq!(h.kind, EntryKind::OfsDelta { base_offset: 872 });
        assert!(parse_entry_header(20, &[0x60, 0x7f]).is_err());
        assert!(parse_entry_header(20, &[0x60, 0x00]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        assert!(parse_entry_header(12, &[]).is_err());
        assert!(parse_entry_header(12, &[0x80; 40]).is_err());
        assert!(parse_entry_header(12, &[0x00]).is_err());
        assert!(parse_entry_header(12, &[0x70, 1, 2]).is_err());
        assert!(parse_entry_header(
            u64::MAX,
            &[0x6f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        )
        .is_err());
    }

    /// Found by the pack_entry_header fuzz target: a header at the very end
    /// of the offset space overflowed `data_offset` (a panic with overflow
    /// checks, a wrapped offset without).
    #[test]
    fn entry_header_at_the_end_of_the_offset_space_is_an_error_not_an_overflow() {
        assert!(parse_entry_header(u64::MAX, &[0x30]).is_err());
        assert!(parse_entry_header(u64::MAX - 1, &[0x30]).is_ok());
    }

    /// A size whose last group sets bits above 63 was silently cut.
    #[test]
    fn entry_size_beyond_64_bits_is_an_error_not_truncated() {
        let mut header = vec![0xbf];
        header.extend_from_slice(&[0xff; 8]);
        header.push(0x0f); // bits 60..63: fits
        assert_eq!(parse_entry_header(12, &header).unwrap().size, u64::MAX);
        *header.last_mut().unwrap() = 0x1f; // bit 64: does not
        assert!(parse_entry_header(12, &header).is_err());
    }
}
