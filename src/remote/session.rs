//! One ssh session with `rewind server`: requests go out in order, the
//! server answers them in the same order, and objects announced ahead
//! ([`Objects::will_need`]) are asked for in batches and kept as they
//! arrive until their reader takes them (the book is [`Ahead`]).
//!
//! Several threads read objects at once (a restore's workers). Reading
//! answers off the pipe is one thread's job at a time, taken by whichever
//! thread needs an object that has not arrived; the others wait for theirs
//! on [`Session::arrivals`], so an object that has arrived is taken at once
//! even while another thread is still blocked reading. Before this, one
//! lock covered the pipe and the book, and a restore's workers spent a
//! quarter of their time waiting for it.
//!
//! Requests and a save's objects are queued, up to a budget, for a thread
//! that writes them to ssh ([`Outbox`]): a save goes on while ssh
//! connects and while the server works through what was queued.
//!
//! Locks, always taken in this order and never the book across I/O:
//! `reader` (reading answers), `writer` (sending requests), `child`, `book`.

use super::ahead::{Ahead, Arrival, Bytes, Received};
use super::checks::MAX_OBJECT;
use super::location::SshTarget;
use super::outbox::Outbox;
use super::ssh::{self, SshOptions, Stderr};
use super::wire::{self, ErrorCode, Request, Response, WireError};
use crate::locks::{lock, wait};
use crate::object::{hash_object, Kind, ObjectId};
use crate::repo::store::{Object, Verify};
use crate::repo::{Error, Objects};
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};

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

pub(super) struct Session {
    target: SshTarget,
    reader: Mutex<Reader>,
    writer: Mutex<Outbox>,
    child: Mutex<Child>,
    /// ssh's stdout, owned by `reader`: polled, never read, to learn
    /// whether the server has answered without taking the reading.
    answers_fd: RawFd,
    /// The greeting's answers were read: a save's objects no longer go
    /// out without taking the reading (see `send_unanswered`).
    connected: AtomicBool,
    stderr: Arc<Mutex<Stderr>>,
    book: Mutex<Book>,
    /// Notified when an object arrives, when the reading is let go and
    /// when the session breaks: what a thread waiting for an object
    /// waits on.
    arrivals: Condvar,
}

struct Reader {
    r: BufReader<ChildStdout>,
    /// The greeting went out and its answers have not been read yet.
    greeting_sent: bool,
}

struct Book {
    /// Objects announced, asked for ahead and arrived.
    ahead: Ahead,
    /// The stream is out of step (an error mid-answer) or gone: every
    /// later call fails, with this detail.
    broken: Option<String>,
    /// Objects threads are waiting for, and how many threads each: an
    /// arrival wakes the waiters only if it is one of these (most objects
    /// arrive ahead of their reader, and waking every waiter for each cost
    /// a tenth of a restore's CPU in futex calls).
    awaited: HashMap<ObjectId, u32>,
    /// Requests whose answer was waited for, and objects asked ahead: how
    /// well reads were announced (logged at the end, with -vv).
    waits: u64,
    announced: u64,
}

impl Drop for Book {
    fn drop(&mut self) {
        tracing::debug!(
            "remote session: {} answers waited for, {} objects asked ahead",
            self.waits,
            self.announced
        );
    }
}

/// The reading of answers, held by one thread; letting it go wakes the
/// threads waiting for objects, so that one of them takes it over.
struct Reading<'s> {
    session: &'s Session,
    guard: Option<MutexGuard<'s, Reader>>,
}

impl Deref for Reading<'_> {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Reading<'_> {
    fn deref_mut(&mut self) -> &mut Reader {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Under the book's lock, so that a thread between finding the
        // reading taken and waiting does not miss this.
        let book = lock(&self.session.book);
        if !book.awaited.is_empty() {
            self.session.arrivals.notify_all();
        }
    }
}

