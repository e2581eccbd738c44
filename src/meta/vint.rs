//! bup's variable-length integers (`lib/bup/vint.py`, `_helpers.c`).
//!
//! vuint: little-endian base 128, bit 0x80 = more bytes follow.
//! vint: the first byte holds 0x80 = more, 0x40 = negative and the low six
//! bits of the magnitude; later bytes continue as a vuint of the magnitude
//! shifted right by six. bup writes sign and magnitude, so -0 never appears
//! in its output, but a reader must accept it.
//! bvec: vuint length, then the bytes.

/// Longest accepted encoding. A u64 needs at most 10 bytes; bup's Python
/// fallback can emit longer runs for huge numbers, which no field we know
/// can hold, so a longer run is treated as corrupt rather than read forever.
pub(crate) const MAX_VINT_BYTES: usize = 20;

pub(crate) fn put_vuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Writes a signed value given as sign and magnitude, so that magnitudes up
/// to u64::MAX (e.g. a huge rdev) encode as bup's arbitrary-precision
/// fallback would.
pub(crate) fn put_vint_parts(out: &mut Vec<u8>, negative: bool, magnitude: u64) {
    let mut first = (magnitude & 0x3f) as u8;
    if negative && magnitude != 0 {
        first |= 0x40;
    }
    let rest = magnitude >> 6;
    if rest != 0 {
        out.push(first | 0x80);
        put_vuint(out, rest);
    } else {
        out.push(first);
    }
}

pub(crate) fn put_vint(out: &mut Vec<u8>, v: i64) {
    put_vint_parts(out, v < 0, v.unsigned_abs());
}

pub(crate) fn put_bvec(out: &mut Vec<u8>, bytes: &[u8]) {
    put_vuint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Why a value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VintError {
    Truncated,
    Overflow,
}

/// Accumulates 7-bit groups into a u64, rejecting anything that does not
/// fit. Zero groups past bit 63 are tolerated (redundant but harmless).
#[derive(Default)]
pub(crate) struct Accumulator {
    value: u64,
    shift: u32,
    bytes: usize,
}

impl Accumulator {
    pub(crate) fn starting_at(value: u64, shift: u32) -> Self {
        Accumulator {
            value,
            shift,
            bytes: 1,
        }
    }

    /// Feeds one byte; returns true when the number is complete.
    pub(crate) fn push(&mut self, byte: u8) -> Result<bool, VintError> {
        self.bytes += 1;
        if self.bytes > MAX_VINT_BYTES {
            return Err(VintError::Overflow);
        }
        let group = u64::from(byte & 0x7f);
        if group != 0 {
            if self.shift >= 64 || (group << self.shift) >> self.shift != group {
                return Err(VintError::Overflow);
            }
            self.value |= group << self.shift;
        }
        self.shift += 7;
        Ok(byte & 0x80 == 0)
    }

    pub(crate) fn value(&self) -> u64 {
        self.value
    }
}

/// A cursor over an in-memory record payload.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn byte(&mut self) -> Result<u8, VintError> {
        let b = *self.buf.get(self.pos).ok_or(VintError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn vuint(&mut self) -> Result<u64, VintError> {
        let mut acc = Accumulator::default();
        loop {
            if acc.push(self.byte()?)? {
                return Ok(acc.value());
            }
        }
    }

    /// Returns (negative, magnitude).
    pub(crate) fn vint_parts(&mut self) -> Result<(bool, u64), VintError> {
        let first = self.byte()?;
        let negative = first & 0x40 != 0;
        let mut acc = Accumulator::starting_at(u64::from(first & 0x3f), 6);
        if first & 0x80 != 0 {
            loop {
                if acc.push(self.byte()?)? {
                    break;
                }
            }
        }
        Ok((negative, acc.value()))
    }

    pub(crate) fn vint(&mut self) -> Result<i64, VintError> {
        let (negative, magnitude) = self.vint_parts()?;
        if negative {
            0i64.checked_sub_unsigned(magnitude)
                .ok_or(VintError::Overflow)
        } else {
            i64::try_from(magnitude).map_err(|_| VintError::Overflow)
        }
    }

    pub(crate) fn bvec(&mut self) -> Result<&'a [u8], VintError> {
        let len = self.vuint()?;
        let len = usize::try_from(len).map_err(|_| VintError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(VintError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(VintError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vint_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_vint(&mut out, v);
        out
    }

    fn vuint_bytes(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_vuint(&mut out, v);
        out
    }

    #[test]
    fn known_encodings_from_the_format_notes() {
        assert_eq!(vuint_bytes(0), [0x00]);
        assert_eq!(vuint_bytes(127), [0x7f]);
        assert_eq!(vuint_bytes(128), [0x80, 0x01]);
        assert_eq!(vuint_bytes(0x80000), [0x80, 0x80, 0x20]);
        assert_eq!(vint_bytes(0), [0x00]);
        assert_eq!(vint_bytes(-1), [0x41]);
        assert_eq!(vint_bytes(49), [0x31]);
        assert_eq!(vint_bytes(63), [0x3f]);
        assert_eq!(vint_bytes(64), [0x80, 0x01]);
        assert_eq!(vint_bytes(-64), [0xc0, 0x01]);
        assert_eq!(vint_bytes(0o40755), [0xad, 0x87, 0x02]);
        assert_eq!(vint_bytes(1795294380), [0xac, 0x92, 0x90, 0xb0, 0x0d]);
    }

    #[test]
    fn round_trips_at_the_edges() {
        for v in [
            0,
            1,
            -1,
            63,
            64,
            -63,
            -64,
            1 << 40,
            -(1 << 40),
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ] {
            let b = vint_bytes(v);
            let mut c = Cursor::new(&b);
            assert_eq!(c.vint(), Ok(v), "{v}");
            assert_eq!(c.pos, b.len());
        }
        for v in [0, 1, 127, 128, 1 << 35, u64::MAX - 1, u64::MAX] {
            let b = vuint_bytes(v);
            assert!(b.len() <= 10);
            assert_eq!(Cursor::new(&b).vuint(), Ok(v), "{v}");
        }
        let mut big = Vec::new();
        put_vint_parts(&mut big, false, u64::MAX);
        assert_eq!(Cursor::new(&big).vint_parts(), Ok((false, u64::MAX)));
        assert_eq!(Cursor::new(&big).vint(), Err(VintError::Overflow));
    }

    #[test]
    fn rejects_truncation_and_overflow() {
        assert_eq!(Cursor::new(&[]).vuint(), Err(VintError::Truncated));
        assert_eq!(Cursor::new(&[0x80]).vuint(), Err(VintError::Truncated));
        assert_eq!(Cursor::new(&[0xc1]).vint(), Err(VintError::Truncated));
        // 2^70 does not fit.
        let mut b = vec![0x80; 10];
        b.push(0x01);
        assert_eq!(Cursor::new(&b).vuint(), Err(VintError::Overflow));
        // An endless continuation run is cut off.
        assert_eq!(Cursor::new(&[0x80; 64]).vuint(), Err(VintError::Overflow));
        assert_eq!(Cursor::new(&[0x03, b'a']).bvec(), Err(VintError::Truncated));
        // Redundant zero groups and -0 are accepted, as bup's reader does.
        assert_eq!(Cursor::new(&[0x81, 0x80, 0x00]).vuint(), Ok(1));
        assert_eq!(Cursor::new(&[0x40]).vint(), Ok(0));
    }
}
