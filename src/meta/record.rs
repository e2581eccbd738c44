//! The `.bupm` byte format: pure encoding and decoding of metadata entries.
//!
//! An entry is a run of records `vuint(tag) bvec(payload)` ended by tag 0;
//! an entry that is only `00` means "no metadata". [`encode_entry`] writes
//! exactly the bytes bup 0.33's `Metadata.encode(include_path=False)` writes:
//! records in the order 10, 3, 8, 11, 6, 7, each omitted when bup would omit
//! it (empty payload). The reader accepts everything bup 0.33 reads: the
//! current tags, the legacy common_v1/v2 and posix1e_acl_v1 records, the
//! path record (ignored here), and unknown tags (skipped).

use std::io::{self, BufRead, BufReader, Read};

use super::vint::{put_bvec, put_vint, put_vint_parts, put_vuint, Accumulator, Cursor, VintError};
use super::{Metadata, PosixAcl, Timespec};

const TAG_END: u64 = 0;
const TAG_PATH: u64 = 1;
const TAG_COMMON_V1: u64 = 2;
const TAG_SYMLINK_TARGET: u64 = 3;
const TAG_POSIX1E_ACL_V1: u64 = 4;
const TAG_LINUX_ATTR: u64 = 6;
const TAG_LINUX_XATTR: u64 = 7;
const TAG_HARDLINK_TARGET: u64 = 8;
const TAG_COMMON_V2: u64 = 9;
const TAG_COMMON_V3: u64 = 10;
const TAG_POSIX1E_ACL_V2: u64 = 11;

/// Largest record payload the reader accepts. Real records are tiny (the
/// largest, xattrs, is bounded by the kernel's 64 KiB per value); the limit
/// only keeps a corrupt length from making us buffer a whole stream.
pub const MAX_RECORD_PAYLOAD: u64 = 64 << 20;

/// Appends one entry. `None` (or a record set bup would write nothing for,
/// e.g. mode 0 and nothing else) is the single byte `00`.
pub fn encode_entry(meta: Option<&Metadata>, out: &mut Vec<u8>) {
    let Some(m) = meta else {
        out.push(0);
        return;
    };
    let mut payload = Vec::with_capacity(64);

    // bup's _encode_common returns None when mode is unset/0.
    if m.mode != 0 {
        put_vint(&mut payload, i64::from(m.mode));
        put_vint(&mut payload, i64::from(m.uid));
        put_bvec(&mut payload, &m.user);
        put_vint(&mut payload, i64::from(m.gid));
        put_bvec(&mut payload, &m.group);
        put_vint_parts(&mut payload, false, m.rdev);
        for t in [m.atime, m.mtime, m.ctime] {
            put_vint(&mut payload, t.sec);
            put_vuint(&mut payload, u64::from(t.nsec));
        }
        match m.size {
            Some(size) => put_vint_parts(&mut payload, false, size),
            None => put_vint(&mut payload, -1),
        }
        put_record(out, TAG_COMMON_V3, &payload);
    }
    if let Some(target) = &m.symlink_target {
        put_record(out, TAG_SYMLINK_TARGET, target);
    }
    if let Some(target) = &m.hardlink_target {
        put_record(out, TAG_HARDLINK_TARGET, target);
    }
    if let Some(acl) = &m.acl {
        payload.clear();
        for s in [
            &acl.access_text,
            &acl.access_numeric,
            &acl.default_text,
            &acl.default_numeric,
        ] {
            put_bvec(&mut payload, s);
        }
        put_record(out, TAG_POSIX1E_ACL_V2, &payload);
    }
    if let Some(attr) = m.linux_attr {
        // bup writes the attr record only when the flags are non-zero.
        if attr != 0 {
            payload.clear();
            put_vuint(&mut payload, u64::from(attr));
            put_record(out, TAG_LINUX_ATTR, &payload);
        }
    }
    if !m.xattrs.is_empty() {
        payload.clear();
        put_vuint(&mut payload, m.xattrs.len() as u64);
        for (name, value) in &m.xattrs {
            put_bvec(&mut payload, name);
            put_bvec(&mut payload, value);
        }
        put_record(out, TAG_LINUX_XATTR, &payload);
    }
    out.push(0);
}

