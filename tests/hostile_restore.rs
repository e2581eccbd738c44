//! Restore stays inside its target whatever the repository holds (issue 11).
//!
//! Each test writes a hostile snapshot by hand: git objects written with
//! `git hash-object --literally`, which stores a tree body as given, without
//! the checks `git mktree` makes, then a commit and a branch pointing at it.
//! The real `rewind restore` then runs against it, and everything outside
//! the output directory (sentinels beside it, above it, and a directory
//! that symlinks in the snapshot point at) must be byte for byte as before.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

const BLOB: &str = "100644";
const TREE: &str = "40000";
const LINK: &str = "120000";

/// A repository with hand-made snapshots, and a place to restore them.
struct Hostile {
    env: Env,
    /// Holds `out` (the restore target) and the sentinels beside it.
    area: PathBuf,
    out: PathBuf,
    /// Where hostile symlinks point; must stay empty.
    outside: PathBuf,
}

impl Hostile {
    fn new() -> Hostile {
        let env = Env::init();
        // git fsck rightly rejects these repositories.
        env.corrupted.set(true);
        let area = env.path("area");
        let out = area.join("out");
        let outside = env.path("outside");
        mkdir(&area);
        mkdir(&out);
        mkdir(&outside);
        write(&area.join("beside"), b"sentinel beside the target\n");
        write(&area.join("x"), b"sentinel named x\n");
        write(&env.path("above"), b"sentinel above the target\n");
        write(&outside.join("kept"), b"sentinel in the symlinks' target\n");
        Hostile {
            env,
            area,
            out,
            outside,
        }
    }

    fn write_object(&self, kind: &str, body: &[u8]) -> String {
        let mut child = self
            .env
            .git()
            .args(["hash-object", "--literally", "-w", "--stdin", "-t", kind])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn git hash-object");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body)
            .expect("write to git hash-object");
        let output = child.wait_with_output().expect("git hash-object");
        assert!(output.status.success(), "git hash-object -t {kind} failed");
        String::from_utf8(output.stdout)
            .expect("hex id")
            .trim()
            .to_string()
    }

    fn blob(&self, data: &[u8]) -> String {
        self.write_object("blob", data)
    }

    /// A tree holding exactly these entries, in this order, names unchecked.
    fn tree(&self, entries: &[(&str, &[u8], &str)]) -> String {
        let mut body = Vec::new();
        for (mode, name, id) in entries {
            body.extend_from_slice(mode.as_bytes());
            body.push(b' ');
            body.extend_from_slice(name);
            body.push(0);
            body.extend_from_slice(&hex_bytes(id));
        }
        self.write_object("tree", &body)
    }

    /// Makes `tree` the one snapshot of the backup `hostile`.
    fn snapshot(&self, tree: &str) {
        let commit = self.write_object(
            "commit",
            format!(
                "tree {tree}\nauthor a <a@b> 1700000000 +0000\n\
                 committer a <a@b> 1700000000 +0000\n\nhostile\n"
            )
            .as_bytes(),
        );
        sh(self
            .env
            .git()
            .args(["update-ref", "refs/heads/hostile", &commit]));
    }

    /// Everything outside the target, as it is now.
    fn outside_state(&self) -> BTreeMap<PathBuf, String> {
        let mut state = BTreeMap::new();
        describe(&self.env.root, &self.out, &self.env.repo, &mut state);
        state
    }

    /// `rewind restore --outdir OUT hostile/latest/`, checking that nothing
    /// outside OUT changed whatever the outcome.
    fn restore(&self) -> Out {
        self.restore_path("hostile/latest/")
    }

    fn restore_path(&self, path: &str) -> Out {
        let before = self.outside_state();
        let out = self
            .env
            .rw()
            .arg("restore")
            .arg("--outdir")
            .arg(&self.out)
            .arg(path)
            .run();
        let after = self.outside_state();
        assert_eq!(
            before, after,
            "restore changed files outside its target\nstderr:\n{}",
            out.stderr
        );
        assert!(
            self.area.join("beside").exists() && self.env.path("above").exists(),
            "sentinels gone"
        );
        out
    }

