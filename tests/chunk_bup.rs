//! bup is the oracle for chunk trees: files chunked by rewind, stored with
//! git's own tools, must come back byte for byte from `bup join`, and git
//! must compute the same object ids and accept the trees under fsck.
//! Skipped (with a message) when `bup` or `git` is not installed, except
//! under CI=true, where that fails (common::require).

mod common;

use rewind::chunk::tree::{ChunkTreeBuilder, FileObject, Shape};
use rewind::chunk::Splitter;
use rewind::object::{hash_object, Kind, ObjectId};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Deterministic pseudo-random bytes (xorshift64*), with a zero run and some
/// repeated text so the file has max-size cuts and duplicate chunks.
fn sample(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    let mut out = Vec::with_capacity(len);
    while out.len() < len / 2 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.extend(std::iter::repeat_n(0u8, len / 4));
    while out.len() < len {
        out.extend_from_slice(b"INSERT INTO t VALUES (1,'same line again');\n");
    }
    out.truncate(len);
    out
}

/// Writes one object with `git hash-object -w` and checks git agrees on its id.
fn git_write(repo: &Path, kind: &str, body: &[u8], expect: ObjectId) {
    let mut child = Command::new("git")
        .args(["hash-object", "-w", "--stdin", "-t", kind])
        .env("GIT_DIR", repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run git hash-object");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("feed git");
    let out = child.wait_with_output().expect("git hash-object");
    assert!(out.status.success(), "git hash-object -t {kind} failed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expect.to_hex(),
        "git computes another id for this {kind}"
    );
}

fn store_and_join(data: &[u8], shape: Shape) {
    if !common::require("bup") || !common::require("git") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let ok = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&repo)
        .status()
        .expect("git init");
    assert!(ok.success());

    let mut builder = ChunkTreeBuilder::with_shape(shape);
    let mut chunks = 0;
    let mut write_tree = |body: &[u8]| -> Result<ObjectId, ()> {
        let id = hash_object(Kind::Tree, body);
        git_write(&repo, "tree", body, id);
        Ok(id)
    };
    Splitter::new()
        .split(data, |chunk: &[u8]| -> Result<(), ()> {
            chunks += 1;
            let id = hash_object(Kind::Blob, chunk);
            // Trees are written bottom-up, so blobs go in before any tree
            // naming them; git hash-object -t tree checks nothing else.
            git_write(&repo, "blob", chunk, id);
            builder.push(id, chunk.len() as u64, &mut write_tree)
        })
        .expect("split");
    let FileObject::Tree(top) = builder.finish(&mut write_tree).expect("finish") else {
        panic!("{chunks} chunks should make a tree");
    };

    let out = Command::new("bup")
        .arg("-d")
        .arg(&repo)
        .args(["join", &top.to_hex()])
        .output()
        .expect("run bup join");
    assert!(
        out.status.success(),
        "bup join failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), data.len(), "bup join length");
    assert!(out.stdout == data, "bup join returned other bytes");

    let fsck = Command::new("git")
        .args(["fsck", "--strict", "--no-dangling"])
        .env("GIT_DIR", &repo)
        .output()
        .expect("git fsck");
    assert!(
        fsck.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn bup_joins_a_multi_level_chunk_tree() {
    store_and_join(&sample(6 << 20), Shape::FROZEN);
}

#[test]
fn bup_joins_a_deep_tree_with_promoted_members() {
    store_and_join(
        &sample(2 << 20),
        Shape {
            fanout_bits: 1,
            max_entries: 3,
        },
    );
}
