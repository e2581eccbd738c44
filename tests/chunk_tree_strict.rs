//! Every reader of a chunked file (`rewind cat-file`, `rewind restore`, a
//! read through `rewind mount`) accepts exactly the same chunk trees: on a
//! damaged or hostile one they all fail with the same one-line error (exit
//! 2, EIO through the mount), on a valid one written by rewind or by bup
//! they all give the file's bytes.
//!
//! Hostile trees are built here with the library's own tree and commit
//! encoders and pack writer, one branch per case, each snapshot holding one
//! file `f` (no `.bupm`, so every reader takes the size from the tree).

mod common;

use common::*;
use rewind::object::commit::{self, Commit, Signature};
use rewind::object::tree::{self, Entry, Mode};
use rewind::object::{Kind, ObjectId};
use rewind::pack::PackWriter;
use rewind::repo::Repository;
use std::fs;
use std::path::Path;

/// Objects of one hostile snapshot, written as they are made.
struct Builder<'w> {
    w: &'w mut PackWriter,
}

impl Builder<'_> {
    fn blob(&mut self, data: &[u8]) -> ObjectId {
        self.w.write(Kind::Blob, data).expect("write blob")
    }

    /// A blob of `len` bytes, different for each `seed`.
    fn chunk(&mut self, seed: u64, len: usize) -> ObjectId {
        self.blob(&random_bytes(seed, len))
    }

    /// A tree of exactly these entries, in this order (git order is not
    /// imposed, so that unsorted trees can be made).
    fn raw_tree(&mut self, entries: &[(Mode, &str, ObjectId)]) -> ObjectId {
        let mut body = Vec::new();
        for (mode, name, id) in entries {
            body.extend_from_slice(&tree::encode(&mut [Entry {
                mode: *mode,
                name: name.as_bytes().to_vec(),
                id: *id,
            }]));
        }
        self.w.write(Kind::Tree, &body).expect("write tree")
    }

    /// A snapshot whose root holds chunk tree `file` as `f`, on branch `name`.
    fn snapshot(&mut self, repo_branch: &str, file: ObjectId) -> ObjectId {
        let root = self.raw_tree(&[(Mode::Tree, "f.bup", file)]);
        let sig = Signature {
            name: b"t".to_vec(),
            email: b"t@example.com".to_vec(),
            time: 1_700_000_000,
            utc_offset_minutes: 0,
        };
        let body = commit::encode(&Commit {
            tree: root,
            parents: Vec::new(),
            author: sig.clone(),
            committer: sig,
            message: format!("{repo_branch}\n").into_bytes(),
        });
        self.w.write(Kind::Commit, &body).expect("write commit")
    }
}

/// One hostile chunk tree and the error every reader must give for it.
struct Case {
    branch: &'static str,
    /// The tree the error names, and what it says after "chunk tree ".
    tree: ObjectId,
    detail: String,
}

impl Case {
    fn message(&self) -> String {
        format!(
            "object {} is malformed: chunk tree {}",
            self.tree, self.detail
        )
    }
}

