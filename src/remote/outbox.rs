//! What goes to ssh's stdin, in order, written by a thread of its own.
//!
//! Writers queue up to [`BUDGET`] bytes and go on; the thread writes them
//! to the pipe as ssh reads. Two reasons:
//! - Until it has logged in (a few hundred milliseconds), ssh reads
//!   nothing: a save's first objects wait here while its workers go on,
//!   instead of the workers stopping after a few batches.
//! - When the server answers, that backlog drains at the server's pace:
//!   written by the save's own appender, it held the whole save still for
//!   the 0.2 s it took (perf sched timeline of a first save over SSH).
//!
//! A flush queues what was written, without waiting for the pipe: an
//! answer cannot come before its request has gone out anyway. A request
//! flushed with nothing queued is written at once by its caller: handing
//! each of a restore's requests to the thread made them wait for it to be
//! scheduled on busy cores (2.11 -> 2.15 s, medians of 5). A failed
//! write (ssh gone) fails every later write and flush; the session then
//! reads ssh's last words for the reason.

use crate::locks::{lock, wait};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};

/// Bytes queued and not yet written to the pipe, at most: about a quarter
/// of a second of a save's output on two cores.
const BUDGET: usize = 32 << 20;
/// Bytes gathered before they are queued: one pipe write each.
const PIECE: usize = 1 << 20;
/// Written pieces kept for reuse (a fresh MiB costs 256 page faults).
const SPARES: usize = 4;
/// A flush of at most this many bytes with nothing queued is written by
/// the caller (a request: it fits in the pipe).
const DIRECT_MAX: usize = 64 << 10;

type Pipe = Arc<Mutex<Box<dyn Write + Send>>>;

pub struct Outbox {
    queue: Arc<Queue>,
    /// Written by the thread, and by a caller when nothing is queued.
    pipe: Pipe,
    /// Written and not queued yet.
    filling: Vec<u8>,
    /// Every byte queued since the start.
    queued_total: u64,
}

struct Queue {
    state: Mutex<State>,
    /// Notified when a piece is queued, written, or the outbox closes.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    pieces: VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    pending: usize,
    /// Why a write failed: the end of the stream.
    failed: Option<(io::ErrorKind, String)>,
    /// The outbox was dropped: the thread stops.
    closed: bool,
    spares: Vec<Vec<u8>>,
}

impl Outbox {
    /// Starts the thread that writes to `pipe`; the pipe is closed when
    /// the outbox is dropped.
    pub fn start(pipe: impl Write + Send + 'static) -> io::Result<Outbox> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let pipe: Pipe = Arc::new(Mutex::new(Box::new(pipe)));
        let (q, p) = (queue.clone(), pipe.clone());
        std::thread::Builder::new()
            .name("rewind-ssh-stdin".into())
            .spawn(move || write_out(&q, &p))?;
        Ok(Outbox {
            queue,
            pipe,
            filling: Vec::with_capacity(PIECE),
            queued_total: 0,
        })
    }

    /// Bytes queued since the start (flushed or not, written or not).
    pub fn queued_total(&self) -> u64 {
        self.queued_total + self.filling.len() as u64
    }

    /// Queues what was written, waiting for room if the budget is spent;
    /// with `direct`, a small piece with nothing queued before it is
    /// written at once instead.
    fn queue_filling(&mut self, direct: bool) -> io::Result<()> {
        if self.filling.is_empty() {
            return Ok(());
        }
        let mut state = lock(&self.queue.state);
        loop {
            if let Some((kind, why)) = &state.failed {
                return Err(io::Error::new(*kind, why.clone()));
            }
            if direct && state.pending == 0 && self.filling.len() <= DIRECT_MAX {
                // Only this outbox queues, so the thread stays idle.
                drop(state);
                return self.write_directly();
            }
            // A piece larger than the budget still goes, alone.
            if state.pending == 0 || state.pending + self.filling.len() <= BUDGET {
                break;
            }
            state = wait(&self.queue.changed, state);
        }
        let spare = state.spares.pop().unwrap_or_default();
        let piece = std::mem::replace(&mut self.filling, spare);
        state.pending += piece.len();
        self.queued_total += piece.len() as u64;
        state.pieces.push_back(piece);
        drop(state);
        self.queue.changed.notify_all();
        Ok(())
    }

    fn write_directly(&mut self) -> io::Result<()> {
        let result = {
            let mut pipe = lock(&self.pipe);
            pipe.write_all(&self.filling).and_then(|_| pipe.flush())
        };
        self.queued_total += self.filling.len() as u64;
        self.filling.clear();
        if let Err(e) = &result {
            lock(&self.queue.state).failed = Some((e.kind(), e.to_string()));
        }
        result
    }
}