impl Session {
    /// Starts ssh and sends the greeting without waiting for the answer:
    /// the connection (a few hundred milliseconds of key exchange and
    /// login) is made while the caller goes on. Whatever went wrong is
    /// the first call's error.
    pub fn start(target: &SshTarget, opts: &SshOptions, create: bool) -> Result<Session, Error> {
        let (mut child, stderr) = ssh::spawn(target, opts)?;
        let mut w =
            Outbox::start(child.stdin.take().expect("piped")).map_err(|e| Error::Remote {
                location: target.to_string(),
                detail: format!("cannot start a thread to write to ssh: {e}"),
            })?;
        let stdout = child.stdout.take().expect("piped");
        let answers_fd = stdout.as_raw_fd();
        let r = BufReader::with_capacity(1 << 20, stdout);
        // A failed write means ssh is gone already: the first call reads
        // the end of its output and says why.
        let _ = send_greeting(&mut w, target, create);
        // Dropping the session closes ssh's stdin: the server sees the
        // end, deletes an unfinished pack and exits, and ssh with it.
        Ok(Session {
            target: target.clone(),
            reader: Mutex::new(Reader {
                r,
                greeting_sent: true,
            }),
            writer: Mutex::new(w),
            child: Mutex::new(child),
            answers_fd,
            connected: AtomicBool::new(false),
            stderr,
            book: Mutex::new(Book {
                ahead: Ahead::default(),
                broken: None,
                awaited: HashMap::new(),
                waits: 0,
                announced: 0,
            }),
            arrivals: Condvar::new(),
        })
    }

    /// Waits for the server's answer to the greeting.
    pub fn open(&self) -> Result<(), Error> {
        self.reading().map(drop)
    }

    pub fn location(&self) -> String {
        self.target.to_string()
    }

    pub fn fail(&self, detail: impl Into<String>) -> Error {
        Error::Remote {
            location: self.location(),
            detail: detail.into(),
        }
    }

    pub fn unexpected(&self, r: &Response) -> Error {
        match r {
            Response::Error { code, message } => self.fail(match code {
                ErrorCode::AppendOnly => format!("refused by the server: {message}"),
                _ => message.clone(),
            }),
            other => self.fail(format!("unexpected answer from the server: {other:?}")),
        }
    }

    /// Sends `request` and reads its answer.
    pub fn call(&self, request: &Request) -> Result<Response, Error> {
        let mut reading = self.reading()?;
        self.exchange(&mut reading, request)
    }