    /// Names in the target, recursively, as `a`, `a/b`, with `-> target`
    /// for symlinks.
    fn restored(&self) -> Vec<String> {
        let mut state = BTreeMap::new();
        describe(
            &self.out,
            Path::new("/nonexistent"),
            Path::new("/"),
            &mut state,
        );
        state
            .into_iter()
            .map(|(p, what)| {
                let rel = p.strip_prefix(&self.out).expect("below out");
                format!("{} {what}", rel.display())
            })
            .collect()
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Records type, mode, content or target of everything under `dir` except
/// `skip` and `skip_too` (the target and the repository), without following
/// symlinks.
fn describe(dir: &Path, skip: &Path, skip_too: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    names.sort();
    for path in names {
        if path == skip || path == skip_too {
            continue;
        }
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let what = if meta.file_type().is_symlink() {
            format!("-> {}", fs::read_link(&path).expect("readlink").display())
        } else if meta.is_dir() {
            describe(&path, skip, skip_too, out);
            format!("dir {:o}", meta.mode() & 0o7777)
        } else {
            let data = fs::read(&path).expect("read");
            format!("file {:o} {}", meta.mode() & 0o7777, data.escape_ascii())
        };
        out.insert(path, what);
    }
}

/// A snapshot of `entries` plus an ordinary file `good`, restored: `good`
/// must arrive, the hostile entries must not, the run is partial (exit 1)
/// and says which entry it left out.
fn assert_left_out(h: &Hostile, entries: &[(&str, &[u8], &str)], stored: &str) {
    let good = h.blob(b"good\n");
    let mut all = entries.to_vec();
    all.push((BLOB, b"good", &good));
    h.snapshot(&h.tree(&all));
    let out = h.restore().status(1);
    assert!(
        out.stderr.contains(&format!("entry \"{stored}\" left out")),
        "no warning naming {stored}:\n{}",
        out.stderr
    );
    assert_eq!(
        fs::read(h.out.join("good")).expect("good restored"),
        b"good\n"
    );
    // The listing says the same, with the same exit status.
    let ls = h.env.rw().args(["ls", "hostile/latest/"]).run().status(1);
    assert!(ls.lines().contains(&"good".to_string()), "{:?}", ls.lines());
    assert!(ls.stderr.contains("left out"), "{}", ls.stderr);
}

#[test]
fn restore_of_a_file_named_dotdot_does_not_empty_the_parent_of_outdir() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    assert_left_out(&h, &[(BLOB, b"..", &evil)], "..");
    assert_eq!(h.restored(), ["good file 644 good\\n"]);
}

#[test]
fn restore_of_a_directory_named_dotdot_does_not_write_beside_outdir() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let sub = h.tree(&[(BLOB, b"beside", &evil), (BLOB, b"pwned", &evil)]);
    assert_left_out(&h, &[(TREE, b"..", &sub)], "..");
    assert!(!h.area.join("pwned").exists());
}

#[test]
fn restore_of_a_name_with_dotdot_slash_does_not_write_beside_outdir() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    assert_left_out(&h, &[(BLOB, b"../x", &evil)], "../x");
}

#[test]
fn restore_of_an_absolute_name_does_not_write_there() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let target = h.outside.join("kept");
    let name = target.as_os_str().as_bytes().to_vec();
    assert_left_out(&h, &[(BLOB, &name, &evil)], &String::from_utf8_lossy(&name));
}

#[test]
fn restore_of_a_name_with_a_slash_does_not_write_through_a_restored_symlink() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let target = h.blob(h.outside.as_os_str().as_bytes());
    // `a` -> outside, then `a/kept`: written through the symlink before.
    assert_left_out(
        &h,
        &[(LINK, b"a", &target), (BLOB, b"a/kept", &evil)],
        "a/kept",
    );
    assert_eq!(
        fs::read_link(h.out.join("a")).expect("symlink a restored"),
        h.outside
    );
}

#[test]
fn restore_of_a_name_demangling_to_dotdot_does_not_empty_the_parent_of_outdir() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    assert_left_out(&h, &[(BLOB, b"...bupl", &evil)], "...bupl");
    assert_eq!(h.restored(), ["good file 644 good\\n"]);
}

#[test]
fn restore_of_a_chunked_file_demangling_to_dotdot_does_not_empty_the_parent_of_outdir() {
    let h = Hostile::new();
    let chunk = h.blob(b"overwritten\n");
    let chunks = h.tree(&[(BLOB, b"0", &chunk)]);
    assert_left_out(&h, &[(TREE, b"...bup", &chunks)], "...bup");
}

#[test]
fn restore_of_a_symlink_and_a_directory_of_one_name_does_not_write_through_the_symlink() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let target = h.blob(h.outside.as_os_str().as_bytes());
    let sub = h.tree(&[(BLOB, b"kept", &evil), (BLOB, b"new", &evil)]);
    // git order: the blob `lnk` sorts before the tree `lnk` (as `lnk/`).
    assert_left_out(&h, &[(LINK, b"lnk", &target), (TREE, b"lnk", &sub)], "lnk");
    assert!(!h.out.join("lnk").exists(), "neither twin is served");
}

#[test]
fn restore_of_a_symlink_and_a_chunked_file_of_one_name_serves_neither() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let target = h.blob(h.outside.join("kept").as_os_str().as_bytes());
    let chunks = h.tree(&[(BLOB, b"0", &evil)]);
    assert_left_out(
        &h,
        &[(LINK, b"lnk", &target), (TREE, b"lnk.bup", &chunks)],
        "lnk.bup",
    );
    assert!(fs::symlink_metadata(h.out.join("lnk")).is_err());
}