/// bup skips any record whose encoded payload is empty (`if data:`), e.g. an
/// empty symlink or hard-link target.
fn put_record(out: &mut Vec<u8>, tag: u64, payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    put_vuint(out, tag);
    put_bvec(out, payload);
}

/// What was wrong with a metadata stream.
#[derive(Debug, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("stream ends inside {what}")]
    Truncated { what: &'static str },
    #[error("record tag {tag}: {what} is truncated")]
    ShortRecord { tag: u64, what: &'static str },
    #[error("record tag {tag}: {what} is out of range")]
    OutOfRange { tag: u64, what: &'static str },
    #[error(
        "record tag {tag}: payload of {len} bytes exceeds the {MAX_RECORD_PAYLOAD}-byte limit"
    )]
    TooLarge { tag: u64, len: u64 },
    #[error("{what} is not a valid number")]
    BadNumber { what: &'static str },
    #[error("reading: {0}")]
    Io(#[from] io::Error),
}

/// A decoding failure, with the index of the entry it happened in (0 is the
/// directory's own entry in a `.bupm`).
#[derive(Debug, thiserror::Error)]
#[error("metadata entry {entry}: {kind}")]
pub struct DecodeError {
    pub entry: u64,
    #[source]
    pub kind: DecodeErrorKind,
}

/// Streaming reader of `.bupm` entries; a `.bupm` can be a chunked blob of
/// any size, so entries are read one at a time. Reads ahead through its own
/// buffer.
pub struct BupmReader<R: Read> {
    inner: BufReader<R>,
    entry: u64,
    failed: bool,
}

impl<R: Read> BupmReader<R> {
    pub fn new(reader: R) -> Self {
        BupmReader {
            inner: BufReader::new(reader),
            entry: 0,
            failed: false,
        }
    }

    /// Index of the next entry to be read.
    pub fn entries_read(&self) -> u64 {
        self.entry
    }

    /// `Ok(None)` at a clean end of stream (between entries), `Ok(Some(None))`
    /// for a "no metadata" entry. After an error the stream position is
    /// unknown, so every later call returns an error too.
    pub fn next_entry(&mut self) -> Result<Option<Option<Metadata>>, DecodeError> {
        if self.failed {
            return Err(self.error(DecodeErrorKind::Truncated {
                what: "an entry after an earlier error",
            }));
        }
        match self.read_entry() {
            Ok(v) => {
                if v.is_some() {
                    self.entry += 1;
                }
                Ok(v)
            }
            Err(kind) => {
                self.failed = true;
                Err(self.error(kind))
            }
        }
    }

    fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            entry: self.entry,
            kind,
        }
    }

    fn read_entry(&mut self) -> Result<Option<Option<Metadata>>, DecodeErrorKind> {
        // EOF is clean only before the first byte of an entry.
        if self.inner.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let mut tag = self.read_vuint("a record tag")?;
        if tag == TAG_END {
            return Ok(Some(None));
        }
        let mut meta = Metadata::default();
        loop {
            let len = self.read_vuint("a record length")?;
            if len > MAX_RECORD_PAYLOAD {
                return Err(DecodeErrorKind::TooLarge { tag, len });
            }
            let mut payload = Vec::new();
            (&mut self.inner).take(len).read_to_end(&mut payload)?;
            if (payload.len() as u64) < len {
                return Err(DecodeErrorKind::Truncated {
                    what: "a record payload",
                });
            }
            apply_record(&mut meta, tag, &payload)?;
            tag = self.read_vuint("a record tag")?;
            if tag == TAG_END {
                return Ok(Some(Some(meta)));
            }
        }
    }

    fn read_vuint(&mut self, what: &'static str) -> Result<u64, DecodeErrorKind> {
        let mut acc = Accumulator::default();
        loop {
            let mut byte = [0u8];
            if let Err(e) = self.inner.read_exact(&mut byte) {
                return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                    DecodeErrorKind::Truncated { what }
                } else {
                    DecodeErrorKind::Io(e)
                });
            }
            match acc.push(byte[0]) {
                Ok(true) => return Ok(acc.value()),
                Ok(false) => {}
                Err(_) => return Err(DecodeErrorKind::BadNumber { what }),
            }
        }
    }
}

