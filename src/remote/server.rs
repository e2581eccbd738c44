//! `rewind server`: the far end of `rewind -r HOST:PATH`, started by ssh
//! (often as the forced command of an `authorized_keys` line) and speaking
//! [`super::wire`] on stdin/stdout.
//!
//! It trusts nothing it receives. Every object is inflated and hashed
//! before it goes into a pack (on worker threads: [`super::receiving`]);
//! the pack is published (fsynced, renamed) on
//! `FinishPack` (or earlier when it reaches the pack size limit: a complete
//! pack that nothing references yet), so a cut connection leaves at most a
//! temporary file, which is deleted, and unreferenced complete packs. A
//! ref moves only after the new commit and everything it
//! references are known to exist (checked against the tree of the old tip,
//! which was checked when it was published), with the same compare-and-swap
//! as a local save. `--restrict-to` confines the key to repositories at or
//! under some paths; `--append-only` refuses to delete a ref or to move it
//! anywhere but forward.

use super::checks::check_update;
use super::receiving::Receiving;
use super::wire::{self, ErrorCode, Request, Response, WireError};
use crate::object::{tree, Kind, ObjectId};
use crate::repo::store::Verify;
use crate::repo::{Error, Repository};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

pub struct ServerOptions {
    /// Repositories must be at or under one of these (none: anywhere).
    pub restrict_to: Vec<PathBuf>,
    pub append_only: bool,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the client sent something other than the rewind protocol (is this `rewind server` started by `rewind -r`?)")]
    NotAClient,
    #[error("reading from the client: {0}")]
    Wire(#[from] WireError),
    #[error("writing to the client: {0}")]
    Io(#[from] std::io::Error),
}

/// An answer that is an error: a code and one line for the user.
pub(super) struct Refusal(pub(super) ErrorCode, pub(super) String);

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal(ErrorCode::Failed, e.to_string())
    }
}

