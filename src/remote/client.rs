//! `rewind -r HOST:PATH`: a repository on a server, reached by running the
//! system's OpenSSH client (so `~/.ssh/config`, keys, known_hosts and the
//! agent apply) with `rewind server` on the far side.
//!
//! What makes it fast is what it does not ask: the server's pack indexes
//! are copied once into a cache directory on this machine and refreshed
//! only when the server's list of packs changed, so "is this object
//! stored?" is a local lookup and a save sends only new objects, streamed
//! without waiting for answers. Reads are announced ahead
//! ([`Objects::will_need`]) and travel in batches.
//!
//! The server is trusted no more than a disk: every object it sends is
//! hashed against its id, every index it sends is checked like a local
//! one, and names and sizes are bounded.

use super::ahead::{Ahead, Arrival, Bytes, Received};
use super::location::SshTarget;
pub use super::ssh::SshOptions;
use super::ssh::{self, Stderr};
use super::wire::{self, ErrorCode, Request, Response, WireError};
use crate::locks::lock;
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::idx::PackIndex;
use crate::pack::writer::WriteStats;
use crate::repo::known::{KnownObjects, DEFAULT_MAX_UNCOVERED};
use crate::repo::store::{Object, Verify};
use crate::repo::{Error, Objects, PackSink, Repo, SharedFile};
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex, MutexGuard};

/// Objects asked for ahead and not read yet, at most.
const MAX_IN_FLIGHT: usize = 1024;
/// Objects announced and not asked for yet, at most (20 bytes each and a
/// count): a restore announces whole directories and levels of listings,
/// and what does not fit in flight waits here for its turn instead of
/// costing a round trip when it is read.
const MAX_PENDING: usize = 1 << 16;
/// Fewer free places in flight than this are not worth a request.
const MIN_BATCH: usize = 128;
/// Bytes of objects received ahead and not read yet, at most.
const MAX_READY_BYTES: usize = 128 << 20;
/// The largest object accepted from a server.
const MAX_OBJECT: u64 = 1 << 32;

pub struct Remote {
    shared: Arc<Shared>,
}

struct Shared {
    target: SshTarget,
    conn: Mutex<Conn>,
    cache: PathBuf,
}

struct Conn {
    child: Child,
    w: BufWriter<ChildStdin>,
    r: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Stderr>>,
    /// The greeting went out and its answers have not been read yet.
    greeting_sent: bool,
    /// Objects asked for ahead and not read yet.
    ahead: Ahead,
    /// The stream is out of step (an error mid-answer): every later call
    /// fails, with this detail.
    broken: Option<String>,
    /// Requests whose answer was waited for, and objects asked ahead: how
    /// well reads were announced (logged at the end, with -vv).
    waits: u64,
    announced: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        tracing::debug!(
            "remote session: {} answers waited for, {} objects asked ahead",
            self.waits,
            self.announced
        );
    }
}

impl Remote {
    /// Connects to the repository at `target`; with `create`, initializes it.
    /// Returns once the server has answered.
    pub fn connect(target: &SshTarget, opts: &SshOptions, create: bool) -> Result<Remote, Error> {
        let remote = Remote::start(target, opts, create)?;
        drop(remote.shared.conn()?);
        Ok(remote)
    }

