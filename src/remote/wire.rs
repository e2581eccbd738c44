//! The protocol between `rewind -r HOST:PATH` and `rewind server`, spoken
//! over the SSH channel's stdin/stdout: frames, and the messages in them.
//!
//! A frame is a big-endian u32 length (of what follows), a one-byte tag and
//! the message's fields. Both sides trust nothing they read: a length is
//! checked against [`MAX_FRAME`] before anything is read into memory, and
//! memory grows only as bytes actually arrive; every field is read with a
//! bounds check; a frame with bytes left over is an error. Decoding never
//! panics (the fuzz targets `remote_responses` and `remote_session` hold
//! it to that).
//!
//! The first exchange is the version: the client sends [`Request::Hello`]
//! with the range of versions it speaks, the server answers with the one it
//! picked or an error naming both. Then requests are answered in order;
//! only [`Request::PutObject`] has no answer (a save streams objects
//! without waiting), and [`Request::FinishPack`] answers for all of them.

use crate::object::{Kind, ObjectId};
use std::io::{self, Read, Write};

/// The protocol version this build speaks (the only one so far).
pub const VERSION: u32 = 1;
/// A frame larger than this is refused before it is read: a git tree of a
/// directory of a million entries is about 40 MiB.
pub const MAX_FRAME: usize = 64 << 20;
/// Object bytes travel in pieces of at most this size after their header.
pub const PIECE: usize = 1 << 20;
/// The most ids one [`Request::GetObjects`] may ask for.
pub const MAX_BATCH: usize = 4096;
/// What the client writes first, before any frame: a server that is not
/// rewind (or a shell printing a banner) shows up at once.
pub const MAGIC: &[u8; 8] = b"REWIND\0\x01";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Hello {
        min: u32,
        max: u32,
    },
    /// Opens (or with `create`, initializes) the repository at `path`,
    /// relative to the server's home directory unless absolute.
    Open {
        path: Vec<u8>,
        create: bool,
    },
    /// The indexes of the repository's sound packs.
    ListPacks,
    GetIdx {
        name: String,
    },
    ListRefs {
        prefix: String,
    },
    ReadRef {
        name: String,
    },
    UpdateRef {
        name: String,
        new: ObjectId,
        old: Option<ObjectId>,
    },
    DeleteRef {
        name: String,
        old: ObjectId,
    },
    SetHeadIfDangling {
        branch: String,
    },
    /// Objects in this order. With `expand`, each tree is preceded by its
    /// `.bupm` (as [`Response::Also`]): a directory's listing needs both,
    /// and the second would otherwise cost a round trip.
    GetObjects {
        ids: Vec<ObjectId>,
        expand: bool,
    },
    ReadHeader {
        id: ObjectId,
    },
    /// One compressed object for the pack being written; no answer.
    PutObject {
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: Vec<u8>,
    },
    /// Publishes the pack(s) of every `PutObject` since the last one.
    FinishPack,
    ReadShared {
        name: String,
    },
    WriteShared {
        name: String,
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No repository at the path (the message says how to make one).
    NoRepository = 1,
    /// The key may not reach this path (`--restrict-to`).
    OutsideRestriction = 2,
    /// An append-only key asked to delete or rewrite.
    AppendOnly = 3,
    /// The versions do not overlap.
    Incompatible = 4,
    /// A request that makes no sense (bad name, wrong order).
    BadRequest = 5,
    /// The repository could not do it (disk, damage, missing objects).
    Failed = 6,
    AlreadyExists = 7,
}

