//! Git's delta format: applying a delta to a base object.
//!
//! A delta is: base size and result size (little-endian base-128 varints),
//! then instructions. An instruction byte with the high bit set copies from
//! the base: bits 0-3 say which offset bytes follow, bits 4-6 which size
//! bytes follow (size 0 means 0x10000). A byte 1-127 inserts that many
//! following literal bytes. Byte 0 is reserved and rejected. Every bound is
//! checked: a damaged delta yields an error, never a panic or wrong length.

/// Most memory reserved up front from a size read off disk; beyond this the
/// result grows as bytes actually arrive, so a damaged size cannot exhaust memory.
const MAX_PREALLOC: u64 = 64 << 20;

/// Reads the (base size, result size) header; returns them and the header length.
pub fn parse_sizes(delta: &[u8]) -> Result<(u64, u64, usize), String> {
    let mut pos = 0;
    let base = read_varint(delta, &mut pos).ok_or("delta base size is truncated or too large")?;
    let result =
        read_varint(delta, &mut pos).ok_or("delta result size is truncated or too large")?;
    Ok((base, result, pos))
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift > 63 {
            return None;
        }
        value |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
    }
}

/// Applies `delta` to `base` and returns the result.
pub fn apply(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, String> {
    let (base_size, result_size, mut pos) = parse_sizes(delta)?;
    if base_size != base.len() as u64 {
        return Err(format!(
            "delta expects a base of {base_size} bytes, base has {}",
            base.len()
        ));
    }
    let mut out = Vec::with_capacity(result_size.min(MAX_PREALLOC) as usize);
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut offset = 0u64;
            let mut size = 0u64;
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    let b = *delta
                        .get(pos)
                        .ok_or("delta copy instruction is truncated")?;
                    pos += 1;
                    offset |= u64::from(b) << (8 * i);
                }
            }
            for i in 0..3 {
                if op & (0x10 << i) != 0 {
                    let b = *delta
                        .get(pos)
                        .ok_or("delta copy instruction is truncated")?;
                    pos += 1;
                    size |= u64::from(b) << (8 * i);
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let end = offset
                .checked_add(size)
                .filter(|&e| e <= base.len() as u64)
                .ok_or_else(|| {
                    format!(
                        "delta copies {size} bytes at {offset} from a base of {} bytes",
                        base.len()
                    )
                })?;
            if out.len() as u64 + size > result_size {
                return Err("delta writes past its declared result size".into());
            }
            out.extend_from_slice(&base[offset as usize..end as usize]);
        } else if op != 0 {
            let n = usize::from(op);
            let lit = delta
                .get(pos..pos + n)
                .ok_or("delta insert instruction is truncated")?;
            pos += n;
            if out.len() as u64 + n as u64 > result_size {
                return Err("delta writes past its declared result size".into());
            }
            out.extend_from_slice(lit);
        } else {
            return Err("delta contains the reserved instruction 0".into());
        }
    }
    if out.len() as u64 != result_size {
        return Err(format!(
            "delta produced {} bytes, declared {result_size}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn copy_and_insert() {
        let base = b"hello, world";
        let mut d = Vec::new();
        varint(base.len() as u64, &mut d);
        varint(11, &mut d);
        d.extend_from_slice(&[0x91, 7, 5]); // copy offset 7 size 5: "world"
        d.extend_from_slice(&[2, b',', b' ']);
        d.extend_from_slice(&[0x90, 4]); // copy offset 0 size 4: "hell"
        assert_eq!(apply(base, &d).unwrap(), b"world, hell");
    }

    #[test]
    fn size_zero_means_64k() {
        let base = vec![7u8; 0x10000];
        let mut d = Vec::new();
        varint(0x10000, &mut d);
        varint(0x10000, &mut d);
        d.push(0x80);
        assert_eq!(apply(&base, &d).unwrap(), base);
    }

    #[test]
    fn damaged_deltas_are_errors() {
        let base = b"abcdef";
        let ok = [6u8, 3, 0x91, 1, 3];
        assert_eq!(apply(base, &ok).unwrap(), b"bcd");
        assert!(apply(b"abc", &ok).is_err()); // wrong base size
        assert!(apply(base, &[6, 3, 0x91, 5, 3]).is_err()); // copy past base end
        assert!(apply(base, &[6, 2, 0x91, 1, 3]).is_err()); // past result size
        assert!(apply(base, &[6, 4, 0x91, 1, 3]).is_err()); // short result
        assert!(apply(base, &[6, 3, 0]).is_err()); // reserved op
        assert!(apply(base, &[6, 3, 5, b'x']).is_err()); // truncated insert
        assert!(apply(base, &[6, 3, 0x91, 1]).is_err()); // truncated copy
        assert!(apply(base, &[0xff; 12]).is_err()); // huge sizes
        assert!(apply(base, &[]).is_err());
        // Every single-byte change of a valid delta is either an error or a
        // well-formed result; never a panic.
        for i in 0..ok.len() {
            for v in 0..=255u8 {
                let mut d = ok;
                d[i] = v;
                let _ = apply(base, &d);
            }
        }
    }
}