    /// Starts ssh and sends the greeting without waiting for the answer:
    /// the connection (a few hundred milliseconds of key exchange and
    /// login) is made while the caller goes on, for example a save listing
    /// its directories. Whatever went wrong is the first call's error.
    pub fn start(target: &SshTarget, opts: &SshOptions, create: bool) -> Result<Remote, Error> {
        let cache = cache_dir(target)?;
        let (mut child, stderr) = ssh::spawn(target, opts)?;
        let w = BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
        let r = BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped"));
        let mut conn = Conn {
            child,
            w,
            r,
            stderr,
            greeting_sent: true,
            ahead: Ahead::default(),
            broken: None,
            waits: 0,
            announced: 0,
        };
        // A failed write means ssh is gone already: the first call reads
        // the end of its output and says why.
        let _ = conn.send_greeting(target, create);
        // Dropping the connection closes ssh's stdin: the server sees the
        // end, deletes an unfinished pack and exits, and ssh with it.
        Ok(Remote {
            shared: Arc::new(Shared {
                target: target.clone(),
                cache,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Deletes `full_name` if it is `old` (for tests of what a key may do).
    pub fn delete_ref(&self, full_name: &str, old: ObjectId) -> Result<(), Error> {
        match self.shared.call(&Request::DeleteRef {
            name: full_name.into(),
            old,
        })? {
            Response::Ok => Ok(()),
            Response::RefChanged { found } => Err(Error::RefChanged {
                name: full_name.into(),
                expected: Some(old),
                found,
            }),
            other => Err(self.shared.unexpected(&other)),
        }
    }
}

/// What an error says without the location (which every message adds).
fn detail_of(e: &Error) -> String {
    match e {
        Error::Remote { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// `$REWIND_CACHE_DIR`, else `$XDG_CACHE_HOME/rewind`, else
/// `~/.cache/rewind`; then `remote/<host and path>`.
fn cache_dir(target: &SshTarget) -> Result<PathBuf, Error> {
    let base = std::env::var_os("REWIND_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("rewind")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rewind")))
        .ok_or_else(|| Error::Remote {
            location: target.to_string(),
            detail: "no cache directory for the server's indexes: set HOME or REWIND_CACHE_DIR"
                .into(),
        })?;
    let text = target.to_string();
    let readable: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = hash_object(Kind::Blob, text.as_bytes()).to_string();
    Ok(base
        .join("remote")
        .join(format!("{readable}-{}", &hash[..12])))
}

impl Conn {
    /// The magic, the versions this client speaks and the repository to
    /// open, in one write: the server answers both in order.
    fn send_greeting(&mut self, target: &SshTarget, create: bool) -> std::io::Result<()> {
        self.w.write_all(wire::MAGIC)?;
        Request::Hello {
            min: wire::VERSION,
            max: wire::VERSION,
        }
        .write(&mut self.w)?;
        let path = target.path.as_bytes().to_vec();
        Request::Open { path, create }.write(&mut self.w)?;
        self.w.flush()
    }

    /// Reads the answers to the greeting.
    fn finish_handshake(&mut self, target: &SshTarget) -> Result<(), Error> {
        let location = target.to_string();
        match self.receive() {
            Ok(Response::Hello { version }) if version == wire::VERSION => {}
            Ok(Response::Error { code, message }) => {
                return Err(Error::Remote {
                    location,
                    detail: if code == ErrorCode::Incompatible {
                        format!("incompatible rewind on the server: {message}")
                    } else {
                        message
                    },
                })
            }
            Ok(other) => {
                return Err(Error::Remote {
                    location,
                    detail: format!("the server answered {other:?} to the greeting"),
                })
            }
            Err(_) => return Err(self.connection_failed(&location)),
        }
        match self.receive() {
            Ok(Response::Ok) => Ok(()),
            Ok(Response::Error { code, message }) => Err(Error::Remote {
                location: location.clone(),
                detail: match code {
                    ErrorCode::NoRepository => format!(
                        "{message}: create it with `rewind -r {location} init`, or check the path"
                    ),
                    ErrorCode::OutsideRestriction => format!("refused by the server: {message}"),
                    _ => message,
                },
            }),
            Ok(other) => Err(Error::Remote {
                location,
                detail: format!("the server answered {other:?} to opening the repository"),
            }),
            Err(_) => Err(self.connection_failed(&location)),
        }
    }

    /// Why the connection ended: ssh's exit status and last words, in one line.
    fn connection_failed(&mut self, location: &str) -> Error {
        Error::Remote {
            location: location.to_string(),
            detail: ssh::why_it_ended(&mut self.child, &self.stderr),
        }
    }

    fn receive(&mut self) -> Result<Response, WireError> {
        let (tag, body) = wire::read_frame(&mut self.r)?;
        Response::decode(tag, &body)
    }

    /// Reads the pieces of a file or object up to `limit` bytes.
    fn receive_pieces(&mut self, limit: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            match self.receive().map_err(|e| e.to_string())? {
                Response::Piece { last, bytes } => {
                    if out.len() as u64 + bytes.len() as u64 > limit {
                        return Err(format!("the server sent more than {limit} bytes"));
                    }
                    out.extend_from_slice(&bytes);
                    if last {
                        return Ok(out);
                    }
                }
                other => return Err(format!("expected data, the server sent {other:?}")),
            }
        }
    }

    /// Reads the answer to the oldest object asked for.
    fn pump(&mut self) -> Result<(), String> {
        let expected = self
            .ahead
            .next_expected()
            .ok_or("no object was asked for")?;
        loop {
            let result = match self.receive().map_err(|e| e.to_string())? {
                Response::Object { id, kind, size } if id == expected => {
                    self.receive_object(id, kind, size)?
                }
                // Sent ahead of need: kept if there is room (else asked
                // for again when needed).
                Response::Also { id, kind, size } => {
                    let object = self.receive_object(id, kind, size)?;
                    if object.is_ok() {
                        self.ahead.extra(id, object, MAX_READY_BYTES);
                    }
                    continue;
                }
                Response::Compressed { id, kind, size } if id == expected => {
                    self.receive_compressed(id, kind, size)?
                }
                Response::ObjectMissing { id, message, .. } if id == expected => Err(message),
                other => {
                    return Err(format!(
                        "expected object {expected}, the server sent {other:?}"
                    ))
                }
            };
            self.ahead.answered(result);
            return Ok(());
        }
    }

    /// An object sent as stored: its zlib stream, inflated and checked
    /// by the reader that takes it ([`verify`]).
    fn receive_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
    ) -> Result<Arrival, String> {
        if size > MAX_OBJECT {
            return Err(format!("the server says {id} has {size} bytes"));
        }
        // A zlib stream is at most a little longer than what it holds
        // (stored blocks: 5 bytes per 64 KiB, plus header and checksum).
        let zdata = self.receive_pieces(size + size / 64 + 1024)?;
        Ok(Ok(Received {
            kind,
            size,
            bytes: Bytes::Compressed(zdata),
        }))
    }

    /// The bytes of an object whose header was just read (checked against
    /// its id by the reader that takes it). `Err` for a broken stream.
    fn receive_object(&mut self, id: ObjectId, kind: Kind, size: u64) -> Result<Arrival, String> {
        if size > MAX_OBJECT {
            return Err(format!("the server says {id} has {size} bytes"));
        }
        let data = self.receive_pieces(size)?;
        Ok(Ok(Received {
            kind,
            size,
            bytes: Bytes::Plain(data),
        }))
    }

    /// Reads every answer still owed: before a request whose answer must
    /// come next, and before streaming objects up (a server blocked on
    /// answers nobody reads would stop reading).
    fn drain(&mut self) -> Result<(), String> {
        while self.ahead.on_way() > 0 {
            self.pump()?;
        }
        Ok(())
    }
}

/// What the server sent as `id`, if it is: inflated to exactly the size
/// given and hashed. An object that fails leaves the stream in step.
fn verify(id: &ObjectId, received: Received) -> Result<Object, String> {
    let Received { kind, size, bytes } = received;
    let data = match bytes {
        Bytes::Plain(data) if data.len() as u64 == size => data,
        Bytes::Plain(data) => {
            return Err(format!(
                "the server sent {} bytes of {id}, not {size}",
                data.len()
            ))
        }
        Bytes::Compressed(zdata) => inflate_exactly(&zdata, size)
            .map_err(|why| format!("object {id} from the server: {why}"))?,
    };
    if hash_object(kind, &data) != *id {
        return Err(format!("object {id} from the server does not match its id"));
    }
    Ok(Object { kind, data })
}

/// Inflates one whole zlib stream that must hold exactly `size` bytes,
/// growing the output only as bytes come (a size is a claim until then).
fn inflate_exactly(zdata: &[u8], size: u64) -> Result<Vec<u8>, String> {
    if let Some(whole) = crate::pack::reader::inflate_exact(zdata, size) {
        return whole;
    }
    let mut z = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity(size.min(1 << 20) as usize);
    loop {
        if out.len() == out.capacity() {
            if out.len() as u64 >= size {
                // Room for one more byte shows a stream that is too long.
                out.reserve(1);
            } else {
                out.reserve((size - out.len() as u64).min(1 << 20) as usize);
            }
        }
        let before = (z.total_in(), z.total_out());
        let status = z
            .decompress_vec(
                &zdata[z.total_in() as usize..],
                &mut out,
                flate2::FlushDecompress::Finish,
            )
            .map_err(|e| format!("not a valid zlib stream: {e}"))?;
        if out.len() as u64 > size {
            return Err(format!("inflates to more than {size} bytes"));
        }
        match status {
            flate2::Status::StreamEnd => break,
            _ if (z.total_in(), z.total_out()) == before => {
                return Err("the zlib stream is cut short".into())
            }
            _ => {}
        }
    }
    if z.total_in() as usize != zdata.len() {
        return Err("bytes after the zlib stream".into());
    }
    if out.len() as u64 != size {
        return Err(format!("inflates to {} bytes, not {size}", out.len()));
    }
    Ok(out)
}

/// `pack-<40 hex digits>.idx`: the only names of the server's files the
/// client writes.
fn is_idx_name(name: &str) -> bool {
    name.strip_prefix("pack-")
        .and_then(|n| n.strip_suffix(".idx"))
        .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Shared {
    fn location(&self) -> String {
        self.target.to_string()
    }

    fn fail(&self, detail: impl Into<String>) -> Error {
        Error::Remote {
            location: self.location(),
            detail: detail.into(),
        }
    }

    fn unexpected(&self, r: &Response) -> Error {
        match r {
            Response::Error { code, message } => self.fail(match code {
                ErrorCode::AppendOnly => format!("refused by the server: {message}"),
                _ => message.clone(),
            }),
            other => self.fail(format!("unexpected answer from the server: {other:?}")),
        }
    }

    /// Sends `request` and reads its answer, with the connection to itself.
    fn call(&self, request: &Request) -> Result<Response, Error> {
        let mut conn = self.conn()?;
        self.call_on(&mut conn, request)
    }

    /// The connection, once the server has answered the greeting.
    fn conn(&self) -> Result<MutexGuard<'_, Conn>, Error> {
        let mut conn = lock(&self.conn);
        if std::mem::take(&mut conn.greeting_sent) {
            if let Err(e) = conn.finish_handshake(&self.target) {
                conn.broken = Some(detail_of(&e));
                return Err(e);
            }
            ssh::show_server_logging(&conn.stderr);
        }
        match &conn.broken {
            Some(why) => Err(self.fail(why.clone())),
            None => Ok(conn),
        }
    }

    fn call_on(&self, conn: &mut Conn, request: &Request) -> Result<Response, Error> {
        if let Some(why) = &conn.broken {
            return Err(self.fail(why.clone()));
        }
        conn.waits += 1;
        let result = conn
            .drain()
            .and_then(|_| {
                request
                    .write(&mut conn.w)
                    .and_then(|_| conn.w.flush())
                    .map_err(|e| e.to_string())
            })
            .and_then(|_| conn.receive().map_err(|e| e.to_string()));
        result.map_err(|why| self.broken(conn, why))
    }

    /// Marks the connection unusable and says why (ssh's words if it died).
    fn broken(&self, conn: &mut Conn, why: String) -> Error {
        // A cut connection fails a write or read (EPIPE, end of stream) a
        // moment before ssh exits and says why: wait for it, or the user
        // reads "Broken pipe" instead of what happened to the connection.
        let ssh_ended = (0..50).any(|_| match conn.child.try_wait() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                false
            }
        });
        let e = if ssh_ended {
            conn.connection_failed(&self.location())
        } else {
            self.fail(format!("talking to the server: {why}"))
        };
        conn.broken = Some(detail_of(&e));
        e
    }

    /// Copies the server's pack indexes into the cache, fetching only new
    /// ones and dropping those the server no longer has, and reads them.
    fn sync_indexes(&self) -> Result<Vec<Arc<PackIndex>>, Error> {
        let dir = self.cache.join("idx");
        let mut indexes = Vec::new();
        for (name, fetched) in self.sync_cache()? {
            let index = match fetched {
                Some(index) => index,
                None => match PackIndex::open(&dir.join(&name)) {
                    Ok(index) => index,
                    // A copy damaged since: fetched again.
                    Err(_) => match self.fetch_usable(&name)? {
                        Some(index) => index,
                        None => continue,
                    },
                },
            };
            indexes.push(Arc::new(index));
        }
        Ok(indexes)
    }

    /// The server's pack list (which holds off its gc to the session's
    /// end), with the cache brought in step; the copies already there are
    /// not read (see [`Repo::known_objects_cached`] for who reads them).
    fn sync_index_names(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .sync_cache()?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Brings the cache in step with the server's pack list: copies of
    /// packs gone are deleted, new ones fetched. Every usable index's name,
    /// with the index itself when it was just fetched (and so read).
    fn sync_cache(&self) -> Result<Vec<(String, Option<PackIndex>)>, Error> {
        let names = self.list_packs()?;
        let dir = self.cache.join("idx");
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        let wanted: std::collections::HashSet<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| is_idx_name(n))
            .collect();
        let mut present = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(Error::io("listing", &dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if wanted.contains(name.as_str()) {
                present.insert(name);
            } else {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut usable = Vec::with_capacity(wanted.len());
        for name in wanted {
            if present.contains(name) {
                usable.push((name.to_string(), None));
            } else if let Some(index) = self.fetch_usable(name)? {
                usable.push((name.to_string(), Some(index)));
            }
        }
        Ok(usable)
    }

    /// [`Shared::cache_idx`], warning when the server's index is not usable.
    fn fetch_usable(&self, name: &str) -> Result<Option<PackIndex>, Error> {
        let index = self.cache_idx(name)?;
        if index.is_none() {
            tracing::warn!("the server's {name} is not usable; its objects will be sent again");
        }
        Ok(index)
    }

    fn list_packs(&self) -> Result<Vec<String>, Error> {
        match self.call(&Request::ListPacks)? {
            Response::Packs { names } => Ok(names),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Fetches the server's pack index `name` (already checked to be a
    /// pack index's name) into the cache: `None` if it is not usable
    /// (checked as a local index is: checksums, order, sizes).
    fn cache_idx(&self, name: &str) -> Result<Option<PackIndex>, Error> {
        let dir = self.cache.join("idx");
        let path = dir.join(name);
        let bytes = self
            .call_for_file(&Request::GetIdx { name: name.into() }, 1 << 32)?
            .ok_or_else(|| self.fail(format!("the server has no {name}")))?;
        let Ok(index) = PackIndex::parse(&path, &bytes) else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        crate::repo::fsutil::write_atomic(&path, &bytes)?;
        Ok(Some(index))
    }

    /// Sends `request`, whose answer is a file in pieces (at most `limit`
    /// bytes after the first) or `NoFile` (`None`).
    fn call_for_file(&self, request: &Request, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let mut conn = self.conn()?;
        match self.call_on(&mut conn, request)? {
            Response::NoFile => Ok(None),
            Response::Piece { last, bytes } => {
                let mut all = bytes;
                if !last {
                    let rest = conn
                        .receive_pieces(limit)
                        .map_err(|why| self.broken(&mut conn, why))?;
                    all.extend_from_slice(&rest);
                }
                Ok(Some(all))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn read_object(&self, id: &ObjectId) -> Result<Object, Error> {
        let received = loop {
            // Locked for one answer at a time: another reader may take
            // what it waits for in between.
            let mut conn = self.conn()?;
            if let Some(result) = conn.ahead.take(id) {
                self.ask_ahead(&mut conn);
                break result;
            }
            if !conn.ahead.is_on_way(id) {
                self.ask_ahead(&mut conn);
            }
            if !conn.ahead.is_on_way(id) {
                // Not announced, or not its turn yet: asked for now.
                conn.ahead.unannounce(id);
                let sent = Request::GetObjects {
                    ids: vec![*id],
                    expand: false,
                }
                .write(&mut conn.w)
                .and_then(|_| conn.w.flush());
                if let Err(e) = sent {
                    return Err(self.broken(&mut conn, e.to_string()));
                }
                conn.ahead.asked(*id);
                conn.waits += 1;
            }
            if let Err(why) = conn.pump() {
                return Err(self.broken(&mut conn, why));
            }
        };
        // Inflated and hashed with the connection free for other readers.
        received
            .and_then(|r| verify(id, r))
            .map_err(|why| self.object_error(id, why))
    }

    /// Asks for the next announced objects, in one request, while there is
    /// room in flight and what arrived ahead is within its budget.
    fn ask_ahead(&self, conn: &mut Conn) {
        if conn.broken.is_some() || conn.ahead.bytes() > MAX_READY_BYTES {
            return;
        }
        let room = MAX_IN_FLIGHT.saturating_sub(conn.ahead.on_way());
        if room < MIN_BATCH.min(MAX_IN_FLIGHT) && conn.ahead.on_way() > 0 {
            return;
        }
        let batch = conn.ahead.next_batch(room);
        if batch.is_empty() {
            return;
        }
        let sent = Request::GetObjects {
            ids: batch.clone(),
            expand: true,
        }
        .write(&mut conn.w)
        .and_then(|_| conn.w.flush());
        match sent {
            Ok(()) => {
                conn.announced += batch.len() as u64;
                for id in batch {
                    conn.ahead.asked(id);
                }
            }
            Err(e) => {
                let _ = self.broken(conn, e.to_string());
            }
        }
    }

    fn object_error(&self, id: &ObjectId, why: String) -> Error {
        if why.contains("not found") {
            Error::NotFound(*id)
        } else {
            Error::Corrupt {
                id: *id,
                pack: None,
                detail: format!("on {}: {why}", self.location()),
            }
        }
    }
}

impl Objects for Shared {
    fn read_with(&self, id: &ObjectId, _verify: Verify) -> Result<Object, Error> {
        // Always hashed: the server is not trusted to have checked.
        self.read_object(id)
    }

    fn read_header(&self, id: &ObjectId) -> Result<(Kind, u64), Error> {
        {
            // An object on its way is waited for (it is read next anyway)
            // rather than asked about in a round trip of its own.
            let mut conn = self.conn()?;
            while conn.ahead.is_on_way(id) && !conn.ahead.has_arrived(id) {
                if let Err(why) = conn.pump() {
                    return Err(self.broken(&mut conn, why));
                }
            }
            if let Some(Ok(r)) = conn.ahead.peek(id) {
                // The server's claim, as a header from a server is; the
                // bytes are checked against it when read.
                return Ok((r.kind, r.size));
            }
        }
        match self.call(&Request::ReadHeader { id: *id })? {
            Response::Header { kind, size } => Ok((kind, size)),
            Response::Error { message, .. } => Err(self.object_error(id, message)),
            other => Err(self.unexpected(&other)),
        }
    }

    fn contains(&self, id: &ObjectId) -> bool {
        self.read_header(id).is_ok()
    }

    fn will_need(&self, ids: &[ObjectId]) {
        let Ok(mut conn) = self.conn() else {
            return;
        };
        conn.ahead.announce(ids, MAX_PENDING);
        self.ask_ahead(&mut conn);
    }
}

impl Repo for Remote {
    fn location(&self) -> String {
        self.shared.location()
    }

    fn reads_wait_on_peer(&self) -> bool {
        true
    }

    fn objects(&self) -> &dyn Objects {
        &*self.shared
    }

    fn read_ref(&self, full_name: &str) -> Result<Option<ObjectId>, Error> {
        match self.shared.call(&Request::ReadRef {
            name: full_name.into(),
        })? {
            Response::Ref { id } => Ok(id),
            other => Err(self.shared.unexpected(&other)),
        }
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
        match self.shared.call(&Request::ListRefs {
            prefix: prefix.into(),
        })? {
            Response::Refs { refs } => {
                // Names from the server are checked as names read from disk.
                for (name, _) in &refs {
                    crate::repo::check_ref_name(name)?;
                    if !name.starts_with(prefix) {
                        return Err(self
                            .shared
                            .fail(format!("the server listed {name:?} under {prefix:?}")));
                    }
                }
                Ok(refs)
            }
            other => Err(self.shared.unexpected(&other)),
        }
    }

    fn update_ref(
        &self,
        full_name: &str,
        new: ObjectId,
        expected_old: Option<ObjectId>,
    ) -> Result<(), Error> {
        match self.shared.call(&Request::UpdateRef {
            name: full_name.into(),
            new,
            old: expected_old,
        })? {
            Response::Ok => Ok(()),
            Response::RefChanged { found } => Err(Error::RefChanged {
                name: full_name.into(),
                expected: expected_old,
                found,
            }),
            other => Err(self.shared.unexpected(&other)),
        }
    }

    fn set_head_if_dangling(&self, branch: &str) -> Result<bool, Error> {
        match self.shared.call(&Request::SetHeadIfDangling {
            branch: branch.into(),
        })? {
            Response::Bool { value } => Ok(value),
            other => Err(self.shared.unexpected(&other)),
        }
    }

    fn known_objects(&self) -> KnownObjects {
        let indexes = match self.shared.sync_indexes() {
            Ok(i) => i,
            Err(e) => {
                // Every object is then sent (the server keeps one copy of
                // each in a pack); the save itself will meet the error.
                tracing::warn!("{e}; every object will be sent");
                Vec::new()
            }
        };
        KnownObjects::from_indexes(indexes, &self.state_dir(), None, DEFAULT_MAX_UNCOVERED)
    }

    fn known_objects_cached(&self) -> Option<(KnownObjects, Vec<String>)> {
        // Made by the first listing of the server's packs (`init`, or the
        // first save): without it nothing is known, not even "no packs".
        let dir = self.shared.cache.join("idx");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let name = entry.file_name().to_str()?.to_string();
            if is_idx_name(&name) {
                files.push((name, entry.path()));
            }
        }
        // An empty directory is a repository with no packs yet (made by
        // init, or emptied by a gc): nothing is taken for stored, so
        // everything is sent, which is right for it and safe whatever. A
        // copy that does not read: the server's list decides (None).
        let known =
            KnownObjects::from_index_files(&files, &self.state_dir(), DEFAULT_MAX_UNCOVERED)?;
        tracing::debug!(
            "starting with the cached indexes of {} packs of {} ({} outside the object table)",
            files.len(),
            self.location(),
            known.report().uncovered_packs,
        );
        Some((known, files.into_iter().map(|(name, _)| name).collect()))
    }

    fn current_indexes(&self) -> Result<Vec<String>, Error> {
        // ListPacks: the server holds gc off from now to the session's end.
        self.shared.sync_index_names()
    }

    fn pack_sink(&self) -> Result<Box<dyn PackSink>, Error> {
        Ok(Box::new(RemoteSink {
            shared: self.shared.clone(),
            stats: WriteStats::default(),
            sent: std::collections::HashSet::new(),
        }))
    }

    fn state_dir(&self) -> PathBuf {
        self.shared.cache.join("rewind")
    }

    fn read_shared(&self, name: SharedFile) -> Result<Option<Vec<u8>>, Error> {
        self.shared.call_for_file(
            &Request::ReadShared {
                name: name.file_name().into(),
            },
            SharedFile::MAX_BYTES as u64,
        )
    }

    fn write_shared(&self, name: SharedFile, bytes: &[u8]) -> Result<(), Error> {
        match self.shared.call(&Request::WriteShared {
            name: name.file_name().into(),
            bytes: bytes.to_vec(),
        })? {
            Response::Ok => Ok(()),
            other => Err(self.shared.unexpected(&other)),
        }
    }
}

/// A save's new objects, streamed to the server as they come; the server
/// checks and packs them and publishes on [`PackSink::finish`].
struct RemoteSink {
    shared: Arc<Shared>,
    stats: WriteStats,
    /// Ids sent in this stream (a pack holds each once).
    sent: std::collections::HashSet<ObjectId>,
}

impl PackSink for RemoteSink {
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
        stored: bool,
    ) -> Result<(), Error> {
        if !self.sent.insert(id) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let shared = &self.shared;
        let mut conn = shared.conn()?;
        let result = conn.drain().and_then(|_| {
            wire::write_put_object(&mut conn.w, &id, kind, size, zdata).map_err(|e| e.to_string())
        });
        if let Err(why) = result {
            return Err(shared.broken(&mut conn, why));
        }
        self.stats.objects += 1;
        self.stats.stored += u64::from(stored);
        self.stats.raw_bytes += size;
        self.stats.packed_bytes += zdata.len() as u64;
        Ok(())
    }

    fn stats(&self) -> WriteStats {
        self.stats
    }

    fn finish(self: Box<Self>) -> Result<(), Error> {
        let names = match self.shared.call(&Request::FinishPack)? {
            Response::Packs { names } => names,
            other => return Err(self.shared.unexpected(&other)),
        };
        // The new indexes go into the cache now, so that the next save
        // knows these objects without asking.
        for name in names {
            // A name from the server becomes a file name here: only the
            // shape of a pack index's name is accepted.
            if !is_idx_name(&name) {
                return Err(self
                    .shared
                    .fail(format!("the server named a new pack {name:?}")));
            }
            if let Err(e) = self.shared.cache_idx(&name) {
                tracing::warn!("{e}; the next save will fetch {name}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_object_must_inflate_to_exactly_its_size() {
        use std::io::Write as _;
        for len in [0usize, 5, 300 << 10] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&data).unwrap();
            let zdata = z.finish().unwrap();
            assert_eq!(inflate_exactly(&zdata, len as u64).unwrap(), data, "{len}");
            // A claim one byte short or long is an error, not a truncation.
            assert!(inflate_exactly(&zdata, len as u64 + 1).is_err(), "{len}+1");
            if len > 0 {
                assert!(inflate_exactly(&zdata, len as u64 - 1).is_err(), "{len}-1");
            }
            let mut trailing = zdata.clone();
            trailing.push(0);
            assert!(
                inflate_exactly(&trailing, len as u64).is_err(),
                "{len} trailing"
            );
            assert!(
                inflate_exactly(&zdata[..zdata.len() / 2], len as u64).is_err(),
                "{len} cut"
            );
        }
    }
}