impl Write for Outbox {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.filling.extend_from_slice(buf);
        if self.filling.len() >= PIECE {
            self.queue_filling(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.queue_filling(true)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // What is still queued is dropped: a session ends when its last
        // answer is read, or abandoned. The thread finishes the piece it
        // is writing and closes the pipe: the server sees the end.
        let mut state = lock(&self.queue.state);
        state.closed = true;
        state.pieces.clear();
        drop(state);
        self.queue.changed.notify_all();
    }
}

/// The thread: writes pieces in order until the outbox closes or a write
/// fails (the pipe closes when the outbox and the thread have let it go).
fn write_out(queue: &Queue, pipe: &Mutex<Box<dyn Write + Send>>) {
    loop {
        let mut piece = {
            let mut state = lock(&queue.state);
            loop {
                if state.closed {
                    return;
                }
                if let Some(piece) = state.pieces.pop_front() {
                    break piece;
                }
                state = wait(&queue.changed, state);
            }
        };
        let result = {
            let mut pipe = lock(pipe);
            pipe.write_all(&piece).and_then(|_| pipe.flush())
        };
        let mut state = lock(&queue.state);
        state.pending -= piece.len();
        if let Err(e) = result {
            state.failed = Some((e.kind(), e.to_string()));
            state.pieces.clear();
            state.pending = 0;
        } else if state.spares.len() < SPARES {
            piece.clear();
            state.spares.push(piece);
        }
        let failed = state.failed.is_some();
        drop(state);
        queue.changed.notify_all();
        if failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A pipe end that blocks until told to go on, and keeps what it got.
    struct Gate {
        open: mpsc::Receiver<()>,
        got: Arc<Mutex<Vec<u8>>>,
        opened: bool,
        /// The thread of each write.
        writers: Arc<Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.opened {
                self.open.recv().map_err(|_| io::ErrorKind::BrokenPipe)?;
                self.opened = true;
            }
            lock(&self.got).extend_from_slice(buf);
            lock(&self.writers).push(std::thread::current().id());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    type Writers = Arc<Mutex<Vec<std::thread::ThreadId>>>;

    fn gate_with_writers() -> (Outbox, mpsc::Sender<()>, Arc<Mutex<Vec<u8>>>, Writers) {
        let (tx, rx) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let writers = Writers::default();
        let gate = Gate {
            open: rx,
            got: got.clone(),
            opened: false,
            writers: writers.clone(),
        };
        (Outbox::start(gate).unwrap(), tx, got, writers)
    }

    fn gate() -> (Outbox, mpsc::Sender<()>, Arc<Mutex<Vec<u8>>>) {
        let (out, open, got, _) = gate_with_writers();
        (out, open, got)
    }

    #[test]
    fn a_request_with_nothing_queued_is_written_by_its_caller() {
        let (mut out, open, got, writers) = gate_with_writers();
        open.send(()).unwrap();
        out.write_all(b"request").unwrap();
        out.flush().unwrap();
        assert_eq!(lock(&got).as_slice(), b"request");
        assert_eq!(*lock(&writers), vec![std::thread::current().id()]);
        // Behind queued pieces, a request is queued too, to keep the order.
        let block = vec![1u8; PIECE];
        out.write_all(&block).unwrap();
        out.write_all(b"next").unwrap();
        out.flush().unwrap();
        let all = wait_for(&got, 7 + PIECE + 4);
        assert_eq!(&all[7 + PIECE..], b"next");
    }

    fn wait_for(got: &Mutex<Vec<u8>>, len: usize) -> Vec<u8> {
        for _ in 0..1000 {
            if lock(got).len() >= len {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        lock(got).clone()
    }

    #[test]
    fn writes_go_on_while_the_pipe_is_shut_and_arrive_in_order() {
        let (mut out, open, got) = gate();
        // Far more than a pipe holds, less than the budget: no write waits.
        let mut sent = Vec::new();
        for i in 0..(8 << 20) / 4096 {
            let block = vec![(i % 251) as u8; 4096];
            out.write_all(&block).unwrap();
            sent.extend_from_slice(&block);
        }
        out.write_all(b"request").unwrap();
        out.flush().unwrap();
        sent.extend_from_slice(b"request");
        assert_eq!(out.queued_total(), sent.len() as u64);
        assert!(lock(&got).is_empty(), "written before the pipe opened");
        open.send(()).unwrap();
        assert_eq!(wait_for(&got, sent.len()), sent);
    }

    #[test]
    fn past_the_budget_a_writer_waits_for_the_pipe() {
        let (mut out, open, got) = gate();
        let block = vec![7u8; PIECE];
        for _ in 0..BUDGET / PIECE {
            out.write_all(&block).unwrap();
        }
        let writer = std::thread::spawn(move || {
            out.write_all(&block).unwrap();
            out.flush().unwrap();
            out
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !writer.is_finished(),
            "a write past the budget did not wait"
        );
        open.send(()).unwrap();
        let _out = writer.join().unwrap();
        assert_eq!(wait_for(&got, BUDGET + PIECE).len(), BUDGET + PIECE);
    }

    #[test]
    fn a_failed_write_fails_every_later_one() {
        let (mut out, open, _got) = gate();
        // A piece, which goes to the thread (a small flush with nothing
        // queued would be written here, and wait for the gate).
        out.write_all(&vec![0u8; PIECE]).unwrap();
        drop(open); // the gate's write fails: a broken pipe
        let mut failed = None;
        for _ in 0..1000 {
            if let Err(e) = out.flush().and_then(|_| {
                out.write_all(b"x")?;
                out.flush()
            }) {
                failed = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            failed.expect("no write failed").kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(out.write_all(b"y").and_then(|_| out.flush()).is_err());
    }
}