/// Builds every hostile case into `repo`; returns them with their commits.
fn hostile(repo: &Repository) -> Vec<(Case, ObjectId)> {
    let mut w = repo.pack_writer().expect("pack writer");
    let mut b = Builder { w: &mut w };
    let mut cases = Vec::new();
    let mut add = |b: &mut Builder, branch: &'static str, file, tree, detail: String| {
        let commit = b.snapshot(branch, file);
        cases.push((
            Case {
                branch,
                tree,
                detail,
            },
            commit,
        ));
    };
    let (a, c16, d16) = (b.chunk(1, 16), b.chunk(2, 16), b.chunk(3, 16));

    // Names out of order: the stream used to concatenate in tree order.
    let t = b.raw_tree(&[
        (Mode::Blob, "00", a),
        (Mode::Blob, "20", c16),
        (Mode::Blob, "10", d16),
    ]);
    add(
        &mut b,
        "out-of-order",
        t,
        t,
        "entry \"10\" does not come after \"20\"".into(),
    );

    // A gap: the first blob is shorter than its offsets say.
    let t = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "20", c16)]);
    add(
        &mut b,
        "gap",
        t,
        t,
        "entry \"00\" is a blob of 16 bytes, but its offsets leave 32".into(),
    );

    // An overlap: the first blob is longer than its offsets say.
    let t = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "08", c16)]);
    add(
        &mut b,
        "overlap",
        t,
        t,
        "entry \"00\" is a blob of 16 bytes, but its offsets leave 8".into(),
    );

    // Names that are not what bup writes.
    let t = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "zz", c16)]);
    add(
        &mut b,
        "non-hex",
        t,
        t,
        "entry \"zz\" is not an offset of 1 to 16 lowercase hex digits".into(),
    );
    let (x26, x6) = (b.chunk(4, 0x1a), b.chunk(5, 6));
    let t = b.raw_tree(&[(Mode::Blob, "00", x26), (Mode::Blob, "1A", x6)]);
    add(
        &mut b,
        "uppercase",
        t,
        t,
        "entry \"1A\" is not an offset of 1 to 16 lowercase hex digits".into(),
    );
    let t = b.raw_tree(&[(Mode::Blob, "000", a), (Mode::Blob, "010", c16)]);
    add(
        &mut b,
        "too-wide",
        t,
        t,
        "names are 3 hex digits wide, but a tree of 0x20 bytes has names 2 wide".into(),
    );

    // An offset that overflows u64 once added up (the last path is where
    // sizes are summed; content_size used to wrap or turn it into 0).
    let sub = b.raw_tree(&[(Mode::Blob, "00", d16)]);
    let t = b.raw_tree(&[
        (Mode::Blob, "0000000000000000", a),
        (Mode::Tree, "ffffffffffffffff", sub),
    ]);
    add(
        &mut b,
        "overflow",
        t,
        t,
        "entry \"ffffffffffffffff\" makes the file larger than 2^64 bytes".into(),
    );

    // Subtrees whose size disagrees with the range their parent gives them.
    let x32 = b.chunk(6, 32);
    let long = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "10", x32)]);
    let t = b.raw_tree(&[(Mode::Tree, "00", long), (Mode::Blob, "20", c16)]);
    add(
        &mut b,
        "subtree-longer",
        t,
        long,
        "entry \"10\" is a blob of 32 bytes, but its offsets leave 16".into(),
    );
    let x8 = b.chunk(7, 8);
    let short = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "10", x8)]);
    let t = b.raw_tree(&[(Mode::Tree, "00", short), (Mode::Blob, "20", c16)]);
    add(
        &mut b,
        "subtree-shorter",
        t,
        short,
        "entry \"10\" is a blob of 8 bytes, but its offsets leave 16".into(),
    );
    let past = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "20", c16)]);
    let t = b.raw_tree(&[(Mode::Tree, "00", past), (Mode::Blob, "20", d16)]);
    add(
        &mut b,
        "subtree-past-its-end",
        t,
        past,
        "entry \"20\" starts at or past the end of its tree (0x20 bytes)".into(),
    );

    // Entries that are neither chunks nor chunk trees.
    let t = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Commit, "10", a)]);
    add(
        &mut b,
        "commit-entry",
        t,
        t,
        "entry \"10\" has mode 160000, but chunk trees hold only blobs (100644) and trees (40000)"
            .into(),
    );
    let inner = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "10", c16)]);
    let t = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "10", inner)]);
    add(
        &mut b,
        "tree-as-blob",
        t,
        t,
        format!("entry \"10\" should be a blob, but object {inner} is a tree"),
    );

    // An empty last chunk, and an empty tree.
    let empty = b.blob(b"");
    let t = b.raw_tree(&[(Mode::Blob, "00", a), (Mode::Blob, "10", empty)]);
    add(
        &mut b,
        "empty-last",
        t,
        t,
        "entry \"10\" is an empty blob at the end of the file".into(),
    );
    let t = b.raw_tree(&[]);
    add(&mut b, "no-entries", t, t, "has no entries".into());

    // Absurdly deep: 70 levels of one subtree each.
    let mut t = b.raw_tree(&[(Mode::Blob, "00", a)]);
    let mut chain = vec![t];
    for _ in 0..69 {
        t = b.raw_tree(&[(Mode::Tree, "00", t)]);
        chain.push(t);
    }
    // The top is depth 0; the tree at depth 63 may not descend further.
    let named = chain[chain.len() - 64];
    add(
        &mut b,
        "too-deep",
        t,
        named,
        "entry \"00\" nests chunk trees deeper than 64 levels".into(),
    );

    let commits: Vec<(String, ObjectId)> = cases
        .iter()
        .map(|(c, id)| (c.branch.to_string(), *id))
        .collect();
    w.finish().expect("publish pack");
    for (branch, id) in commits {
        repo.update_ref(&format!("refs/heads/{branch}"), id, None)
            .expect("update ref");
    }
    repo.objects().refresh().expect("refresh");
    cases
}