impl ErrorCode {
    fn from_u8(b: u8) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            NoRepository,
            OutsideRestriction,
            AppendOnly,
            Incompatible,
            BadRequest,
            Failed,
            AlreadyExists,
        ]
        .into_iter()
        .find(|c| *c as u8 == b)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Hello {
        version: u32,
    },
    Ok,
    Error {
        code: ErrorCode,
        message: String,
    },
    Packs {
        names: Vec<String>,
    },
    /// A file's bytes (an idx, a shared file) or an object's, in pieces:
    /// `last` ends it.
    Piece {
        last: bool,
        bytes: Vec<u8>,
    },
    Refs {
        refs: Vec<(String, ObjectId)>,
    },
    Ref {
        id: Option<ObjectId>,
    },
    /// The answer to `UpdateRef`/`DeleteRef` when the ref was not `old`.
    RefChanged {
        found: Option<ObjectId>,
    },
    /// An object of a `GetObjects` answer; its bytes follow as pieces.
    Object {
        id: ObjectId,
        kind: Kind,
        size: u64,
    },
    /// An object of a `GetObjects` answer sent as stored: its zlib stream
    /// follows as pieces, and inflates to `size` bytes of `kind`.
    Compressed {
        id: ObjectId,
        kind: Kind,
        size: u64,
    },
    /// An object not asked for, sent ahead of need (the `.bupm` of a tree
    /// of an expanded `GetObjects`); its bytes follow as pieces.
    Also {
        id: ObjectId,
        kind: Kind,
        size: u64,
    },
    /// An object of a `GetObjects` answer that cannot be given.
    ObjectMissing {
        id: ObjectId,
        corrupt: bool,
        message: String,
    },
    Header {
        kind: Kind,
        size: u64,
    },
    Bool {
        value: bool,
    },
    /// A shared file that does not exist.
    NoFile,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("malformed message: {0}")]
    Malformed(String),
}

fn bad<T>(what: impl Into<String>) -> Result<T, WireError> {
    Err(WireError::Malformed(what.into()))
}

// ------------------------------------------------------------- framing

/// Reads one frame: its tag and body. A clean end of stream before the
/// first byte is [`WireError::Closed`].
pub fn read_frame(r: &mut impl Read) -> Result<(u8, Vec<u8>), WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(WireError::Closed),
            Ok(0) => return bad("the connection closed inside a frame"),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return bad(format!("frame of {len} bytes (at most {MAX_FRAME})"));
    }
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            WireError::Malformed("the connection closed inside a frame".into())
        }
        _ => e.into(),
    })?;
    // Grows only as bytes arrive: a length alone allocates nothing. The
    // tag was read apart, so the body is not moved down by a byte after.
    let mut body = Vec::with_capacity((len - 1).min(PIECE + 64));
    r.take(len as u64 - 1).read_to_end(&mut body)?;
    if body.len() != len - 1 {
        return bad("the connection closed inside a frame");
    }
    Ok((tag[0], body))
}

/// Whether `buffered` begins with a whole frame, so that reading it takes
/// no read that could wait for the peer.
pub fn holds_frame(buffered: &[u8]) -> bool {
    match buffered.get(..4) {
        Some(len) => {
            let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
            buffered.len() - 4 >= len
        }
        None => false,
    }
}

fn write_frame(w: &mut impl Write, tag: u8, body: &[u8]) -> io::Result<()> {
    let len = body.len() + 1;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "message of {len} bytes is larger than the protocol allows ({MAX_FRAME})"
        )));
    }
    w.write_all(&(len as u32).to_be_bytes())?;
    w.write_all(&[tag])?;
    w.write_all(body)
}

// ------------------------------------------------------------- fields

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return bad("message ends inside a field");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => bad(format!("flag {b}")),
        }
    }
    fn id(&mut self) -> Result<ObjectId, WireError> {
        Ok(ObjectId::from_bytes(self.take(20)?).expect("20 bytes"))
    }
    fn opt_id(&mut self) -> Result<Option<ObjectId>, WireError> {
        if self.bool()? {
            Ok(Some(self.id()?))
        } else {
            Ok(None)
        }
    }
    fn kind(&mut self) -> Result<Kind, WireError> {
        match self.u8()? {
            1 => Ok(Kind::Commit),
            2 => Ok(Kind::Tree),
            3 => Ok(Kind::Blob),
            4 => Ok(Kind::Tag),
            k => bad(format!("object kind {k}")),
        }
    }
    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?).or_else(|_| bad("a name that is not UTF-8"))
    }
    /// A count of items each at least `min_item` bytes long: checked
    /// against what is left before anything is allocated for them.
    fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.0.len() {
            return bad(format!("{n} items in {} bytes", self.0.len()));
        }
        Ok(n)
    }
    fn end(self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            bad(format!("{} bytes after the last field", self.0.len()))
        }
    }
}

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    fn id(&mut self, id: &ObjectId) -> &mut Self {
        self.0.extend_from_slice(&id.0);
        self
    }
    fn opt_id(&mut self, id: &Option<ObjectId>) -> &mut Self {
        match id {
            Some(id) => self.bool(true).id(id),
            None => self.bool(false),
        }
    }
    fn kind(&mut self, k: Kind) -> &mut Self {
        self.u8(match k {
            Kind::Commit => 1,
            Kind::Tree => 2,
            Kind::Blob => 3,
            Kind::Tag => 4,
        })
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
}