pub fn serve(
    opts: &ServerOptions,
    input: impl Read,
    output: impl Write,
) -> Result<(), ServerError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut out = BufWriter::with_capacity(1 << 20, output);
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| ServerError::NotAClient)?;
    if &magic != wire::MAGIC {
        return Err(ServerError::NotAClient);
    }
    let restrict = opts
        .restrict_to
        .iter()
        .map(|p| settle(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
    let mut session = Session {
        restrict,
        append_only: opts.append_only,
        repo: None,
        receiving: None,
        put_failure: None,
        gc_lock: None,
        packs_opened: false,
    };
    loop {
        let (tag, body) = match wire::read_frame(&mut input) {
            Ok(frame) => frame,
            // The client is done (or gone): an unfinished pack is a
            // temporary file, deleted when the writer drops.
            Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let request = Request::decode(tag, &body)?;
        session.handle(request, &mut out)?;
        // Answers go out before any read that may wait: a batch of
        // pipelined requests gets its answers in few writes, and a client
        // waiting for an answer before it sends the rest of a request is
        // never waiting on a server waiting for that rest.
        if input.buffer().is_empty() {
            // Nothing more has come: a good time for the pool and the
            // pack indexes.
            session.hand_on_objects();
            out.flush()?;
            session.open_packs_while_idle();
        } else if !wire::holds_frame(input.buffer()) {
            out.flush()?;
        }
    }
}

struct Session {
    restrict: Vec<PathBuf>,
    append_only: bool,
    repo: Option<Repository>,
    /// The objects of the pack being received, checked on other threads.
    receiving: Option<Receiving>,
    /// The first object of this pack that failed its checks: the pack is
    /// refused at `FinishPack`.
    put_failure: Option<String>,
    /// The writers' lock, shared, from the first request of a session that
    /// may write (the pack list a client deduplicates against, an object,
    /// a ref change) to the session's end: the client reuses objects of
    /// the packs it was told of until its ref moves, so a gc must wait
    /// that long (see `repo::gc_lock`). Read-only sessions (a restore, a
    /// mount) never take it.
    gc_lock: Option<crate::repo::gc_lock::WriteLock>,
    /// Whether the repository's pack indexes were read in a pause.
    packs_opened: bool,
}

impl Session {
    /// Reads the pack indexes of a just opened repository while the client
    /// has nothing waiting (cold, tens of milliseconds): a save walks its
    /// files for a while after the greeting, and its first question, the
    /// pack list, then finds them read. A failure is left to the request
    /// that needs the packs to report.
    fn open_packs_while_idle(&mut self) {
        if self.packs_opened {
            return;
        }
        if let Some(repo) = &self.repo {
            self.packs_opened = true;
            if let Err(e) = repo.objects().refresh() {
                tracing::debug!("reading the pack indexes ahead: {e}");
            }
        }
    }

    fn handle(&mut self, request: Request, out: &mut impl Write) -> std::io::Result<()> {
        let may_write = matches!(
            request,
            Request::ListPacks
                | Request::PutObject { .. }
                | Request::FinishPack
                | Request::UpdateRef { .. }
                | Request::DeleteRef { .. }
        );
        if may_write && self.gc_lock.is_none() {
            if let Some(repo) = &self.repo {
                let dir = repo.path().join("rewind");
                let waiting = |holder: &str| {
                    tracing::info!("waiting for a gc of {} ({holder})", repo.path().display())
                };
                match crate::repo::gc_lock::lock_for_write(&dir, &waiting) {
                    Ok(lock) => self.gc_lock = Some(lock),
                    Err(e) => {
                        if matches!(request, Request::PutObject { .. }) {
                            self.put_failure.get_or_insert(e.to_string());
                            self.receiving = None;
                            return Ok(());
                        }
                        return Response::Error {
                            code: ErrorCode::Failed,
                            message: e.to_string(),
                        }
                        .write(out);
                    }
                }
            }
        }
        if let Request::PutObject {
            id,
            kind,
            size,
            zdata,
        } = request
        {
            // No answer: a failure is remembered for FinishPack.
            if self.put_failure.is_none() {
                if let Err(why) = self.put(id, kind, size, zdata) {
                    self.refuse_pack(why);
                }
            }
            return Ok(());
        }
        if let Request::GetObjects { ids, expand } = request {
            return self.get_objects(&ids, expand, out);
        }
        if let Request::GetIdx { name } = &request {
            match self.idx_bytes(name) {
                Ok(bytes) => return wire::write_pieces(out, &bytes),
                Err(Refusal(code, message)) => return Response::Error { code, message }.write(out),
            }
        }
        if let Request::ReadShared { name } = &request {
            let answer = self
                .shared_path(name)
                .and_then(|path| match std::fs::read(&path) {
                    Ok(bytes) if bytes.len() <= crate::repo::SharedFile::MAX_BYTES => {
                        Ok(Some(bytes))
                    }
                    Ok(_) => Err(Refusal(
                        ErrorCode::Failed,
                        format!("{} is too large", path.display()),
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Refusal(
                        ErrorCode::Failed,
                        format!("reading {}: {e}", path.display()),
                    )),
                });
            return match answer {
                Ok(Some(bytes)) => wire::write_pieces(out, &bytes),
                Ok(None) => Response::NoFile.write(out),
                Err(Refusal(code, message)) => Response::Error { code, message }.write(out),
            };
        }
        let response = match self.answer(request) {
            Ok(r) => r,
            Err(Refusal(code, message)) => Response::Error { code, message },
        };
        response.write(out)
    }

    fn repo(&self) -> Result<&Repository, Refusal> {
        self.repo
            .as_ref()
            .ok_or_else(|| Refusal(ErrorCode::BadRequest, "no repository is open".into()))
    }

    fn answer(&mut self, request: Request) -> Result<Response, Refusal> {
        match request {
            Request::Hello { min, max } => {
                if min <= wire::VERSION && wire::VERSION <= max {
                    Ok(Response::Hello {
                        version: wire::VERSION,
                    })
                } else {
                    Err(Refusal(
                        ErrorCode::Incompatible,
                        format!(
                            "the server speaks protocol version {} and the client {min} to {max}; install the same rewind release on both",
                            wire::VERSION
                        ),
                    ))
                }
            }
            Request::Open { path, create } => self.open(&path, create),
            Request::ListPacks => {
                let repo = self.repo()?;
                repo.objects().refresh()?;
                let names = repo
                    .objects()
                    .pack_files()
                    .iter()
                    .filter(|p| p.is_sound())
                    .filter_map(|p| {
                        let name = p.index().path().file_name()?.to_str()?.to_string();
                        Some(name)
                    })
                    .collect();
                Ok(Response::Packs { names })
            }
            Request::ListRefs { prefix } => Ok(Response::Refs {
                refs: self.repo()?.list_refs(&prefix)?,
            }),
            Request::ReadRef { name } => Ok(Response::Ref {
                id: self.repo()?.read_ref(&name)?,
            }),
            Request::UpdateRef { name, new, old } => self.update_ref(&name, new, old),
            Request::DeleteRef { name, old } => {
                if self.append_only {
                    return Err(Refusal(
                        ErrorCode::AppendOnly,
                        format!("this key is append-only: it may not delete {name}"),
                    ));
                }
                match self.repo()?.delete_ref(&name, old) {
                    Ok(()) => Ok(Response::Ok),
                    Err(Error::RefChanged { found, .. }) => Ok(Response::RefChanged { found }),
                    Err(e) => Err(e.into()),
                }
            }
            Request::SetHeadIfDangling { branch } => Ok(Response::Bool {
                value: self.repo()?.set_head_if_dangling(&branch)?,
            }),
            Request::ReadHeader { id } => {
                let (kind, size) = self.repo()?.objects().read_header(&id)?;
                Ok(Response::Header { kind, size })
            }
            Request::FinishPack => self.finish_pack(),
            Request::WriteShared { name, bytes } => {
                let path = self.shared_path(&name)?;
                if bytes.len() > crate::repo::SharedFile::MAX_BYTES {
                    return Err(Refusal(
                        ErrorCode::BadRequest,
                        format!("{name} is too large"),
                    ));
                }
                // The server reads it too (`rewind status` on the backup
                // server): only what parses as run records is kept.
                if crate::run::record::parse_bytes(&bytes).is_err() {
                    return Err(Refusal(
                        ErrorCode::BadRequest,
                        format!("{name} sent by the client is not valid run records"),
                    ));
                }
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir).map_err(Error::io("creating directory", dir))?;
                crate::repo::fsutil::write_atomic(&path, &bytes)?;
                Ok(Response::Ok)
            }
            Request::GetObjects { .. }
            | Request::PutObject { .. }
            | Request::GetIdx { .. }
            | Request::ReadShared { .. } => unreachable!("handled before"),
        }
    }

    fn open(&mut self, path: &[u8], create: bool) -> Result<Response, Refusal> {
        use std::os::unix::ffi::OsStrExt;
        if self.repo.is_some() {
            return Err(Refusal(
                ErrorCode::BadRequest,
                "a repository is already open".into(),
            ));
        }
        let asked = Path::new(std::ffi::OsStr::from_bytes(path));
        let path = if asked.is_absolute() {
            asked.to_path_buf()
        } else {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(asked)
        };
        let settled = settle(&path).map_err(|e| Refusal(ErrorCode::BadRequest, e))?;
        if !self.restrict.is_empty() && !self.restrict.iter().any(|r| settled.starts_with(r)) {
            let allowed: Vec<String> = self
                .restrict
                .iter()
                .map(|r| r.display().to_string())
                .collect();
            return Err(Refusal(
                ErrorCode::OutsideRestriction,
                format!(
                    "this key may only reach {}, not {}",
                    allowed.join(", "),
                    path.display()
                ),
            ));
        }
        let repo = if create {
            match Repository::init(&settled) {
                Ok(r) => r,
                Err(Error::AlreadyExists { .. }) => {
                    return Err(Refusal(
                        ErrorCode::AlreadyExists,
                        format!("{} already exists on the server", path.display()),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            match Repository::open(&settled) {
                Ok(r) => r,
                Err(Error::NotARepository { .. }) => {
                    return Err(Refusal(
                        ErrorCode::NoRepository,
                        format!("no repository at {} on the server", path.display()),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.repo = Some(repo);
        Ok(Response::Ok)
    }

    fn shared_path(&self, name: &str) -> Result<PathBuf, Refusal> {
        let repo = self.repo()?;
        if name != crate::repo::SharedFile::Runs.file_name() {
            return Err(Refusal(
                ErrorCode::BadRequest,
                format!("no shared file {name:?}"),
            ));
        }
        Ok(repo.path().join("rewind").join(name))
    }

    fn idx_bytes(&self, name: &str) -> Result<Vec<u8>, Refusal> {
        let repo = self.repo()?;
        let hex = name
            .strip_prefix("pack-")
            .and_then(|n| n.strip_suffix(".idx"))
            .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if hex.is_none() {
            return Err(Refusal(
                ErrorCode::BadRequest,
                format!("no pack index {name:?}"),
            ));
        }
        let path = repo.path().join("objects/pack").join(name);
        std::fs::read(&path).map_err(|e| {
            Refusal(
                ErrorCode::Failed,
                format!("reading {}: {e}", path.display()),
            )
        })
    }

    fn get_objects(
        &self,
        ids: &[ObjectId],
        expand: bool,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let repo = match self.repo() {
            Ok(r) => r,
            Err(Refusal(code, message)) => return Response::Error { code, message }.write(out),
        };
        // The client reads them in this order: the disk starts on all of
        // them now rather than on each when its turn comes (a restore's
        // batch is hundreds of small files, each a synchronous read cold).
        repo.objects().will_need(ids);
        for id in ids {
            // As stored when possible: less to send, no inflating here (the
            // client inflates and hashes every object anyway). A tree to
            // expand is read whole: its entries name the .bupm.
            if let Some((kind, size, zdata)) = repo
                .objects()
                .read_compressed(id, wire::MAX_FRAME as u64)
                .filter(|(kind, _, _)| !(expand && *kind == Kind::Tree))
            {
                Response::Compressed {
                    id: *id,
                    kind,
                    size,
                }
                .write(out)?;
                wire::write_pieces(out, &zdata)?;
                continue;
            }
            match repo.objects().read_with(id, Verify::EntryChecksums) {
                Ok(object) => {
                    // The .bupm goes first: the client has it by the time
                    // the tree it is listing arrives, and need not wait
                    // for a frame that may never come.
                    if expand && object.kind == Kind::Tree {
                        send_bupm(repo, &object.data, out)?;
                    }
                    Response::Object {
                        id: *id,
                        kind: object.kind,
                        size: object.data.len() as u64,
                    }
                    .write(out)?;
                    wire::write_pieces(out, &object.data)?;
                }
                Err(e) => Response::ObjectMissing {
                    id: *id,
                    corrupt: !matches!(e, Error::NotFound(_)),
                    message: e.to_string(),
                }
                .write(out)?,
            }
        }
        Ok(())
    }

    fn put(&mut self, id: ObjectId, kind: Kind, size: u64, zdata: Vec<u8>) -> Result<(), String> {
        let repo = self.repo.as_ref().ok_or("no repository is open")?;
        if self.receiving.is_none() {
            let writer = repo.pack_writer().map_err(|e| e.to_string())?;
            self.receiving = Some(Receiving::start(writer)?);
        }
        let receiving = self.receiving.as_mut().expect("just made");
        receiving.put(id, kind, size, zdata)
    }

    /// Hands the objects gathered to the checks before waiting for input.
    fn hand_on_objects(&mut self) {
        if let Some(receiving) = &mut self.receiving {
            if let Err(why) = receiving.hand_on() {
                self.refuse_pack(why);
            }
        }
    }

    /// Drops the pack being received (a temporary file); FinishPack will
    /// answer `why`.
    fn refuse_pack(&mut self, why: String) {
        tracing::warn!("refusing the pack being received: {why}");
        self.receiving = None;
        self.put_failure = Some(why);
    }

    fn finish_pack(&mut self) -> Result<Response, Refusal> {
        self.repo()?;
        let refused = |why| {
            Refusal(
                ErrorCode::BadRequest,
                format!("the objects sent were refused: {why}"),
            )
        };
        if let Some(why) = self.put_failure.take() {
            self.receiving = None;
            return Err(refused(why));
        }
        let mut names = Vec::new();
        if let Some(receiving) = self.receiving.take() {
            // Every pack of this stream, those published by a rollover too.
            for p in receiving.finish().map_err(refused)?? {
                if p.extension().is_some_and(|e| e == "idx") {
                    if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                        names.push(name.to_string());
                    }
                }
            }
            self.repo()?.objects().refresh()?;
        }
        Ok(Response::Packs { names })
    }

    fn update_ref(
        &self,
        name: &str,
        new: ObjectId,
        old: Option<ObjectId>,
    ) -> Result<Response, Refusal> {
        let repo = self.repo()?;
        check_update(repo, new, old, self.append_only, name)?;
        match repo.update_ref(name, new, old) {
            Ok(()) => Ok(Response::Ok),
            Err(Error::RefChanged { found, .. }) => Ok(Response::RefChanged { found }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Sends the `.bupm` blob of the tree whose bytes are `tree_data`, if it
/// has one that reads: the client asks for it itself otherwise (and gets
/// the error then).
fn send_bupm(repo: &Repository, tree_data: &[u8], out: &mut impl Write) -> std::io::Result<()> {
    let Ok(entries) = tree::decode(tree_data) else {
        return Ok(());
    };
    let Some(bupm) = entries
        .iter()
        .find(|e| e.name == b".bupm" && !e.mode.is_tree())
    else {
        return Ok(());
    };
    if let Ok(object) = repo.objects().read_with(&bupm.id, Verify::EntryChecksums) {
        Response::Also {
            id: bupm.id,
            kind: object.kind,
            size: object.data.len() as u64,
        }
        .write(out)?;
        wire::write_pieces(out, &object.data)?;
    }
    Ok(())
}

/// An absolute path with the symlinks of its existing part resolved and
/// no `.` or `..` left: what a restriction compares.
fn settle(path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(real) => {
                let mut settled = real;
                for part in rest.iter().rev() {
                    settled.push(part);
                }
                return Ok(settled);
            }
            Err(_) => {
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                    return Err(format!("{} cannot be resolved", path.display()));
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(format!("{} cannot be resolved", path.display()));
                }
            }
        }
        // A part that does not exist yet may not climb back up.
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(format!("{} holds '.' or '..'", path.display()));
        }
    }
}

/// Runs a whole session from `bytes` against repositories under `dir`
/// (the fuzz target `remote_session`).
pub fn serve_bytes(bytes: &[u8], dir: &Path) {
    let opts = ServerOptions {
        restrict_to: vec![dir.to_path_buf()],
        append_only: true,
    };
    let _ = serve(&opts, bytes, std::io::sink());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::commit;
    use crate::remote::wire::{read_frame, MAGIC, VERSION};

    /// The greeting and the opening of `repo`, as a client sends them.
    fn greeting(repo: &Path) -> Vec<u8> {
        let mut input = MAGIC.to_vec();
        Request::Hello {
            min: VERSION,
            max: VERSION,
        }
        .write(&mut input)
        .unwrap();
        Request::Open {
            path: repo.as_os_str().as_encoded_bytes().to_vec(),
            create: false,
        }
        .write(&mut input)
        .unwrap();
        input
    }

    fn decode_answers(mut output: &[u8]) -> Vec<Response> {
        let mut answers = Vec::new();
        while let Ok((tag, body)) = read_frame(&mut output) {
            answers.push(Response::decode(tag, &body).unwrap());
        }
        answers
    }

    /// Runs `requests` (after the greeting and opening `repo`) through a
    /// server and returns its answers.
    fn session(repo: &Path, opts: &ServerOptions, requests: &[u8]) -> Vec<Response> {
        let mut input = greeting(repo);
        input.extend_from_slice(requests);
        let mut output = Vec::new();
        serve(opts, &input[..], &mut output).unwrap();
        decode_answers(&output)
    }

    /// What a client sends, one piece per read; at each read it notes how
    /// many bytes of answers had reached the client.
    struct Pieces {
        pieces: std::collections::VecDeque<Vec<u8>>,
        answered: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        seen_at_reads: Vec<usize>,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(mut piece) = self.pieces.pop_front() else {
                return Ok(0);
            };
            self.seen_at_reads.push(self.answered.lock().unwrap().len());
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                self.pieces.push_front(piece.split_off(n));
            }
            Ok(n)
        }
    }

    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A client's first write may end inside a request, and the client may
    /// wait for the greeting's answers before it sends the rest (a save
    /// queues objects while ssh logs in): the server must answer before it
    /// waits, or both wait for ever (a save over SSH hung so).
    #[test]
    fn answers_go_out_before_the_server_waits_for_the_rest_of_a_request() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        Repository::init(&dir).unwrap();
        let mut list = Vec::new();
        Request::ListPacks.write(&mut list).unwrap();
        for cut in [1, 4, list.len() - 1] {
            let mut first = greeting(&dir);
            first.extend_from_slice(&list[..cut]);
            let answered = std::sync::Arc::default();
            let mut input = Pieces {
                pieces: [first, list[cut..].to_vec()].into(),
                answered: std::sync::Arc::clone(&answered),
                seen_at_reads: Vec::new(),
            };
            let opts = ServerOptions {
                restrict_to: Vec::new(),
                append_only: false,
            };
            serve(&opts, &mut input, Shared(answered.clone())).unwrap();
            let output = answered.lock().unwrap().clone();
            let answers = decode_answers(&output);
            assert_eq!(
                answers[..2],
                [Response::Hello { version: VERSION }, Response::Ok]
            );
            assert!(matches!(answers[2], Response::Packs { .. }), "{answers:?}");
            // When the server first read for the rest of ListPacks, the
            // greeting's two answers had gone out.
            let greeted = output.len() - {
                let mut packs = Vec::new();
                answers[2].write(&mut packs).unwrap();
                packs.len()
            };
            assert_eq!(input.seen_at_reads[..2], [0, greeted], "cut at {cut}");
        }
    }

    #[test]
    fn a_save_lands_and_an_append_only_key_cannot_delete_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let repo = Repository::init(&dir).unwrap();
        let opts = ServerOptions {
            restrict_to: vec![tmp.path().to_path_buf()],
            append_only: true,
        };
        let seeds = crate::fuzz::remote_session_seeds();
        let answers = session(&dir, &opts, &seeds[0].1);
        assert_eq!(answers[0], Response::Hello { version: VERSION });
        assert_eq!(answers[1], Response::Ok);
        // ListPacks, ReadRef, FinishPack, UpdateRef, FinishPack, UpdateRef, SetHead.
        assert!(
            matches!(&answers[4], Response::Packs { names } if names.len() == 1),
            "{answers:?}"
        );
        assert_eq!(answers[5], Response::Ok, "{answers:?}");
        assert_eq!(answers[7], Response::Ok, "{answers:?}");
        let tip = repo.read_ref("refs/heads/etc").unwrap().expect("branch");
        let answers = session(&dir, &opts, &seeds[1].1);
        match answers.last().unwrap() {
            Response::Error { code, message } => {
                assert_eq!(*code, ErrorCode::AppendOnly);
                assert!(message.contains("append-only"), "{message}");
            }
            other => panic!("deletion answered {other:?}"),
        }
        assert_eq!(repo.read_ref("refs/heads/etc").unwrap(), Some(tip));
        // Moving the branch back to its first commit is not forward.
        let first = commit::decode(&repo.objects().read(&tip).unwrap().data)
            .unwrap()
            .parents[0];
        let mut back = Vec::new();
        Request::UpdateRef {
            name: "refs/heads/etc".into(),
            new: first,
            old: Some(tip),
        }
        .write(&mut back)
        .unwrap();
        let answers = session(&dir, &opts, &back);
        assert!(
            matches!(
                answers.last().unwrap(),
                Response::Error {
                    code: ErrorCode::AppendOnly,
                    ..
                }
            ),
            "{answers:?}"
        );
        assert_eq!(repo.read_ref("refs/heads/etc").unwrap(), Some(tip));
    }

    #[test]
    fn a_commit_whose_tree_is_missing_does_not_move_a_ref() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let repo = Repository::init(&dir).unwrap();
        let opts = ServerOptions {
            restrict_to: Vec::new(),
            append_only: false,
        };
        // A commit naming a tree that was never sent.
        let text = format!(
            "tree {}\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n",
            ObjectId([3; 20])
        );
        let mut w = repo.pack_writer().unwrap();
        let commit = w.write(Kind::Commit, text.as_bytes()).unwrap();
        w.finish().unwrap();
        let mut req = Vec::new();
        Request::UpdateRef {
            name: "refs/heads/x".into(),
            new: commit,
            old: None,
        }
        .write(&mut req)
        .unwrap();
        let answers = session(&dir, &opts, &req);
        match answers.last().unwrap() {
            Response::Error { message, .. } => {
                assert!(message.contains("refusing to move"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(repo.read_ref("refs/heads/x").unwrap(), None);
    }

    #[test]
    fn objects_that_do_not_match_their_id_are_refused_and_nothing_is_published() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        Repository::init(&dir).unwrap();
        let opts = ServerOptions {
            restrict_to: Vec::new(),
            append_only: false,
        };
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, b"hello\n").unwrap();
        let zdata = z.finish().unwrap();
        let mut req = Vec::new();
        for (id, size) in [
            (ObjectId([1; 20]), 6),
            (crate::object::hash_object(Kind::Blob, b"hello\n"), 7),
        ] {
            Request::PutObject {
                id,
                kind: Kind::Blob,
                size,
                zdata: zdata.clone(),
            }
            .write(&mut req)
            .unwrap();
            Request::FinishPack.write(&mut req).unwrap();
        }
        let answers = session(&dir, &opts, &req);
        assert!(
            matches!(&answers[2], Response::Error { message, .. } if message.contains("hash")),
            "{answers:?}"
        );
        assert!(
            matches!(&answers[3], Response::Error { message, .. } if message.contains("inflates to")),
            "{answers:?}"
        );
        let packs = std::fs::read_dir(dir.join("objects/pack")).unwrap().count();
        assert_eq!(packs, 0, "nothing published");
        let leftovers = std::fs::read_dir(dir.join("objects"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tmp_pack"))
            .count();
        assert_eq!(leftovers, 0, "temporary packs removed");
    }

    #[test]
    fn a_restricted_key_cannot_reach_outside_even_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let allowed = tmp.path().join("allowed");
        std::fs::create_dir(&allowed).unwrap();
        let outside = tmp.path().join("outside");
        Repository::init(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        let opts = ServerOptions {
            restrict_to: vec![allowed.clone()],
            append_only: false,
        };
        for path in [
            outside.clone(),
            allowed.join("link"),
            allowed.join("../outside"),
        ] {
            let answers = session(&path, &opts, &[]);
            match &answers[1] {
                Response::Error { code, .. } => assert!(
                    matches!(code, ErrorCode::OutsideRestriction | ErrorCode::BadRequest),
                    "{path:?}: {code:?}"
                ),
                other => panic!("{path:?} opened: {other:?}"),
            }
        }
    }
}