/// A foreground `rewind mount` of `env`'s repository on `mnt`.
fn mount(env: &Env) -> Mount {
    Mount::at(env.rw().command(), &env.path("mnt")).start()
}

#[test]
fn readers_disagreed_on_chunk_trees_with_bad_names_gaps_or_lengths() {
    let env = Env::init();
    // These trees are damaged on purpose; git fsck would rightly object.
    env.corrupted.set(true);
    let repo = Repository::open(&env.repo).expect("open");
    let cases = hostile(&repo);
    let mount = require_fuse().then(|| mount(&env));
    let mut failures = Vec::new();
    for (case, _) in &cases {
        let want = case.message();
        let path = format!("{}/latest/f", case.branch);

        let cat = env.rw().arg("cat-file").arg(&path).run().status(2);
        let line = cat.error_line();
        if !line.contains(&want) {
            failures.push(format!("{}: cat-file said {line:?}", case.branch));
        }

        let out = env.path(&format!("restore-{}", case.branch));
        let restore = env
            .rw()
            .arg("restore")
            .arg("--outdir")
            .arg(&out)
            .arg(&path)
            .run()
            .status(2);
        let line = restore.error_line();
        if !line.contains(&want) {
            failures.push(format!("{}: restore said {line:?}", case.branch));
        }

        if let Some(m) = &mount {
            match fs::read(m.file(case.branch, "f")) {
                Ok(bytes) => failures.push(format!(
                    "{}: the mount served {} bytes",
                    case.branch,
                    bytes.len()
                )),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
                Err(e) => failures.push(format!("{}: the mount gave {e}", case.branch)),
            }
        }
    }
    if let Some(m) = &mount {
        // The log line is written before the reply: it is there by now.
        let log = m.log_text();
        for (case, _) in &cases {
            if !log.contains(&case.message()) {
                failures.push(format!("{}: not in the mount's log", case.branch));
            }
        }
        assert!(!log.contains("panicked"), "the mount panicked:\n{log}");
        if !failures.is_empty() {
            eprintln!("mount log:\n{log}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// File sizes come from the same checks: `ls -l` used to show a bad name
/// on the last path as offset 0 and wrap sums past 2^64.
#[test]
fn a_bad_offset_is_an_error_not_a_size_of_zero() {
    let env = Env::init();
    env.corrupted.set(true);
    let repo = Repository::open(&env.repo).expect("open");
    let cases = hostile(&repo);
    let on_last_path = [
        "non-hex",
        "uppercase",
        "overflow",
        "too-wide",
        "empty-last",
        "too-deep",
    ];
    for (case, _) in cases
        .iter()
        .filter(|(c, _)| on_last_path.contains(&c.branch))
    {
        let ls = env
            .rw()
            .args(["ls", "-l"])
            .arg(format!("{}/latest", case.branch))
            .run()
            .status(2);
        let line = ls.error_line();
        assert!(line.contains(&case.message()), "{}: {line}", case.branch);
    }
}

/// `cat-file`, `restore` and a mount read of NAME/latest/PATH all give
/// exactly `want`.
#[track_caller]
fn all_readers_give(env: &Env, mount: Option<&Mount>, name: &str, path: &str, want: &[u8]) {
    let snap = format!("{name}/latest/{path}");
    let cat = env.rw().arg("cat-file").arg(&snap).run().success();
    assert!(cat.stdout == want, "cat-file of {snap} differs");
    let out = env.path(&format!("restore-{name}"));
    env.rw()
        .arg("restore")
        .arg("--outdir")
        .arg(&out)
        .arg(&snap)
        .run()
        .success();
    let base = Path::new(path).file_name().expect("file name");
    assert!(
        fs::read(out.join(base)).expect("restored") == want,
        "restore of {snap} differs"
    );
    if let Some(m) = mount {
        let got = fs::read(m.file(name, path)).expect("read through the mount");
        assert!(got == want, "mount read of {snap} differs");
    }
}

#[test]
fn valid_chunk_trees_from_rewind_and_bup_read_the_same_everywhere() {
    let env = Env::new();
    let src = env.path("src");
    mkdir(&src);
    // Several MB of random data: thousands of chunks, trees of more than
    // one level in both tools' shapes (fanout 64 and 16).
    let data = random_bytes(11, 6 << 20);
    write(&src.join("big.bin"), &data);
    run(env.bup().arg("init")).success();
    run(env.bup().arg("index").arg(&src)).success();
    run(env.bup().args(["save", "--strip", "-n", "bup"]).arg(&src)).success();
    // `bup split` writes the same kind of tree on its own; wrap it as a
    // chunked file.
    let split = run(env.bup().args(["split", "-t"]).arg(src.join("big.bin"))).success();
    let split_tree = ObjectId::from_hex(split.stdout_str().trim().as_bytes())
        .expect("bup split -t prints a tree");
    env.rw()
        .args(["save", "--strip", "-n", "rw"])
        .arg(&src)
        .run()
        .success();
    let repo = Repository::open(&env.repo).expect("open");
    let mut w = repo.pack_writer().expect("pack writer");
    let commit = Builder { w: &mut w }.snapshot("split", split_tree);
    w.finish().expect("publish");
    repo.update_ref("refs/heads/split", commit, None)
        .expect("update ref");

    // The fixture exercises nested chunk trees from both writers.
    for (branch, file) in [("bup", "big.bin.bup"), ("rw", "big.bin.bup")] {
        let listing = run(env.git().args(["ls-tree", "-r", "-d", branch])).success();
        let nested = listing
            .lines()
            .into_iter()
            .filter(|l| l.contains(file) && l.contains('/'))
            .count();
        assert!(
            nested > 0,
            "{branch}: no nested chunk trees:\n{}",
            listing.stdout_str()
        );
    }
    let listing = run(env.git().args(["ls-tree", &split_tree.to_string()])).success();
    assert!(
        listing.stdout_str().starts_with("040000 tree"),
        "bup split made no subtrees: {}",
        listing.stdout_str()
    );

    let mount = require_fuse().then(|| mount(&env));
    for name in ["bup", "rw"] {
        all_readers_give(&env, mount.as_ref(), name, "big.bin", &data);
    }
    all_readers_give(&env, mount.as_ref(), "split", "f", &data);
}

/// A file whose `.bupm` size and content disagree: the mount served the
/// recorded size (and failed its read with EIO), while cat-file and restore
/// served the content and exited 0. Now all three give the same error.
#[test]
fn readers_disagreed_when_a_files_metadata_and_content_sizes_differ() {
    let env = Env::init();
    env.corrupted.set(true);
    let src = env.path("src");
    fs::create_dir_all(&src).expect("mkdir src");
    fs::write(src.join("f"), vec![b'x'; 100]).expect("write f");
    env.rw()
        .args(["save", "-n", "real", "--strip"])
        .arg(&src)
        .run()
        .status(0);

    // The same root, with `f` swapped for a 50-byte blob; .bupm still says 100.
    let repo = Repository::open(&env.repo).expect("open");
    let tip = repo.read_ref("refs/heads/real").expect("ref").expect("tip");
    let real = rewind::view::snapshots::read_commit(&repo, &tip).expect("commit");
    let root = repo.objects().read(&real.tree).expect("root tree");
    let mut entries = tree::decode(&root.data).expect("decode root");
    let mut w = repo.pack_writer().expect("pack writer");
    let short = w.write(Kind::Blob, &[b'y'; 50]).expect("blob");
    for e in entries.iter_mut().filter(|e| e.name == b"f") {
        e.id = short;
    }
    let root = w
        .write(Kind::Tree, &tree::encode(&mut entries))
        .expect("tree");
    let body = commit::encode(&Commit {
        tree: root,
        parents: Vec::new(),
        ..real
    });
    let commit = w.write(Kind::Commit, &body).expect("commit");
    w.finish().expect("publish");
    repo.update_ref("refs/heads/sizebad", commit, None)
        .expect("ref");

    let want = format!("object {short} holds 50 bytes, but the file's metadata says 100");
    let cat = env
        .rw()
        .args(["cat-file", "sizebad/latest/f"])
        .run()
        .status(2);
    assert!(cat.error_line().contains(&want), "cat-file: {}", cat.stderr);
    let restore = env
        .rw()
        .arg("restore")
        .arg("--outdir")
        .arg(env.path("out"))
        .arg("sizebad/latest/f")
        .run()
        .status(2);
    assert!(
        restore.error_line().contains(&want),
        "restore: {}",
        restore.stderr
    );
    if require_fuse() {
        let m = mount(&env);
        let err = fs::read(m.file("sizebad", "f")).expect_err("the mount served the file");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert!(m.log_text().contains(&want), "mount log: {}", m.log_text());
        // The undamaged original still reads everywhere.
        assert_eq!(
            fs::read(m.file("real", "f")).expect("read real"),
            vec![b'x'; 100]
        );
    }
}