// ------------------------------------------------------------- requests

impl Request {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut o = Out::default();
        let tag = match self {
            Request::Hello { min, max } => {
                o.u32(*min).u32(*max);
                1
            }
            Request::Open { path, create } => {
                o.bytes(path).bool(*create);
                2
            }
            Request::ListPacks => 3,
            Request::GetIdx { name } => {
                o.bytes(name.as_bytes());
                4
            }
            Request::ListRefs { prefix } => {
                o.bytes(prefix.as_bytes());
                5
            }
            Request::ReadRef { name } => {
                o.bytes(name.as_bytes());
                6
            }
            Request::UpdateRef { name, new, old } => {
                o.bytes(name.as_bytes()).id(new).opt_id(old);
                7
            }
            Request::DeleteRef { name, old } => {
                o.bytes(name.as_bytes()).id(old);
                8
            }
            Request::SetHeadIfDangling { branch } => {
                o.bytes(branch.as_bytes());
                9
            }
            Request::GetObjects { ids, expand } => {
                o.u32(ids.len() as u32);
                for id in ids {
                    o.id(id);
                }
                o.bool(*expand);
                10
            }
            Request::ReadHeader { id } => {
                o.id(id);
                11
            }
            Request::PutObject {
                id,
                kind,
                size,
                zdata,
            } => return write_put_object(w, id, *kind, *size, zdata),
            Request::FinishPack => 13,
            Request::ReadShared { name } => {
                o.bytes(name.as_bytes());
                14
            }
            Request::WriteShared { name, bytes } => {
                o.bytes(name.as_bytes()).bytes(bytes);
                15
            }
        };
        write_frame(w, tag, &o.0)
    }

    pub fn decode(tag: u8, body: &[u8]) -> Result<Request, WireError> {
        let mut f = Fields(body);
        let request = match tag {
            1 => Request::Hello {
                min: f.u32()?,
                max: f.u32()?,
            },
            2 => Request::Open {
                path: f.bytes()?,
                create: f.bool()?,
            },
            3 => Request::ListPacks,
            4 => Request::GetIdx { name: f.string()? },
            5 => Request::ListRefs {
                prefix: f.string()?,
            },
            6 => Request::ReadRef { name: f.string()? },
            7 => Request::UpdateRef {
                name: f.string()?,
                new: f.id()?,
                old: f.opt_id()?,
            },
            8 => Request::DeleteRef {
                name: f.string()?,
                old: f.id()?,
            },
            9 => Request::SetHeadIfDangling {
                branch: f.string()?,
            },
            10 => {
                let n = f.count(20)?;
                if n > MAX_BATCH {
                    return bad(format!("{n} objects asked at once (at most {MAX_BATCH})"));
                }
                let ids = (0..n).map(|_| f.id()).collect::<Result<_, _>>()?;
                Request::GetObjects {
                    ids,
                    expand: f.bool()?,
                }
            }
            11 => Request::ReadHeader { id: f.id()? },
            12 => {
                let id = f.id()?;
                let kind = f.kind()?;
                let size = f.u64()?;
                let zdata = f.0.to_vec();
                f.0 = &[];
                Request::PutObject {
                    id,
                    kind,
                    size,
                    zdata,
                }
            }
            13 => Request::FinishPack,
            14 => Request::ReadShared { name: f.string()? },
            15 => Request::WriteShared {
                name: f.string()?,
                bytes: f.bytes()?,
            },
            t => return bad(format!("unknown request {t}")),
        };
        f.end()?;
        Ok(request)
    }
}

/// Writes a `PutObject` frame without copying `zdata` into a message first
/// (the bulk of a save goes through here).
pub fn write_put_object(
    w: &mut impl Write,
    id: &ObjectId,
    kind: Kind,
    size: u64,
    zdata: &[u8],
) -> io::Result<()> {
    let mut head = Out::default();
    head.id(id).kind(kind).u64(size);
    let len = 1 + head.0.len() + zdata.len();
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "object {id} is {} compressed bytes, more than the protocol carries ({MAX_FRAME})",
            zdata.len()
        )));
    }
    w.write_all(&(len as u32).to_be_bytes())?;
    w.write_all(&[12])?;
    w.write_all(&head.0)?;
    w.write_all(zdata)
}

