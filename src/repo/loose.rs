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

/// Reads the "<kind> <size>\0" header from an inflating reader.
fn read_header(
    z: &mut impl Read,
    corrupt: &dyn Fn(String) -> Error,
    io_err: &dyn Fn(io::Error) -> Error,
) -> Result<(Kind, u64), Error> {
    let mut header = Vec::with_capacity(32);
    let mut byte = [0u8; 1];
    loop {
        match z.read(&mut byte) {
            Ok(0) => return Err(corrupt("header is truncated".into())),
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput
                    || e.kind() == io::ErrorKind::InvalidData =>
            {
                return Err(corrupt(format!("zlib data is damaged: {e}")))
            }
            Err(e) => return Err(io_err(e)),
        }
        if byte[0] == 0 {
            break;
        }
        header.push(byte[0]);
        if header.len() > 32 {
            return Err(corrupt("header is too long".into()));
        }
    }
    let text = std::str::from_utf8(&header).map_err(|_| corrupt("header is not text".into()))?;
    let (kind, size) = text
        .split_once(' ')
        .ok_or_else(|| corrupt(format!("bad header {text:?}")))?;
    let kind =
        Kind::from_name(kind.as_bytes()).ok_or_else(|| corrupt(format!("bad kind {kind:?}")))?;
    let size: u64 = size
        .parse()
        .map_err(|_| corrupt(format!("bad size {size:?}")))?;
    Ok((kind, size))
}

/// Reads, inflates and verifies a loose object; `None` if it does not exist.
pub(crate) fn read(objects_dir: &Path, id: &ObjectId) -> Result<Option<Object>, Error> {
    let Some((path, file)) = open(objects_dir, id)? else {
        return Ok(None);
    };
    let corrupt = |detail: String| Error::Corrupt {
        id: *id,
        pack: None,
        detail: format!("loose object {}: {detail}", path.display()),
    };
    let io_err = |e: io::Error| Error::io("reading loose object", path.clone())(e);
    let mut z = ZlibDecoder::new(io::BufReader::new(file));
    let (kind, size) = read_header(&mut z, &corrupt, &io_err)?;
    let mut data = Vec::with_capacity(size.min(MAX_PREALLOC) as usize);
    // Read one byte past the declared size to notice a stream that is too long.
    match (&mut z).take(size.saturating_add(1)).read_to_end(&mut data) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
            ) =>
        {
            return Err(corrupt(format!("zlib data is damaged: {e}")))
        }
        Err(e) => return Err(io_err(e)),
    }
    if data.len() as u64 != size {
        return Err(corrupt(format!(
            "holds {} bytes, header says {size}",
            data.len()
        )));
    }
    if hash_object(kind, &data) != *id {
        return Err(corrupt("content does not match its id".into()));
    }
    Ok(Some(Object { kind, data }))
}

/// Kind and size from the header only; `None` if the object does not exist.
pub(crate) fn read_header_of(
    objects_dir: &Path,
    id: &ObjectId,
) -> Result<Option<(Kind, u64)>, Error> {
    let Some((path, file)) = open(objects_dir, id)? else {
        return Ok(None);
    };
    let corrupt = |detail: String| Error::Corrupt {
        id: *id,
        pack: None,
        detail: format!("loose object {}: {detail}", path.display()),
    };
    let io_err = |e: io::Error| Error::io("reading loose object", path.clone())(e);
    let mut z = ZlibDecoder::new(io::BufReader::new(file));
    read_header(&mut z, &corrupt, &io_err).map(Some)
}
