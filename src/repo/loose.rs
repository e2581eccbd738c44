//! Loose objects: `objects/ab/cdef…`, a zlib stream of "<kind> <size>\0<data>".
//!
//! We only read them (repositories touched by `git hash-object -w` or plain
//! git commands have some); rewind itself writes packs, as bup expects.

use super::store::Object;
use super::Error;
use crate::object::{hash_object, Kind, ObjectId};
use flate2::read::ZlibDecoder;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Memory reserved up front from a size read off disk.
const MAX_PREALLOC: u64 = 64 << 20;

pub(crate) fn path_of(objects_dir: &Path, id: &ObjectId) -> PathBuf {
    let hex = id.to_hex();
    objects_dir.join(&hex[..2]).join(&hex[2..])
}

fn open(objects_dir: &Path, id: &ObjectId) -> Result<Option<(PathBuf, File)>, Error> {
    let path = path_of(objects_dir, id);
    match File::open(&path) {
        Ok(f) => Ok(Some((path, f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("opening loose object", path)(e)),
    }
}

pub(crate) fn exists(objects_dir: &Path, id: &ObjectId) -> bool {
    path_of(objects_dir, id).is_file()
}

/// An open loose object: its inflating stream, and the errors that name it.
struct Loose {
    id: ObjectId,
    path: PathBuf,
    z: ZlibDecoder<io::BufReader<std::fs::File>>,
}

impl Loose {
    /// `None` if the object does not exist.
    fn open(objects_dir: &Path, id: &ObjectId) -> Result<Option<Loose>, Error> {
        Ok(open(objects_dir, id)?.map(|(path, file)| Loose {
            id: *id,
            path,
            z: ZlibDecoder::new(io::BufReader::new(file)),
        }))
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            id: self.id,
            pack: None,
            detail: format!("loose object {}: {detail}", self.path.display()),
        }
    }

    fn io_err(&self, e: io::Error) -> Error {
        Error::io("reading loose object", self.path.clone())(e)
    }

    /// Reads the "<kind> <size>\0" header.
    fn header(&mut self) -> Result<(Kind, u64), Error> {
        let mut header = Vec::with_capacity(32);
        let mut byte = [0u8; 1];
        loop {
            match self.z.read(&mut byte) {
                Ok(0) => return Err(self.corrupt("header is truncated".into())),
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidInput
                        || e.kind() == io::ErrorKind::InvalidData =>
                {
                    return Err(self.corrupt(format!("zlib data is damaged: {e}")))
                }
                Err(e) => return Err(self.io_err(e)),
            }
            if byte[0] == 0 {
                break;
            }
            header.push(byte[0]);
            if header.len() > 32 {
                return Err(self.corrupt("header is too long".into()));
            }
        }
        let text =
            std::str::from_utf8(&header).map_err(|_| self.corrupt("header is not text".into()))?;
        let (kind, size) = text
            .split_once(' ')
            .ok_or_else(|| self.corrupt(format!("bad header {text:?}")))?;
        let kind = Kind::from_name(kind.as_bytes())
            .ok_or_else(|| self.corrupt(format!("bad kind {kind:?}")))?;
        let size: u64 = size
            .parse()
            .map_err(|_| self.corrupt(format!("bad size {size:?}")))?;
        Ok((kind, size))
    }
}

/// Reads, inflates and verifies a loose object; `None` if it does not exist.
pub(crate) fn read(objects_dir: &Path, id: &ObjectId) -> Result<Option<Object>, Error> {
    let Some(mut loose) = Loose::open(objects_dir, id)? else {
        return Ok(None);
    };
    let (kind, size) = loose.header()?;
    let mut data = Vec::with_capacity(size.min(MAX_PREALLOC) as usize);
    // Read one byte past the declared size to notice a stream that is too long.
    match (&mut loose.z)
        .take(size.saturating_add(1))
        .read_to_end(&mut data)
    {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
            ) =>
        {
            return Err(loose.corrupt(format!("zlib data is damaged: {e}")))
        }
        Err(e) => return Err(loose.io_err(e)),
    }
    if data.len() as u64 != size {
        return Err(loose.corrupt(format!("holds {} bytes, header says {size}", data.len())));
    }
    if hash_object(kind, &data) != *id {
        return Err(loose.corrupt("content does not match its id".into()));
    }
    Ok(Some(Object { kind, data }))
}

/// Kind and size from the header only; `None` if the object does not exist.
pub(crate) fn read_header_of(
    objects_dir: &Path,
    id: &ObjectId,
) -> Result<Option<(Kind, u64)>, Error> {
    match Loose::open(objects_dir, id)? {
        Some(mut loose) => loose.header().map(Some),
        None => Ok(None),
    }
}