// ------------------------------------------------------------- responses

impl Response {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut o = Out::default();
        let tag = match self {
            Response::Hello { version } => {
                o.u32(*version);
                1
            }
            Response::Ok => 2,
            Response::Error { code, message } => {
                o.u8(*code as u8).bytes(message.as_bytes());
                3
            }
            Response::Packs { names } => {
                o.u32(names.len() as u32);
                for n in names {
                    o.bytes(n.as_bytes());
                }
                4
            }
            Response::Piece { last, bytes } => {
                o.bool(*last);
                o.0.extend_from_slice(bytes);
                5
            }
            Response::Refs { refs } => {
                o.u32(refs.len() as u32);
                for (name, id) in refs {
                    o.bytes(name.as_bytes()).id(id);
                }
                6
            }
            Response::Ref { id } => {
                o.opt_id(id);
                7
            }
            Response::RefChanged { found } => {
                o.opt_id(found);
                8
            }
            Response::Object { id, kind, size } => {
                o.id(id).kind(*kind).u64(*size);
                9
            }
            Response::ObjectMissing {
                id,
                corrupt,
                message,
            } => {
                o.id(id).bool(*corrupt).bytes(message.as_bytes());
                10
            }
            Response::Header { kind, size } => {
                o.kind(*kind).u64(*size);
                11
            }
            Response::Bool { value } => {
                o.bool(*value);
                12
            }
            Response::NoFile => 13,
            Response::Also { id, kind, size } => {
                o.id(id).kind(*kind).u64(*size);
                14
            }
            Response::Compressed { id, kind, size } => {
                o.id(id).kind(*kind).u64(*size);
                15
            }
        };
        write_frame(w, tag, &o.0)
    }

    pub fn decode(tag: u8, body: &[u8]) -> Result<Response, WireError> {
        let mut f = Fields(body);
        let response = match tag {
            1 => Response::Hello { version: f.u32()? },
            2 => Response::Ok,
            3 => {
                let code = f.u8()?;
                let code = ErrorCode::from_u8(code)
                    .map_or_else(|| bad(format!("unknown error code {code}")), Ok)?;
                Response::Error {
                    code,
                    message: String::from_utf8_lossy(&f.bytes()?).into_owned(),
                }
            }
            4 => {
                let n = f.count(4)?;
                let names = (0..n).map(|_| f.string()).collect::<Result<_, _>>()?;
                Response::Packs { names }
            }
            5 => {
                let last = f.bool()?;
                let bytes = f.0.to_vec();
                f.0 = &[];
                Response::Piece { last, bytes }
            }
            6 => {
                let n = f.count(24)?;
                let refs = (0..n)
                    .map(|_| Ok((f.string()?, f.id()?)))
                    .collect::<Result<_, WireError>>()?;
                Response::Refs { refs }
            }
            7 => Response::Ref { id: f.opt_id()? },
            8 => Response::RefChanged { found: f.opt_id()? },
            9 => Response::Object {
                id: f.id()?,
                kind: f.kind()?,
                size: f.u64()?,
            },
            10 => Response::ObjectMissing {
                id: f.id()?,
                corrupt: f.bool()?,
                message: String::from_utf8_lossy(&f.bytes()?).into_owned(),
            },
            11 => Response::Header {
                kind: f.kind()?,
                size: f.u64()?,
            },
            12 => Response::Bool { value: f.bool()? },
            13 => Response::NoFile,
            14 => Response::Also {
                id: f.id()?,
                kind: f.kind()?,
                size: f.u64()?,
            },
            15 => Response::Compressed {
                id: f.id()?,
                kind: f.kind()?,
                size: f.u64()?,
            },
            t => return bad(format!("unknown response {t}")),
        };
        f.end()?;
        Ok(response)
    }
}

/// Writes `bytes` as pieces (an empty file is one empty last piece).
pub fn write_pieces(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let mut chunks = bytes.chunks(PIECE).peekable();
    if chunks.peek().is_none() {
        return Response::Piece {
            last: true,
            bytes: Vec::new(),
        }
        .write(w);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        // Written in place: a Piece is a flag and the bytes.
        write_frame_parts(w, 5, &[u8::from(last)], chunk)?;
    }
    Ok(())
}

