//! Inflating one zlib stream held whole in memory that must hold exactly
//! `size` bytes: an object a client sent to a server, one a server sent to
//! a client, a pack entry fsck reads. The size is a claim until the bytes
//! come, so output grows only as they do, and a stream that holds more or
//! fewer bytes, is cut short or is followed by stray bytes is an error.
//!
//! Small streams (most: chunks are ~8 KiB) are inflated by libdeflate in
//! one call, about a third faster than zlib-rs's streaming inflate; big
//! ones stream through zlib-rs. The pack reader uses the same one-call
//! inflater for entries inside its read window.

use flate2::{Decompress, FlushDecompress, Status};

/// Streams up to this size (compressed and inflated) are inflated in one
/// libdeflate call.
const ONE_CALL_MAX: u64 = 128 << 10;
/// Output bytes inflated per step when streaming.
const STEP: usize = 64 << 10;

/// A libdeflate decompressor, one per thread (it holds no stream state
/// between calls, only tables).
struct Inflater(*mut libdeflate_sys::libdeflate_decompressor);

impl Drop for Inflater {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a non-null self.0 came from
            // libdeflate_alloc_decompressor and is freed only here, once (the
            // Inflater is not Clone), after its thread's last use.
            unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0) }
        }
    }
}

thread_local! {
    // SAFETY: libdeflate_alloc_decompressor takes no arguments; it returns
    // an owned decompressor or null (out of memory), which libdeflate_zlib
    // checks for ("stream instead").
    static INFLATER: Inflater = Inflater(unsafe { libdeflate_sys::libdeflate_alloc_decompressor() });
}

/// [`libdeflate_zlib`]'s answer when the stream holds more than `size`.
pub(super) const TOO_LONG: &str = "inflates to more than its declared size";

/// One libdeflate call: inflates the zlib stream `input` into at most
/// `size` bytes. `None`: no decompressor on this thread (out of memory).
/// Also returns how many input bytes the stream used.
pub(super) fn libdeflate_zlib(
    input: &[u8],
    size: usize,
) -> Option<(Result<Vec<u8>, &'static str>, usize)> {
    // Not zeroed first: libdeflate writes the bytes it reports, and only
    // those become part of the vector.
    let mut out: Vec<u8> = Vec::with_capacity(size);
    let (mut used, mut made) = (0usize, 0usize);
    let status = INFLATER.with(|d| {
        if d.0.is_null() {
            return None;
        }
        // SAFETY: d.0 is non-null (checked above) and this thread's own,
        // so not used concurrently; libdeflate reads input.len() bytes
        // from `input`, a live slice, and writes at most out.capacity()
        // bytes into `out`'s allocation (uninitialised memory it only
        // writes); `used` and `made` are live locals it writes once.
        Some(unsafe {
            libdeflate_sys::libdeflate_zlib_decompress_ex(
                d.0,
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.capacity(),
                &mut used,
                &mut made,
            )
        })
    })?;
    let result = match status {
        libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS => {
            // SAFETY: on success libdeflate wrote `made` bytes (at most
            // the capacity it was given) from the start of `out`.
            unsafe { out.set_len(made.min(out.capacity())) }
            Ok(out)
        }
        libdeflate_sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(TOO_LONG),
        _ => Err("zlib data is damaged"),
    };
    Some((result, used))
}

/// The `size` bytes the zlib stream `zdata` holds. The message of an error
/// names no subject: callers say which object or entry it was.
pub fn inflate_exact(zdata: &[u8], size: u64) -> Result<Vec<u8>, String> {
    if let Some(whole) = one_call(zdata, size) {
        return whole;
    }
    let mut out = Vec::new();
    stream_exact(zdata, size, &mut |piece| out.extend_from_slice(piece))?;
    Ok(out)
}

/// Like [`inflate_exact`], but hands the bytes to `each` in pieces of at
/// most 128 KiB instead of holding them (a server hashing an object a client
/// sent). On an error, `each` may have seen some of the bytes.
pub fn inflate_exact_into(
    zdata: &[u8],
    size: u64,
    each: &mut dyn FnMut(&[u8]),
) -> Result<(), String> {
    if let Some(whole) = one_call(zdata, size) {
        each(&whole?);
        return Ok(());
    }
    stream_exact(zdata, size, each)
}