    /// Sends `request`, whose answer is a file in pieces (at most `limit`
    /// bytes after the first) or `NoFile` (`None`).
    pub fn call_for_file(&self, request: &Request, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let mut reading = self.reading()?;
        match self.exchange(&mut reading, request)? {
            Response::NoFile => Ok(None),
            Response::Piece { last, bytes } => {
                let mut all = bytes;
                if !last {
                    let rest = reading
                        .receive_pieces(limit)
                        .map_err(|why| self.break_off(why))?;
                    all.extend_from_slice(&rest);
                }
                Ok(Some(all))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends what `write` writes, which the server does not answer (a
    /// save's objects), after reading every answer owed: a server blocked
    /// on answers nobody reads would stop reading. While ssh is still
    /// connecting, it is queued (see [`Outbox`]), so that a save's workers
    /// go on meanwhile.
    pub fn send_unanswered(
        &self,
        write: impl FnOnce(&mut Outbox) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        if !self.server_answered() {
            // Nothing can be owed before the greeting's answers: queued
            // without taking the reading, which would wait for them.
            let mut w = lock(&self.writer);
            if let Some(why) = &lock(&self.book).broken {
                return Err(self.fail(why.clone()));
            }
            return write(&mut w).map_err(|e| self.break_off(e.to_string()));
        }
        let mut reading = self.reading()?;
        let result = self
            .quiet_writer(&mut reading)
            .and_then(|mut w| write(&mut w).map_err(|e| e.to_string()));
        result.map_err(|why| self.break_off(why))
    }

    /// The reading of answers, once the server has answered the greeting.
    fn reading(&self) -> Result<Reading<'_>, Error> {
        self.reading_from(lock(&self.reader))
    }

    fn reading_from<'s>(&'s self, guard: MutexGuard<'s, Reader>) -> Result<Reading<'s>, Error> {
        let mut reading = Reading {
            session: self,
            guard: Some(guard),
        };
        if std::mem::take(&mut reading.greeting_sent) {
            // What was queued while ssh connected may end inside a
            // request: it goes out before the wait, which might otherwise
            // never end (a failure here shows in the answer's reading).
            let _ = lock(&self.writer).flush();
            if let Err(e) = self.finish_handshake(&mut reading) {
                self.mark_broken(detail_of(&e));
                return Err(e);
            }
            self.connected.store(true, Ordering::Relaxed);
            tracing::debug!(
                "{} bytes were queued for the server before it answered",
                lock(&self.writer).queued_total()
            );
            ssh::show_server_logging(&self.stderr);
        }
        // The book is let go before `reading` may be dropped, which locks it.
        let broken = lock(&self.book).broken.clone();
        match broken {
            Some(why) => Err(self.fail(why)),
            None => Ok(reading),
        }
    }

    /// Reads the answers to the greeting.
    fn finish_handshake(&self, reader: &mut Reader) -> Result<(), Error> {
        match reader.receive() {
            Ok(Response::Hello { version }) if version == wire::VERSION => {}
            Ok(Response::Error { code, message }) => {
                return Err(self.fail(if code == ErrorCode::Incompatible {
                    format!("incompatible rewind on the server: {message}")
                } else {
                    message
                }))
            }
            Ok(other) => {
                return Err(self.fail(format!("the server answered {other:?} to the greeting")))
            }
            Err(_) => return Err(self.connection_failed()),
        }
        match reader.receive() {
            Ok(Response::Ok) => Ok(()),
            Ok(Response::Error { code, message }) => Err(self.fail(match code {
                ErrorCode::NoRepository => format!(
                    "{message}: create it with `rewind -r {} init`, or check the path",
                    self.location()
                ),
                ErrorCode::OutsideRestriction => format!("refused by the server: {message}"),
                _ => message,
            })),
            Ok(other) => Err(self.fail(format!(
                "the server answered {other:?} to opening the repository"
            ))),
            Err(_) => Err(self.connection_failed()),
        }
    }

    /// Why the connection ended: ssh's exit status and last words, in one line.
    fn connection_failed(&self) -> Error {
        self.fail(ssh::why_it_ended(&mut lock(&self.child), &self.stderr))
    }

    /// Writes `request` and reads its answer, with every earlier answer
    /// read first.
    fn exchange(&self, reading: &mut Reading<'_>, request: &Request) -> Result<Response, Error> {
        lock(&self.book).waits += 1;
        let result = self.quiet_writer(reading).and_then(|mut w| {
            request
                .write(&mut *w)
                .and_then(|_| w.flush())
                .map_err(|e| e.to_string())?;
            drop(w);
            reading.receive().map_err(|e| e.to_string())
        });
        result.map_err(|why| self.break_off(why))
    }

    /// The writer, once every answer owed is read: what is written now is
    /// answered next (no other thread asks while the writer is held).
    fn quiet_writer(&self, reading: &mut Reading<'_>) -> Result<MutexGuard<'_, Outbox>, String> {
        let w = lock(&self.writer);
        while lock(&self.book).ahead.on_way() > 0 {
            self.pump(reading)?;
        }
        Ok(w)
    }

    /// Whether the server has answered the greeting, or ssh has ended:
    /// read already, or something to read on ssh's stdout.
    fn server_answered(&self) -> bool {
        if self.connected.load(Ordering::Relaxed) {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: self.answers_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `fd` is one valid pollfd and the count passed is 1;
        // `answers_fd` stays open as long as `reader`, a field of `self`,
        // owns it. A zero timeout: only asks, never waits.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        // An error too: the reading then finds out what is wrong.
        ready != 0
    }

    /// Reads the answer to the oldest object asked for into the book.
    fn pump(&self, reader: &mut Reader) -> Result<(), String> {
        let Some(expected) = lock(&self.book).ahead.next_expected() else {
            return Ok(());
        };
        loop {
            let result = match reader.receive().map_err(|e| e.to_string())? {
                Response::Object { id, kind, size } if id == expected => {
                    reader.receive_object(id, kind, size)?
                }
                // Sent ahead of need: kept if there is room (else asked
                // for again when needed).
                Response::Also { id, kind, size } => {
                    let object = reader.receive_object(id, kind, size)?;
                    if object.is_ok() {
                        let mut book = lock(&self.book);
                        book.ahead.extra(id, object, MAX_READY_BYTES);
                        if book.awaited.contains_key(&id) {
                            self.arrivals.notify_all();
                        }
                    }
                    continue;
                }
                Response::Compressed { id, kind, size } if id == expected => {
                    reader.receive_compressed(id, kind, size)?
                }
                Response::ObjectMissing { id, message, .. } if id == expected => Err(message),
                other => {
                    return Err(format!(
                        "expected object {expected}, the server sent {other:?}"
                    ))
                }
            };
            let mut book = lock(&self.book);
            book.ahead.answered(result);
            if book.awaited.contains_key(&expected) {
                self.arrivals.notify_all();
            }
            return Ok(());
        }
    }

    /// Returns once something changed for `id`, which was on its way: an
    /// answer read by this thread (if no other was reading) or a wake-up.
    fn pump_or_wait(&self, id: &ObjectId) -> Result<(), Error> {
        let mut book = lock(&self.book);
        if book.broken.is_some() || book.ahead.has_arrived(id) || !book.ahead.is_on_way(id) {
            return Ok(());
        }
        // Not blocking on the reader with the book held keeps the order.
        let guard = match self.reader.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                *book.awaited.entry(*id).or_insert(0) += 1;
                let mut book = wait(&self.arrivals, book);
                if let Some(n) = book.awaited.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        book.awaited.remove(id);
                    }
                }
                return Ok(());
            }
        };
        drop(book);
        let mut reading = self.reading_from(guard)?;
        self.pump(&mut reading).map_err(|why| self.break_off(why))
    }

    /// Marks the session unusable and says why (ssh's words if it died).
    fn break_off(&self, why: String) -> Error {
        // A cut connection fails a write or read (EPIPE, end of stream) a
        // moment before ssh exits and says why: wait for it, or the user
        // reads "Broken pipe" instead of what happened to the connection.
        let ssh_ended = (0..50).any(|_| match lock(&self.child).try_wait() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                false
            }
        });
        let e = if ssh_ended {
            self.connection_failed()
        } else {
            self.fail(format!("talking to the server: {why}"))
        };
        self.mark_broken(detail_of(&e));
        e
    }

    fn mark_broken(&self, detail: String) {
        lock(&self.book).broken = Some(detail);
        self.arrivals.notify_all();
    }

    fn read_object(&self, id: &ObjectId) -> Result<Object, Error> {
        let received = loop {
            let on_way = {
                let mut book = lock(&self.book);
                if let Some(why) = &book.broken {
                    return Err(self.fail(why.clone()));
                }
                if let Some(arrival) = book.ahead.take(id) {
                    break arrival;
                }
                book.ahead.is_on_way(id)
            };
            if on_way {
                self.pump_or_wait(id)?;
            } else {
                self.ask_ahead();
                // Not announced, or not its turn yet: asked for now.
                self.ask_alone(id);
            }
        };
        self.ask_ahead();
        // Inflated and hashed with the session free for other readers.
        received
            .and_then(|r| verify(id, r))
            .map_err(|why| self.object_error(id, why))
    }

    /// Asks for `id` alone, unless it is on its way or arrived by now.
    fn ask_alone(&self, id: &ObjectId) {
        let w = lock(&self.writer);
        {
            let mut book = lock(&self.book);
            if book.broken.is_some() || book.ahead.is_on_way(id) || book.ahead.has_arrived(id) {
                return;
            }
            book.ahead.unannounce(id);
            // Asked in the order written: the writer is held until then.
            book.ahead.asked(*id);
            book.waits += 1;
        }
        self.send_get(w, vec![*id], false);
    }

    /// Asks for the next announced objects, in one request, while there is
    /// room in flight and what arrived ahead is within its budget.
    fn ask_ahead(&self) {
        let w = lock(&self.writer);
        let batch = {
            let mut book = lock(&self.book);
            if book.broken.is_some() || book.ahead.bytes() > MAX_READY_BYTES {
                return;
            }
            let room = MAX_IN_FLIGHT.saturating_sub(book.ahead.on_way());
            if room < MIN_BATCH.min(MAX_IN_FLIGHT) && book.ahead.on_way() > 0 {
                return;
            }
            let batch = book.ahead.next_batch(room);
            book.announced += batch.len() as u64;
            for id in &batch {
                book.ahead.asked(*id);
            }
            batch
        };
        if !batch.is_empty() {
            self.send_get(w, batch, true);
        }
    }

    /// Asks for `ids`, already entered in the book as asked (with the
    /// writer `w` held since, so that the order asked is the order sent).
    fn send_get(&self, mut w: MutexGuard<'_, Outbox>, ids: Vec<ObjectId>, expand: bool) {
        let sent = Request::GetObjects { ids, expand }
            .write(&mut *w)
            .and_then(|_| w.flush());
        if let Err(e) = sent {
            drop(w);
            self.break_off(e.to_string());
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

impl Objects for Session {
    fn read_with(&self, id: &ObjectId, _verify: Verify) -> Result<Object, Error> {
        // Always hashed: the server is not trusted to have checked.
        self.read_object(id)
    }

    fn read_header(&self, id: &ObjectId) -> Result<(Kind, u64), Error> {
        // An object on its way is waited for (it is read next anyway)
        // rather than asked about in a round trip of its own.
        loop {
            {
                let book = lock(&self.book);
                if let Some(why) = &book.broken {
                    return Err(self.fail(why.clone()));
                }
                match book.ahead.peek(id) {
                    // The server's claim, as a header from a server is;
                    // the bytes are checked against it when read.
                    Some(Ok(r)) => return Ok((r.kind, r.size)),
                    Some(Err(_)) => break,
                    None if !book.ahead.is_on_way(id) => break,
                    None => {}
                }
            }
            self.pump_or_wait(id)?;
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
        lock(&self.book).ahead.announce(ids, MAX_PENDING);
        self.ask_ahead();
    }
}

/// The magic, the versions this client speaks and the repository to open,
/// in one write: the server answers both in order.
fn send_greeting(w: &mut impl Write, target: &SshTarget, create: bool) -> std::io::Result<()> {
    w.write_all(wire::MAGIC)?;
    Request::Hello {
        min: wire::VERSION,
        max: wire::VERSION,
    }
    .write(w)?;
    let path = target.path.as_bytes().to_vec();
    Request::Open { path, create }.write(w)?;
    w.flush()
}

impl Reader {
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
}

/// What an error says without the location (which every message adds).
fn detail_of(e: &Error) -> String {
    match e {
        Error::Remote { detail, .. } => detail.clone(),
        other => other.to_string(),
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
        Bytes::Compressed(zdata) => crate::pack::inflate::inflate_exact(&zdata, size)
            .map_err(|why| format!("object {id} from the server: {why}"))?,
    };
    if hash_object(kind, &data) != *id {
        return Err(format!("object {id} from the server does not match its id"));
    }
    Ok(Object { kind, data })
}