fn write_frame_parts(w: &mut impl Write, tag: u8, head: &[u8], body: &[u8]) -> io::Result<()> {
    let len = 1 + head.len() + body.len();
    w.write_all(&(len as u32).to_be_bytes())?;
    w.write_all(&[tag])?;
    w.write_all(head)?;
    w.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 20])
    }

    #[test]
    fn every_message_decodes_to_itself() {
        let requests = vec![
            Request::Hello { min: 1, max: 3 },
            Request::Open {
                path: b"/home/backup/web".to_vec(),
                create: true,
            },
            Request::ListPacks,
            Request::GetIdx {
                name: "pack-1.idx".into(),
            },
            Request::ListRefs {
                prefix: "refs/heads/".into(),
            },
            Request::ReadRef {
                name: "refs/heads/etc".into(),
            },
            Request::UpdateRef {
                name: "refs/heads/etc".into(),
                new: id(1),
                old: Some(id(2)),
            },
            Request::DeleteRef {
                name: "refs/heads/etc".into(),
                old: id(2),
            },
            Request::SetHeadIfDangling {
                branch: "etc".into(),
            },
            Request::GetObjects {
                ids: vec![id(3), id(4)],
                expand: true,
            },
            Request::ReadHeader { id: id(5) },
            Request::PutObject {
                id: id(6),
                kind: Kind::Tree,
                size: 9,
                zdata: vec![1, 2, 3],
            },
            Request::FinishPack,
            Request::ReadShared {
                name: "runs.toml".into(),
            },
            Request::WriteShared {
                name: "runs.toml".into(),
                bytes: b"x".to_vec(),
            },
        ];
        for r in requests {
            let mut buf = Vec::new();
            r.write(&mut buf).unwrap();
            let (tag, body) = read_frame(&mut &buf[..]).unwrap();
            assert_eq!(Request::decode(tag, &body).unwrap(), r);
        }
        let responses = vec![
            Response::Hello { version: 1 },
            Response::Ok,
            Response::Error {
                code: ErrorCode::AppendOnly,
                message: "no".into(),
            },
            Response::Packs {
                names: vec!["a".into()],
            },
            Response::Piece {
                last: false,
                bytes: vec![7; 3],
            },
            Response::Refs {
                refs: vec![("refs/heads/a".into(), id(1))],
            },
            Response::Ref { id: None },
            Response::RefChanged { found: Some(id(2)) },
            Response::Object {
                id: id(3),
                kind: Kind::Blob,
                size: 5,
            },
            Response::ObjectMissing {
                id: id(4),
                corrupt: true,
                message: "bad".into(),
            },
            Response::Header {
                kind: Kind::Commit,
                size: 1,
            },
            Response::Bool { value: true },
            Response::NoFile,
            Response::Also {
                id: id(5),
                kind: Kind::Blob,
                size: 2,
            },
            Response::Compressed {
                id: id(6),
                kind: Kind::Tree,
                size: 9,
            },
        ];
        for r in responses {
            let mut buf = Vec::new();
            r.write(&mut buf).unwrap();
            let (tag, body) = read_frame(&mut &buf[..]).unwrap();
            assert_eq!(Response::decode(tag, &body).unwrap(), r);
        }
    }

    #[test]
    fn a_huge_length_is_refused_before_anything_is_allocated() {
        let frame = [0xff, 0xff, 0xff, 0xff, 1];
        assert!(matches!(
            read_frame(&mut &frame[..]),
            Err(WireError::Malformed(_))
        ));
        // A count of ids larger than the bytes that follow.
        let mut body = Vec::new();
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Request::decode(10, &body).is_err());
        assert!(Response::decode(6, &body).is_err());
    }

    #[test]
    fn pieces_cover_empty_and_long_files() {
        for len in [0, 1, PIECE, PIECE + 1] {
            let data = vec![9u8; len];
            let mut buf = Vec::new();
            write_pieces(&mut buf, &data).unwrap();
            let mut r = &buf[..];
            let mut got = Vec::new();
            loop {
                let (tag, body) = read_frame(&mut r).unwrap();
                match Response::decode(tag, &body).unwrap() {
                    Response::Piece { last, bytes } => {
                        got.extend_from_slice(&bytes);
                        if last {
                            break;
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(got, data);
            assert!(r.is_empty());
        }
    }
}
