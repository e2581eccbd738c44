//! Commit objects in exactly the shape bup 0.33's strict parser accepts:
//! `tree`, `parent`*, `author`, `committer`, a blank line, the message. No
//! other headers (an `encoding` line on a branch tip breaks `bup ls /`).

use super::ObjectId;

/// Who made a commit and when. Times are whole seconds, never negative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: Vec<u8>,
    pub email: Vec<u8>,
    pub time: i64,
    /// Offset from UTC in minutes at `time`, as the saving host saw it.
    pub utc_offset_minutes: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub author: Signature,
    pub committer: Signature,
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommitError {
    #[error("malformed commit: {0}")]
    Malformed(&'static str),
}

/// Characters bup refuses at either end of a name or e-mail.
const UNSAFE_AT_ENDS: &[u8] = b" .,:;<>\"'";

/// Makes `raw` acceptable to bup's commit parser and to git: no `<`, `>` or
/// newlines anywhere, no unsafe character at either end, never empty.
pub fn sanitize_ident(raw: &[u8], fallback: &str) -> Vec<u8> {
    let cleaned: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| b != b'<' && b != b'>' && b != b'\n' && b != 0)
        .collect();
    let start = cleaned.iter().position(|b| !UNSAFE_AT_ENDS.contains(b));
    let end = cleaned.iter().rposition(|b| !UNSAFE_AT_ENDS.contains(b));
    match (start, end) {
        (Some(s), Some(e)) => cleaned[s..=e].to_vec(),
        _ => fallback.as_bytes().to_vec(),
    }
}

fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}{:02}", m / 60, m % 60)
}

fn encode_signature(out: &mut Vec<u8>, header: &str, sig: &Signature) {
    out.extend_from_slice(header.as_bytes());
    out.push(b' ');
    out.extend_from_slice(&sig.name);
    out.extend_from_slice(b" <");
    out.extend_from_slice(&sig.email);
    out.extend_from_slice(b"> ");
    out.extend_from_slice(
        format!("{} {}\n", sig.time, format_offset(sig.utc_offset_minutes)).as_bytes(),
    );
}

pub fn encode(commit: &Commit) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + commit.message.len());
    out.extend_from_slice(format!("tree {}\n", commit.tree).as_bytes());
    for parent in &commit.parents {
        out.extend_from_slice(format!("parent {parent}\n").as_bytes());
    }
    encode_signature(&mut out, "author", &commit.author);
    encode_signature(&mut out, "committer", &commit.committer);
    out.push(b'\n');
    out.extend_from_slice(&commit.message);
    out
}

/// `+hhmm` or `-hhmm`: a sign and exactly four ASCII digits. Checked on
/// bytes, never by slicing the text (a multi-byte character there once
/// split a char boundary and panicked every reader of the branch).
fn parse_offset(tz: &str) -> Option<i32> {
    let &[sign, h1, h2, m1, m2] = tz.as_bytes() else {
        return None;
    };
    let digits = [h1, h2, m1, m2];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let [h1, h2, m1, m2] = digits.map(|d| i32::from(d - b'0'));
    let total = (h1 * 10 + h2) * 60 + m1 * 10 + m2;
    match sign {
        b'+' => Some(total),
        b'-' => Some(-total),
        _ => None,
    }
}

fn parse_signature(value: &[u8]) -> Result<Signature, CommitError> {
    let bad = CommitError::Malformed("bad author or committer line");
    let lt = value.iter().position(|&b| b == b'<').ok_or(bad.clone())?;
    let gt = value.iter().rposition(|&b| b == b'>').ok_or(bad.clone())?;
    if gt < lt {
        return Err(bad);
    }
    let name = value[..lt]
        .strip_suffix(b" ")
        .unwrap_or(&value[..lt])
        .to_vec();
    let email = value[lt + 1..gt].to_vec();
    let rest = std::str::from_utf8(&value[gt + 1..]).map_err(|_| bad.clone())?;
    let mut fields = rest.split_ascii_whitespace();
    let time: i64 = fields
        .next()
        .and_then(|t| t.parse().ok())
        .ok_or(bad.clone())?;
    let utc_offset_minutes = fields.next().and_then(parse_offset).ok_or(bad.clone())?;
    Ok(Signature {
        name,
        email,
        time,
        utc_offset_minutes,
    })
}