/// [`inflate_exact_into`] through zlib-rs's streaming inflate whatever the
/// size (the fuzz target compares it with the one-call path on small
/// streams too).
pub(crate) fn stream_exact(
    zdata: &[u8],
    size: u64,
    each: &mut dyn FnMut(&[u8]),
) -> Result<(), String> {
    let mut z = Decompress::new(true);
    let mut buf = vec![0u8; STEP];
    let mut made = 0u64;
    loop {
        let before = (z.total_in(), z.total_out());
        let status = z
            .decompress(
                &zdata[z.total_in() as usize..],
                &mut buf,
                FlushDecompress::Finish,
            )
            .map_err(|e| format!("zlib data is damaged: {e}"))?;
        let produced = (z.total_out() - before.1) as usize;
        made += produced as u64;
        if made > size {
            return Err(format!("inflates to more than its declared {size} bytes"));
        }
        each(&buf[..produced]);
        match status {
            Status::StreamEnd => break,
            _ if (z.total_in(), z.total_out()) == before => {
                return Err(format!(
                    "zlib stream is truncated ({made} of {size} bytes inflated)"
                ));
            }
            _ => {}
        }
    }
    if made != size {
        return Err(format!("inflates to {made} bytes, not the {size} declared"));
    }
    if z.total_in() as usize != zdata.len() {
        return Err(format!(
            "{} stray bytes after the zlib stream",
            zdata.len() - z.total_in() as usize
        ));
    }
    Ok(())
}

/// [`inflate_exact`] in one libdeflate call. `None`: too big for one call,
/// or no decompressor: stream it instead.
fn one_call(zdata: &[u8], size: u64) -> Option<Result<Vec<u8>, String>> {
    if size > ONE_CALL_MAX || zdata.len() as u64 > ONE_CALL_MAX {
        return None;
    }
    let (out, used) = libdeflate_zlib(zdata, size as usize)?;
    Some(match out {
        Err(TOO_LONG) => Err(format!("inflates to more than its declared {size} bytes")),
        Err(why) => Err(why.to_string()),
        Ok(out) if out.len() as u64 != size => Err(format!(
            "inflates to {} bytes, not the {size} declared",
            out.len()
        )),
        Ok(_) if used != zdata.len() => Err(format!(
            "{} stray bytes after the zlib stream",
            zdata.len() - used.min(zdata.len())
        )),
        Ok(out) => Ok(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    /// Both entry points, on sizes that take one call and sizes that
    /// stream: exact claims pass, every other claim or cut fails.
    #[test]
    fn a_stream_must_hold_exactly_its_size() {
        for len in [0usize, 5, 100 << 10, 300 << 10, 2 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let zdata = deflate(&data);
            let streamed = |zdata: &[u8], size: u64| {
                let mut out = Vec::new();
                inflate_exact_into(zdata, size, &mut |p| {
                    assert!(p.len() as u64 <= ONE_CALL_MAX);
                    out.extend_from_slice(p)
                })
                .map(|()| out)
            };
            let streamed_only = |zdata: &[u8], size: u64| {
                let mut out = Vec::new();
                stream_exact(zdata, size, &mut |p| out.extend_from_slice(p)).map(|()| out)
            };
            let size = len as u64;
            for inflate in [inflate_exact, streamed, streamed_only] {
                assert_eq!(inflate(&zdata, size).unwrap(), data, "{len}");
                // A claim one byte short or long is an error, not a truncation.
                assert!(inflate(&zdata, size + 1).is_err(), "{len}+1");
                if len > 0 {
                    assert!(inflate(&zdata, size - 1).is_err(), "{len}-1");
                }
                assert!(inflate(&zdata, u64::MAX).is_err(), "{len} MAX");
                let mut trailing = zdata.clone();
                trailing.push(0);
                let err = inflate(&trailing, size).unwrap_err();
                assert!(err.contains("stray bytes"), "{len}: {err}");
                assert!(
                    inflate(&zdata[..zdata.len() / 2], size).is_err(),
                    "{len} cut"
                );
                let mut flipped = zdata.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1; // the Adler-32
                assert!(inflate(&flipped, size).is_err(), "{len} adler");
            }
        }
    }

    /// A claimed size is not allocated before the bytes come.
    #[test]
    fn a_huge_claim_over_a_small_stream_fails_without_allocating_it() {
        let zdata = deflate(&[0u8; 1000]);
        let err = inflate_exact(&zdata, 1 << 40).unwrap_err();
        assert!(err.contains("1000 bytes"), "{err}");
    }
}
