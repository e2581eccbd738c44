//! What goes to ssh's stdin, in order. Until the server has answered the
//! greeting, ssh reads nothing: the key exchange and login take a few
//! hundred milliseconds, in which a save's workers would fill their few
//! batches and stop. So the outbox can hold what is written in that time
//! (a save's first objects, up to [`HEAD_START_BYTES`]) and send it before
//! anything written after; a flush, or [`Outbox::release`], ends the
//! holding for good.

use std::io::{self, BufWriter, Write};
use std::process::ChildStdin;

/// Bytes held while connecting, at most: about a quarter of a second of
/// a save's output on two cores. Past this the writer waits for ssh, as
/// it does once connected.
pub const HEAD_START_BYTES: usize = 32 << 20;

pub struct Outbox<W: Write = ChildStdin> {
    pipe: BufWriter<W>,
    /// Written while connecting and not sent yet; `None` once released.
    held: Option<Vec<u8>>,
}

impl<W: Write> Outbox<W> {
    /// An outbox that sends at once until [`Outbox::start_holding`].
    pub fn new(pipe: W) -> Outbox<W> {
        Outbox {
            pipe: BufWriter::with_capacity(1 << 20, pipe),
            held: None,
        }
    }

    /// Holds what is written from now until released (called once the
    /// greeting is on its way).
    pub fn start_holding(&mut self) {
        self.held = Some(Vec::new());
    }

    /// Whether more may be held: holding, and under the limit.
    pub fn has_room(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| held.len() < HEAD_START_BYTES)
    }

    /// Sends what was held, before anything written after, and stops
    /// holding.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(held) = self.held.take() {
            if !held.is_empty() {
                tracing::debug!(
                    "held {} bytes of objects while ssh was connecting",
                    held.len()
                );
            }
            self.pipe.write_all(&held)?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Outbox<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.held {
            Some(held) => {
                held.extend_from_slice(buf);
                Ok(buf.len())
            }
            None => self.pipe.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.release()?;
        self.pipe.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_bytes(out: &Outbox<Vec<u8>>) -> usize {
        out.held.as_ref().map_or(0, Vec::len)
    }

    #[test]
    fn held_bytes_go_out_first_and_a_flush_ends_the_holding() {
        let mut out = Outbox::new(Vec::new());
        out.write_all(b"greeting;").unwrap();
        out.flush().unwrap();
        out.start_holding();
        out.write_all(b"object 1;").unwrap();
        out.write_all(b"object 2;").unwrap();
        assert_eq!(out.pipe.get_ref().as_slice(), b"greeting;");
        assert_eq!(held_bytes(&out), 18);
        out.write_all(b"request;").unwrap();
        out.flush().unwrap();
        assert!(!out.has_room(), "no holding after a flush");
        out.write_all(b"object 3;").unwrap();
        out.flush().unwrap();
        assert_eq!(
            out.pipe.get_ref().as_slice(),
            b"greeting;object 1;object 2;request;object 3;"
        );
    }

    #[test]
    fn room_ends_at_the_limit() {
        let mut out = Outbox::new(Vec::new());
        out.start_holding();
        let block = vec![7u8; 1 << 20];
        while out.has_room() {
            out.write_all(&block).unwrap();
        }
        assert_eq!(held_bytes(&out), HEAD_START_BYTES);
        out.release().unwrap();
        assert_eq!(held_bytes(&out), 0);
        assert_eq!(out.pipe.get_ref().len(), HEAD_START_BYTES);
    }
}