/// Parses any well-formed git commit, also ones bup would reject (extra
/// headers such as `encoding`, `gpgsig` with continuation lines): a reader
/// should be more tolerant than a writer.
pub fn decode(body: &[u8]) -> Result<Commit, CommitError> {
    let (mut tree, mut parents, mut author, mut committer) = (None, Vec::new(), None, None);
    let mut pos = 0;
    loop {
        let line_end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + pos)
            .ok_or(CommitError::Malformed("headers not terminated"))?;
        let line = &body[pos..line_end];
        pos = line_end + 1;
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' {
            continue; // continuation of a multi-line header such as gpgsig
        }
        let (key, value) = match line.iter().position(|&b| b == b' ') {
            Some(sp) => (&line[..sp], &line[sp + 1..]),
            None => (line, &b""[..]),
        };
        match key {
            b"tree" => {
                tree = Some(ObjectId::from_hex(value).ok_or(CommitError::Malformed("bad tree id"))?)
            }
            b"parent" => parents
                .push(ObjectId::from_hex(value).ok_or(CommitError::Malformed("bad parent id"))?),
            b"author" => author = Some(parse_signature(value)?),
            b"committer" => committer = Some(parse_signature(value)?),
            _ => {}
        }
    }
    Ok(Commit {
        tree: tree.ok_or(CommitError::Malformed("no tree"))?,
        parents,
        author: author.ok_or(CommitError::Malformed("no author"))?,
        committer: committer.ok_or(CommitError::Malformed("no committer"))?,
        message: body[pos..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{hash_object, Kind};

    /// The commit from BUP-FORMAT.md A.2, written by `bup save --date 1401210344`.
    const BUP_COMMIT: &[u8] = b"tree 55ff5a47e4242967ea6df6be01c76efb22fe3cfc\n\
parent 3b7713ba34cdd7469d1d41d10bf9a142d5f535f8\n\
author root <root@vm> 1401210344 -0400\n\
committer root <root@vm> 1401210344 -0400\n\
\n\
bup save\n";

    #[test]
    fn round_trips_a_bup_commit_byte_for_byte() {
        let commit = decode(BUP_COMMIT).unwrap();
        assert_eq!(commit.author.time, 1401210344);
        assert_eq!(commit.author.utc_offset_minutes, -240);
        assert_eq!(commit.author.email, b"root@vm");
        assert_eq!(commit.parents.len(), 1);
        assert_eq!(encode(&commit), BUP_COMMIT);
    }

    #[test]
    fn tolerates_extra_headers_when_reading() {
        let mut body = BUP_COMMIT.to_vec();
        let at = body.windows(2).position(|w| w == b"\n\n").unwrap() + 1;
        body.splice(
            at..at,
            b"encoding UTF-8\ngpgsig -----BEGIN\n line\n -----END\n"
                .iter()
                .copied(),
        );
        assert_eq!(decode(&body).unwrap().message, b"bup save\n");
    }

    #[test]
    fn rejects_malformed_commits() {
        assert!(decode(b"tree zz\n\n").is_err());
        assert!(decode(b"tree 55ff5a47e4242967ea6df6be01c76efb22fe3cfc\n").is_err());
        assert!(
            decode(b"tree 55ff5a47e4242967ea6df6be01c76efb22fe3cfc\nauthor x 1 +0000\n\n").is_err()
        );
    }

    /// A timezone of five bytes that are not five ASCII characters used
    /// to be sliced at a non-boundary (`tz[1..3]`) and panic.
    #[test]
    fn commit_with_non_ascii_timezone_is_an_error_not_a_panic() {
        let with_tz = |tz: &str| {
            let text = String::from_utf8(BUP_COMMIT.to_vec()).unwrap();
            decode(text.replace("-0400", tz).as_bytes())
        };
        for tz in [
            "+0\u{e9}0",
            "+\u{e9}00",
            "-00\u{e9}",
            "\u{e9}000",
            "+0\u{20ac}",
        ] {
            assert_eq!(
                with_tz(tz),
                Err(CommitError::Malformed("bad author or committer line")),
                "{tz:?}"
            );
        }
        // Signs inside the digits were accepted by `str::parse` as well.
        for tz in [
            "+-100", "++100", "-0-10", "+01+0", " 0100", "x0100", "+010", "+01000",
        ] {
            assert!(with_tz(tz).is_err(), "{tz:?}");
        }
        assert_eq!(with_tz("+0530").unwrap().author.utc_offset_minutes, 330);
        assert_eq!(with_tz("-1200").unwrap().author.utc_offset_minutes, -720);
    }

    /// Every truncation and every single-byte change of a valid commit
    /// decodes or fails; none panics.
    #[test]
    fn damaged_commits_never_panic() {
        for len in 0..BUP_COMMIT.len() {
            let _ = decode(&BUP_COMMIT[..len]);
        }
        for i in 0..BUP_COMMIT.len() {
            for v in [0u8, b' ', b'\n', b'<', b'>', b'-', b'+', 0x80, 0xc3, 0xff] {
                let mut body = BUP_COMMIT.to_vec();
                body[i] = v;
                let _ = decode(&body);
            }
        }
    }

    #[test]
    fn sanitizes_identities_for_bup() {
        assert_eq!(sanitize_ident(b"Jane Doe.", "x"), b"Jane Doe");
        assert_eq!(sanitize_ident(b" <root> ", "x"), b"root");
        assert_eq!(sanitize_ident(b"...", "rewind"), b"rewind");
        assert_eq!(sanitize_ident(b"", "rewind"), b"rewind");
        let _ = hash_object(Kind::Commit, BUP_COMMIT);
    }
}