/// Decodes a whole in-memory `.bupm`.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Option<Metadata>>, DecodeError> {
    let mut reader = BupmReader::new(bytes);
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        out.push(entry);
    }
    Ok(out)
}

/// Maps a payload-level failure to an error naming the record and field.
fn field<T>(tag: u64, what: &'static str, r: Result<T, VintError>) -> Result<T, DecodeErrorKind> {
    r.map_err(|e| match e {
        VintError::Truncated => DecodeErrorKind::ShortRecord { tag, what },
        VintError::Overflow => DecodeErrorKind::OutOfRange { tag, what },
    })
}

fn apply_record(m: &mut Metadata, tag: u64, payload: &[u8]) -> Result<(), DecodeErrorKind> {
    // Like bup's vint.unpack, each loader reads the fields it knows and
    // ignores anything after them.
    match tag {
        TAG_COMMON_V3 => load_common(m, tag, payload, CommonVersion::V3),
        TAG_COMMON_V2 => load_common(m, tag, payload, CommonVersion::V2),
        TAG_COMMON_V1 => load_common(m, tag, payload, CommonVersion::V1),
        TAG_SYMLINK_TARGET => {
            // bup: the size of a symlink is its target length unless the
            // common record already gave one.
            if m.size.is_none() {
                m.size = Some(payload.len() as u64);
            }
            m.symlink_target = Some(payload.to_vec());
            Ok(())
        }
        TAG_HARDLINK_TARGET => {
            m.hardlink_target = Some(payload.to_vec());
            Ok(())
        }
        TAG_POSIX1E_ACL_V2 | TAG_POSIX1E_ACL_V1 => {
            let mut c = Cursor::new(payload);
            let mut parts: [Vec<u8>; 4] = Default::default();
            for p in parts.iter_mut() {
                *p = field(tag, "ACL text", c.bvec())?.to_vec();
            }
            if tag == TAG_POSIX1E_ACL_V1 {
                // v1 used newline delimiters. bup converts them to commas,
                // and drops the whole ACL (with an error) if a comma is
                // already present, since the conversion would then be
                // ambiguous.
                if parts.iter().any(|p| p.contains(&b',')) {
                    m.acl = None;
                    return Ok(());
                }
                for p in parts.iter_mut() {
                    for b in p.iter_mut() {
                        if *b == b'\n' {
                            *b = b',';
                        }
                    }
                }
            }
            let [access_text, access_numeric, default_text, default_numeric] = parts;
            m.acl = Some(PosixAcl {
                access_text,
                access_numeric,
                default_text,
                default_numeric,
            });
            Ok(())
        }
        TAG_LINUX_ATTR => {
            let v = field(tag, "attr flags", Cursor::new(payload).vuint())?;
            let v = u32::try_from(v).map_err(|_| DecodeErrorKind::OutOfRange {
                tag,
                what: "attr flags",
            })?;
            m.linux_attr = Some(v);
            Ok(())
        }
        TAG_LINUX_XATTR => {
            let mut c = Cursor::new(payload);
            let count = field(tag, "xattr count", c.vuint())?;
            let mut xattrs = Vec::new();
            // The count is untrusted: never preallocate from it; each pair
            // consumes at least two bytes, so a bogus count fails quickly.
            for _ in 0..count {
                let name = field(tag, "xattr name", c.bvec())?.to_vec();
                let value = field(tag, "xattr value", c.bvec())?.to_vec();
                xattrs.push((name, value));
            }
            m.xattrs = xattrs;
            Ok(())
        }
        // The path record (bup meta archives only) and anything unknown,
        // including the never-implemented nfsv4 ACL tag 5, are skipped.
        TAG_PATH => Ok(()),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CommonVersion {
    /// `VVsVsVvVvVvV`: unsigned ids and rdev (legacy).
    V1,
    /// `vvsvsvvVvVvV`
    V2,
    /// v2 plus a trailing signed size, negative meaning unknown.
    V3,
}

fn load_common(
    m: &mut Metadata,
    tag: u64,
    payload: &[u8],
    v: CommonVersion,
) -> Result<(), DecodeErrorKind> {
    let mut c = Cursor::new(payload);
    let range = |what| DecodeErrorKind::OutOfRange { tag, what };
    // Reads one integer field as u64, unsigned (V) in v1 and signed (v)
    // from v2 on; a negative value is out of range for these fields.
    let unsigned_field = |c: &mut Cursor, what: &'static str| -> Result<u64, DecodeErrorKind> {
        if v == CommonVersion::V1 {
            field(tag, what, c.vuint())
        } else {
            let (neg, mag) = field(tag, what, c.vint_parts())?;
            if neg && mag != 0 {
                return Err(range(what));
            }
            Ok(mag)
        }
    };
    let mode = unsigned_field(&mut c, "mode")?;
    let uid = unsigned_field(&mut c, "uid")?;
    let user = field(tag, "user", c.bvec())?.to_vec();
    let gid = unsigned_field(&mut c, "gid")?;
    let group = field(tag, "group", c.bvec())?.to_vec();
    let rdev = unsigned_field(&mut c, "rdev")?;
    let mut times = [Timespec::default(); 3];
    for (t, what) in times.iter_mut().zip(["atime", "mtime", "ctime"]) {
        let sec = field(tag, what, c.vint())?;
        let nsec = field(tag, what, c.vuint())?;
        // bup adds sec*1e9 + ns, so a non-canonical ns is carried over.
        *t = Timespec::normalized(sec, i128::from(nsec)).ok_or_else(|| range(what))?;
    }
    let size = if v == CommonVersion::V3 {
        // bup keeps a size only when it is >= 0 (so -0 is a size of 0).
        let (neg, mag) = field(tag, "size", c.vint_parts())?;
        if neg && mag != 0 {
            None
        } else {
            Some(mag)
        }
    } else {
        None
    };
    m.mode = u32::try_from(mode).map_err(|_| range("mode"))?;
    m.uid = u32::try_from(uid).map_err(|_| range("uid"))?;
    m.gid = u32::try_from(gid).map_err(|_| range("gid"))?;
    m.user = user;
    m.group = group;
    m.rdev = rdev;
    [m.atime, m.mtime, m.ctime] = times;
    // Like bup, an unknown size (-1, or a v1/v2 record) leaves any size
    // already set by a symlink record in place.
    if size.is_some() {
        m.size = size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etc/.bupm from BUP-FORMAT.md A.6: the directory, then `hosts`. The
    /// document elides the ctime bytes; here ctime repeats the mtime bytes,
    /// which keeps the documented record lengths (0x2e and 0x2f).
    fn worked_example() -> Vec<u8> {
        let atime_dir = [0xb0, 0x92, 0x90, 0xb0, 0x0d, 0xab, 0x9d, 0x80, 0x01];
        let t = [0xac, 0x92, 0x90, 0xb0, 0x0d, 0xe9, 0xfa, 0xd3, 0xc2, 0x03];
        let owner: &[u8] = &[
            0x00, 0x04, b'r', b'o', b'o', b't', 0x00, 0x04, b'r', b'o', b'o', b't', 0x00,
        ];
        let mut b = vec![0x0a, 0x2e, 0xad, 0x87, 0x02];
        b.extend_from_slice(owner);
        b.extend_from_slice(&atime_dir);
        b.extend_from_slice(&t);
        b.extend_from_slice(&t);
        b.push(0x41);
        b.extend_from_slice(&[0x06, 0x03, 0x80, 0x80, 0x20, 0x00]);
        b.extend_from_slice(&[0x0a, 0x2f, 0xad, 0x87, 0x04]);
        b.extend_from_slice(owner);
        for _ in 0..3 {
            b.extend_from_slice(&t);
        }
        b.push(0x31);
        b.extend_from_slice(&[0x06, 0x03, 0x80, 0x80, 0x20, 0x00]);
        b
    }

    #[test]
    fn worked_example_decodes_and_reencodes() {
        let bytes = worked_example();
        let entries = decode_all(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        let dir = entries[0].as_ref().unwrap();
        let hosts = entries[1].as_ref().unwrap();
        let t = Timespec {
            sec: 1_795_294_380,
            nsec: 945_093_993,
        };
        let expected_dir = Metadata {
            mode: 0o40755,
            user: b"root".to_vec(),
            group: b"root".to_vec(),
            atime: Timespec {
                sec: 1_795_294_384,
                nsec: 2_100_907,
            },
            mtime: t,
            ctime: t,
            size: None,
            linux_attr: Some(0x80000),
            ..Metadata::default()
        };
        assert_eq!(dir, &expected_dir);
        let expected_hosts = Metadata {
            mode: 0o100755,
            atime: t,
            size: Some(49),
            ..expected_dir.clone()
        };
        assert_eq!(hosts, &expected_hosts);
        let mut again = Vec::new();
        encode_entry(Some(dir), &mut again);
        encode_entry(Some(hosts), &mut again);
        assert_eq!(again, bytes);
    }

    fn full_metadata() -> Metadata {
        Metadata {
            mode: 0o100644,
            uid: 4_000_000_000,
            gid: 65534,
            user: b"alice".to_vec(),
            group: b"nogroup".to_vec(),
            rdev: 0,
            atime: Timespec {
                sec: -1,
                nsec: 999_999_999,
            },
            mtime: Timespec {
                sec: -86_400 * 365 * 80,
                nsec: 1,
            },
            ctime: Timespec {
                sec: i64::MAX,
                nsec: 0,
            },
            size: Some(u64::MAX),
            symlink_target: None,
            hardlink_target: Some(b"some/other/path".to_vec()),
            linux_attr: Some(0x10 | 0x80000),
            xattrs: vec![
                (b"user.a".to_vec(), b"".to_vec()),
                (b"user.b".to_vec(), vec![0, 1, 2, 255]),
                (b"system.posix_acl_access".to_vec(), vec![2, 0, 0, 0]),
            ],
            acl: Some(PosixAcl {
                access_text: b"u::rw-,u:alice:r--,g::r--,m::r--,o::r--".to_vec(),
                access_numeric: b"u::rw-,u:1000:r--,g::r--,m::r--,o::r--".to_vec(),
                default_text: Vec::new(),
                default_numeric: Vec::new(),
            }),
        }
    }

    fn round_trip(m: &Metadata) -> Metadata {
        let mut b = Vec::new();
        encode_entry(Some(m), &mut b);
        let mut all = decode_all(&b).unwrap();
        assert_eq!(all.len(), 1);
        all.pop().unwrap().expect("an entry with metadata")
    }

    #[test]
    fn every_field_round_trips() {
        let m = full_metadata();
        assert_eq!(round_trip(&m), m);

        let dev = Metadata {
            mode: 0o20666,
            rdev: (1 << 8) | 3,
            size: None,
            hardlink_target: None,
            acl: None,
            xattrs: Vec::new(),
            linux_attr: None,
            ..full_metadata()
        };
        assert_eq!(round_trip(&dev), dev);

        let link = Metadata {
            mode: 0o120777,
            symlink_target: Some(b"../target with \xff bytes".to_vec()),
            size: Some(23),
            ..dev.clone()
        };
        assert_eq!(round_trip(&link), link);

        let dir = Metadata {
            mode: 0o40755,
            acl: Some(PosixAcl {
                access_text: b"u::rwx,g::r-x,o::r-x".to_vec(),
                access_numeric: b"u::rwx,g::r-x,o::r-x".to_vec(),
                default_text: b"u::rwx,g::r-x,g:daemon:r-x,m::r-x,o::r-x".to_vec(),
                default_numeric: b"u::rwx,g::r-x,g:1:r-x,m::r-x,o::r-x".to_vec(),
            }),
            ..dev.clone()
        };
        assert_eq!(round_trip(&dir), dir);
    }

    #[test]
    fn record_order_and_omissions_match_bup() {
        let m = full_metadata();
        let mut b = Vec::new();
        encode_entry(Some(&m), &mut b);
        // Walk the records and list their tags.
        let mut c = Cursor::new(&b);
        let mut tags = Vec::new();
        loop {
            let tag = c.vuint().unwrap();
            tags.push(tag);
            if tag == 0 {
                break;
            }
            c.bvec().unwrap();
        }
        assert_eq!(tags, [10, 8, 11, 6, 7, 0]);

        // Empty optional fields and zero attr flags write nothing.
        let sparse = Metadata {
            hardlink_target: Some(Vec::new()),
            linux_attr: Some(0),
            xattrs: Vec::new(),
            acl: None,
            ..m
        };
        let mut b = Vec::new();
        encode_entry(Some(&sparse), &mut b);
        assert_eq!(b[0], 10);
        assert_eq!(
            usize::from(b[1]) + 3,
            b.len(),
            "only the common record and the end"
        );

        let mut b = Vec::new();
        encode_entry(None, &mut b);
        encode_entry(Some(&Metadata::default()), &mut b);
        assert_eq!(b, [0, 0]);
        assert_eq!(decode_all(&b).unwrap(), vec![None, None]);
    }

    #[test]
    fn legacy_records_decode() {
        // common_v1: unsigned ids, no size; uid 70000 needs 3 vuint bytes.
        let mut p = Vec::new();
        put_vuint(&mut p, 0o100600);
        put_vuint(&mut p, 70000);
        put_bvec(&mut p, b"u");
        put_vuint(&mut p, 5);
        put_bvec(&mut p, b"g");
        put_vuint(&mut p, 0);
        for (s, ns) in [(-5i64, 7u64), (10, 0), (11, 999_999_999)] {
            put_vint(&mut p, s);
            put_vuint(&mut p, ns);
        }
        let mut b = Vec::new();
        put_vuint(&mut b, TAG_COMMON_V1);
        put_bvec(&mut b, &p);
        // posix1e_acl_v1 with newline delimiters.
        let mut a = Vec::new();
        for s in [
            &b"u::rw-\ng::r--\no::r--"[..],
            b"u::rw-\ng::r--\no::r--",
            b"",
            b"",
        ] {
            put_bvec(&mut a, s);
        }
        put_vuint(&mut b, TAG_POSIX1E_ACL_V1);
        put_bvec(&mut b, &a);
        b.push(0);
        let m = decode_all(&b).unwrap().pop().unwrap().unwrap();
        assert_eq!(m.mode, 0o100600);
        assert_eq!(m.uid, 70000);
        assert_eq!(m.gid, 5);
        assert_eq!(m.atime, Timespec { sec: -5, nsec: 7 });
        assert_eq!(
            m.ctime,
            Timespec {
                sec: 11,
                nsec: 999_999_999
            }
        );
        assert_eq!(m.size, None);
        assert_eq!(m.acl.unwrap().access_text, b"u::rw-,g::r--,o::r--");

        // common_v2 is v3 without the size; then a symlink record sizes it.
        let mut p = Vec::new();
        put_vint(&mut p, 0o120777);
        put_vint(&mut p, 1);
        put_bvec(&mut p, b"");
        put_vint(&mut p, 2);
        put_bvec(&mut p, b"");
        put_vint(&mut p, 0);
        for _ in 0..3 {
            put_vint(&mut p, 1);
            put_vuint(&mut p, 2);
        }
        let mut b = Vec::new();
        put_vuint(&mut b, TAG_COMMON_V2);
        put_bvec(&mut b, &p);
        put_vuint(&mut b, TAG_SYMLINK_TARGET);
        put_bvec(&mut b, b"abc");
        b.push(0);
        let m = decode_all(&b).unwrap().pop().unwrap().unwrap();
        assert_eq!((m.mode, m.uid, m.gid), (0o120777, 1, 2));
        assert_eq!(m.symlink_target.as_deref(), Some(&b"abc"[..]));
        assert_eq!(m.size, Some(3));

        // A v1 ACL that already holds a comma is dropped, as bup does.
        let mut a = Vec::new();
        for s in [&b"u::rw-,g::r--"[..], b"x", b"", b""] {
            put_bvec(&mut a, s);
        }
        let mut b = Vec::new();
        put_vuint(&mut b, TAG_POSIX1E_ACL_V1);
        put_bvec(&mut b, &a);
        b.push(0);
        assert_eq!(decode_all(&b).unwrap()[0].as_ref().unwrap().acl, None);
    }

    #[test]
    fn unknown_and_path_records_are_skipped() {
        let m = full_metadata();
        let mut plain = Vec::new();
        encode_entry(Some(&m), &mut plain);
        let mut b = Vec::new();
        // A bup meta path record, an nfsv4 record, a far-future tag with a
        // multi-byte tag number, then the real records.
        b.extend_from_slice(&[0x01, 0x04, 0x03, b'a', b'/', b'b']);
        b.extend_from_slice(&[0x05, 0x02, 0xff, 0xff]);
        put_vuint(&mut b, 1000);
        put_bvec(&mut b, &[0; 300]);
        b.extend_from_slice(&plain);
        b.extend_from_slice(&plain);
        let all = decode_all(&b).unwrap();
        assert_eq!(all, vec![Some(m.clone()), Some(m)]);
    }

    #[test]
    fn truncation_is_an_error_at_every_cut() {
        let mut b = Vec::new();
        encode_entry(Some(&full_metadata()), &mut b);
        for cut in 1..b.len() {
            let r = decode_all(&b[..cut]);
            assert!(r.is_err(), "cut at {cut} decoded as {r:?}");
        }
        // Cutting exactly between entries is a clean end.
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(decode_all(&two[..b.len()]).unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_entry_and_stick() {
        let mut b = Vec::new();
        encode_entry(None, &mut b);
        encode_entry(Some(&full_metadata()), &mut b);
        b.truncate(b.len() - 1);
        let mut r = BupmReader::new(&b[..]);
        assert!(matches!(r.next_entry(), Ok(Some(None))));
        let e = r.next_entry().unwrap_err();
        assert_eq!(e.entry, 1);
        assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }), "{e}");
        assert!(r.next_entry().is_err());
    }

    #[test]
    fn out_of_range_fields_are_errors() {
        let common = |mode: i64, uid: i64| {
            let mut p = Vec::new();
            put_vint(&mut p, mode);
            put_vint(&mut p, uid);
            put_bvec(&mut p, b"");
            put_vint(&mut p, 0);
            put_bvec(&mut p, b"");
            put_vint(&mut p, 0);
            for _ in 0..3 {
                put_vint(&mut p, 0);
                put_vuint(&mut p, 0);
            }
            put_vint(&mut p, -1);
            let mut b = Vec::new();
            put_vuint(&mut b, TAG_COMMON_V3);
            put_bvec(&mut b, &p);
            b.push(0);
            b
        };
        assert!(decode_all(&common(0o100644, 0)).is_ok());
        assert!(decode_all(&common(0o100644, -5)).is_err());
        assert!(decode_all(&common(1 << 40, 0)).is_err());
        // A payload length beyond the limit is refused before reading it.
        let mut b = vec![0x0a];
        put_vuint(&mut b, MAX_RECORD_PAYLOAD + 1);
        let e = decode_all(&b).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::TooLarge { .. }), "{e}");
    }

    /// Random and mutated input must give Ok or Err, never a panic.
    #[test]
    fn fuzz_loop_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut valid = Vec::new();
        encode_entry(Some(&full_metadata()), &mut valid);
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..=(next() % 4) {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
                b
            };
            let _ = decode_all(&bytes);
        }
    }
}