#[test]
fn restore_of_a_symlink_and_a_bupl_name_of_one_name_serves_neither() {
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let target = h.blob(h.outside.join("kept").as_os_str().as_bytes());
    assert_left_out(
        &h,
        &[(LINK, b"lnk", &target), (BLOB, b"lnk.bupl", &evil)],
        "lnk.bupl",
    );
}

#[test]
fn restore_of_a_tree_whose_name_holds_a_nul_is_a_clean_error() {
    // A NUL ends a tree entry's name, so "a\0b" leaves a tree whose next
    // entry is garbage: the directory cannot be read at all.
    let h = Hostile::new();
    let evil = h.blob(b"overwritten\n");
    let mut body = b"100644 a\0b\0".to_vec();
    body.extend_from_slice(&hex_bytes(&evil));
    let tree = h.write_object("tree", &body);
    h.snapshot(&tree);
    let out = h.restore().status(2);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(&tree), "{}", out.stderr);
}

#[test]
fn restore_replaces_a_symlink_already_in_outdir_instead_of_following_it() {
    // A symlink planted in the target where the snapshot has a directory
    // (and one where it has a file) is replaced, never written through.
    let h = Hostile::new();
    let data = h.blob(b"restored\n");
    let sub = h.tree(&[(BLOB, b"kept", &data)]);
    h.snapshot(&h.tree(&[(TREE, b"dir", &sub), (BLOB, b"file", &data)]));
    symlink(&h.outside, h.out.join("dir")).expect("plant symlink");
    symlink(h.outside.join("kept"), h.out.join("file")).expect("plant symlink");
    h.restore().success();
    assert_eq!(
        h.restored(),
        [
            "dir dir 755",
            "dir/kept file 644 restored\\n",
            "file file 644 restored\\n"
        ]
    );
}

#[test]
fn restore_of_a_backup_with_an_ordinary_dotted_name_still_works() {
    // Names that merely look like the bad ones are ordinary files.
    let h = Hostile::new();
    let data = h.blob(b"fine\n");
    let sub = h.tree(&[(BLOB, b"...", &data)]);
    h.snapshot(&h.tree(&[
        (BLOB, b"..a", &data),
        (TREE, b".d", &sub),
        (BLOB, b"x.bup.bupl", &data),
    ]));
    h.restore().success();
    assert_eq!(
        h.restored(),
        [
            "..a file 644 fine\\n",
            ".d dir 755",
            ".d/... file 644 fine\\n",
            "x.bup file 644 fine\\n"
        ]
    );
}

#[test]
fn restore_of_a_left_out_entry_keeps_the_metadata_of_the_entries_after_it() {
    // A left-out entry must still take its .bupm record: otherwise every
    // entry after it would be restored with its neighbour's metadata.
    let h = Hostile::new();
    let src = h.env.path("src");
    mkdir(&src);
    write(&src.join("a"), b"a\n");
    write(&src.join("b"), b"b\n");
    chmod(&src.join("a"), 0o604);
    chmod(&src.join("b"), 0o640);
    h.env.save("saved", None, &src);
    let rel = src.strip_prefix("/").expect("absolute");
    let saved = run(h
        .env
        .git()
        .arg("rev-parse")
        .arg(format!("saved:{}", rel.display())))
    .success()
    .stdout_str()
    .trim()
    .to_string();
    let body = run(h.env.git().args(["cat-file", "tree", &saved]))
        .success()
        .stdout;
    let needle = b"100644 a\0";
    let at = body
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("entry a in the saved tree");
    let mut hostile = body[..at].to_vec();
    hostile.extend_from_slice(b"100644 ...bupl\0");
    hostile.extend_from_slice(&body[at + needle.len()..]);
    h.snapshot(&h.write_object("tree", &hostile));
    let out = h.restore().status(1);
    assert!(
        out.stderr.contains("entry \"...bupl\" left out"),
        "{}",
        out.stderr
    );
    let b = fs::symlink_metadata(h.out.join("b")).expect("b restored");
    assert_eq!(b.mode() & 0o7777, 0o640, "b got another entry's metadata");
    assert_eq!(fs::read(h.out.join("b")).expect("read b"), b"b\n");
}

/// A stored symlink target with a NUL byte (no file system can hold one)
/// stopped the whole restore with exit 2; now that one link is left out
/// with a warning naming it, and the rest is restored (exit 1).
#[test]
fn restore_of_a_symlink_whose_target_holds_a_nul_skips_only_that_link() {
    let h = Hostile::new();
    let bad = h.blob(b"/etc\0passwd");
    let file = h.blob(b"kept\n");
    let root = h.tree(&[(LINK, b"a-link", &bad), (BLOB, b"b-file", &file)]);
    h.snapshot(&root);
    let out = h.restore();
    assert_eq!(out.code, 1, "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("a-link: not restored") && out.stderr.contains("NUL"),
        "{}",
        out.stderr
    );
    assert!(fs::symlink_metadata(h.out.join("a-link")).is_err());
    assert_eq!(fs::read(h.out.join("b-file")).expect("b-file"), b"kept\n");
}
