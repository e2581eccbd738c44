//! Dump sources (`rewind save --from-command CMD --as PATH`): a command's
//! standard output saved as a regular file of the snapshot. Checked from the
//! outside: bytes through `cat-file`, `restore`, `bup restore` and `git`;
//! metadata through `stat` of restored files and `bup ls -l`; and failures
//! by the branch tip and the pack directory, which must not move.

mod common;
use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Single-quoted for `/bin/sh` (test paths have no single quotes).
fn q(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 test path");
    assert!(!s.contains('\''), "{s}");
    format!("'{s}'")
}

fn json(out: &Out) -> Value {
    serde_json::from_str(out.stdout_str().trim())
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {}", out.stdout_str()))
}

fn bytes_added(out: &Out) -> u64 {
    json(out)["bytes_added"].as_u64().expect("bytes_added")
}

fn cat_file(env: &Env, snap: &str, path: &str) -> Vec<u8> {
    env.rw()
        .arg("cat-file")
        .arg(format!("db/{snap}{path}"))
        .run()
        .success()
        .stdout
}

fn tool_output(cmd: &mut Command) -> String {
    run(cmd).success().stdout_str().trim().to_owned()
}

/// A first good snapshot of `db`, for the failure tests to protect.
fn first_snapshot(env: &Env) -> (String, Vec<String>) {
    env.rw()
        .args(["save", "-n", "db", "--date", "1700000000"])
        .args(["--from-command", "echo good", "--as", "/backup/app.sql"])
        .run()
        .success();
    let tip = branch_tip(&env.repo, "db").expect("db saved");
    (tip, pack_dir_listing(&env.repo))
}

#[track_caller]
fn assert_unchanged(env: &Env, tip: &str, packs: &[String], what: &str) {
    assert_eq!(
        branch_tip(&env.repo, "db").as_deref(),
        Some(tip),
        "{what}: the branch moved"
    );
    assert_eq!(
        pack_dir_listing(&env.repo),
        packs,
        "{what}: something was published in objects/pack"
    );
    assert_eq!(
        cat_file(env, "latest", "/backup/app.sql"),
        b"good\n",
        "{what}: latest is no longer the good snapshot"
    );
}

#[test]
fn dump_is_saved_byte_exact_with_dump_metadata() {
    let env = Env::init();
    // Binary output with NULs and no trailing newline, beside a source.
    let mut data = random_bytes(7, 300_000);
    data.extend_from_slice(b"\0tail without newline");
    let data_file = env.path("data.bin");
    write(&data_file, &data);
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("a.txt"), b"hello\n");
    let before = now();
    let out = env
        .rw()
        .args(["save", "-n", "db", "--json"])
        .arg("--from-command")
        .arg(format!("cat {}", q(&data_file)))
        .args(["--as", "/srv/backup/app.sql"])
        .arg(&src)
        .run()
        .success();
    let after = now();
    let v = json(&out);
    assert_eq!(v["dumps"][0]["path"], "/srv/backup/app.sql", "{v}");
    assert_eq!(v["dumps"][0]["bytes"], data.len() as u64, "{v}");
    assert_eq!(v["files"], 2, "{v}");

    assert_eq!(cat_file(&env, "latest", "/srv/backup/app.sql"), data);

    // Restored by rewind: the bytes, mode 0600, our owner, a recent mtime.
    let restored = env.path("restored");
    env.restore(
        &restored,
        &with_slash(&snap_path("db", "latest", Path::new("/"))),
    );
    let file = restored.join("srv/backup/app.sql");
    assert_eq!(fs::read(&file).expect("restored dump"), data);
    let st = fs::symlink_metadata(&file).expect("stat");
    assert!(st.file_type().is_file());
    assert_eq!(st.mode() & 0o7777, 0o600);
    let (uid, gid) = effective_ids();
    assert_eq!((st.uid(), st.gid()), (uid, gid));
    assert!(
        (before..=after).contains(&st.mtime()),
        "mtime {} not within the save ({before}..={after})",
        st.mtime()
    );
    assert_eq!(
        fs::read(restored.join(src.strip_prefix("/").unwrap()).join("a.txt")).expect("source"),
        b"hello\n"
    );

    // rewind's and bup's listings agree on type, mode, owner and size.
    let user = tool_output(Command::new("id").arg("-un"));
    let group = tool_output(Command::new("id").arg("-gn"));
    let want_owner = format!("{user}/{group}");
    let dir = snap_path("db", "latest", Path::new("/srv/backup"));
    for (who, out) in [
        (
            "rewind",
            env.rw().args(["ls", "-l"]).arg(&dir).run().success(),
        ),
        ("bup", run(env.bup().args(["ls", "-l"]).arg(&dir)).success()),
    ] {
        let lines = parse_ls_long(&out.lines());
        assert_eq!(lines.len(), 1, "{who}: {:?}", out.lines());
        let l = &lines[0];
        assert_eq!(
            (
                l.mode.as_str(),
                l.owner.as_str(),
                l.size.as_str(),
                l.name.as_str()
            ),
            (
                "-rw-------",
                want_owner.as_str(),
                data.len().to_string().as_str(),
                "app.sql"
            ),
            "{who} ls -l"
        );
    }

    // bup restores the same bytes.
    let by_bup = env.path("by-bup");
    run(env
        .bup()
        .args(["restore", "-C"])
        .arg(&by_bup)
        .arg(snap_path("db", "latest", Path::new("/srv/backup/app.sql"))))
    .success();
    assert_eq!(
        fs::read(by_bup.join("app.sql")).expect("bup restored"),
        data
    );
}

#[test]
fn big_dump_is_chunked_and_deduplicated_by_the_next_save() {
    let env = Env::init();
    let data_file = env.path("data.bin");
    let len = 40 << 20;
    write_random(&data_file, 11, len);
    let save = |date: &str| {
        env.rw()
            .args(["save", "-n", "db", "--json", "--date", date])
            .arg("--from-command")
            .arg(format!("cat {}", q(&data_file)))
            .args(["--as", "/backup/big.sql"])
            .run()
            .success()
    };
    let first = bytes_added(&save("1700000000"));
    assert!(first >= len as u64, "first save added only {first} bytes");

    // A small change in the middle: the second dump shares all but a few
    // chunks with the first.
    let mut data = fs::read(&data_file).expect("read");
    let original = data.clone();
    data[20 << 20..(20 << 20) + 100].fill(b'x');
    write(&data_file, &data);
    let second = bytes_added(&save("1700000100"));
    assert!(
        second < 1 << 20,
        "the second save of a 40 MiB dump with 100 changed bytes added {second} bytes"
    );

    let snap1 = utc_snapshot_name(1_700_000_000);
    let snap2 = utc_snapshot_name(1_700_000_100);
    assert!(cat_file(&env, &snap1, "/backup/big.sql") == original);
    assert!(cat_file(&env, &snap2, "/backup/big.sql") == data);
    // Stored as a chunk tree, as bup stores big files.
    let listing = tool_output(env.git().args(["ls-tree", "db:backup"]));
    assert!(
        listing.contains("040000 tree") && listing.contains("\tbig.sql.bup"),
        "{listing}"
    );
}

#[test]
fn failed_dumps_leave_the_previous_snapshot_latest() {
    let env = Env::init();
    let (tip, packs) = first_snapshot(&env);
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("f"), b"some file\n");
    let big = env.path("big.bin");
    write_random(&big, 3, 5 << 20);
    let cases = [
        (
            "echo partial; echo 'it broke' >&2; exit 3".to_owned(),
            "it exited with status 3",
            "it broke",
        ),
        (
            "echo partial; echo 'about to die' >&2; kill -9 $$".to_owned(),
            "it was killed by signal 9",
            "about to die",
        ),
        (
            "echo 'nothing to say' >&2".to_owned(),
            "it wrote nothing to standard output",
            "nothing to say",
        ),
        // Megabytes stored before the failure: still nothing published.
        (
            format!("cat {}; echo 'late failure' >&2; exit 1", q(&big)),
            "it exited with status 1",
            "late failure",
        ),
        // A flood on stderr neither blocks the dump nor grows without bound:
        // the message keeps the end.
        (
            "seq 1 300000 >&2; echo out; exit 2".to_owned(),
            "it exited with status 2",
            "[... earlier output cut]",
        ),
        // Standard input is /dev/null, not rewind's (which has data here).
        ("cat".to_owned(), "it wrote nothing to standard output", ""),
    ];
    for (command, why, stderr) in cases {
        let mut cmd = env
            .rw()
            .args(["save", "-n", "db", "--from-command", &command])
            .args(["--as", "/backup/app.sql"])
            .arg(&src)
            .command();
        let out = run_with_input(&mut cmd, Some(b"not for the dump\n"))
            .no_panic()
            .status(2)
            .stderr_contains(&format!("dump `{command}` for /backup/app.sql failed"))
            .stderr_contains(why)
            .stderr_contains("no snapshot was made")
            .stderr_contains(stderr);
        assert!(out.stdout.is_empty());
        // At most the 64 KiB tail of the command's stderr is repeated (each
        // line indented by four spaces in the message), and the cut marker.
        let repeated: usize = out
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .map(|l| l.len() + 1)
            .sum();
        assert!(
            repeated <= (64 << 10) + 64,
            "{repeated} bytes of stderr repeated"
        );
        if command.starts_with("seq") {
            assert!(out.stderr.trim_end().ends_with("300000"), "{}", out.stderr);
        }
        assert_unchanged(&env, &tip, &packs, &command);
    }

    // The second of two dumps fails: the first one's output is not
    // committed either.
    env.rw()
        .args(["save", "-n", "db"])
        .args(["--from-command", "echo fine", "--as", "/backup/other.sql"])
        .args(["--from-command", "exit 4", "--as", "/backup/app.sql"])
        .run()
        .status(2)
        .stderr_contains("dump `exit 4` for /backup/app.sql failed: it exited with status 4");
    assert_unchanged(&env, &tip, &packs, "second dump failing");
    let snaps = snapshot_names(&env.rw().args(["ls", "db"]).run().success().lines());
    assert_eq!(snaps, [utc_snapshot_name(1_700_000_000)]);
}

#[test]
fn bad_dump_flags_are_refused_before_anything_runs() {
    let env = Env::init();
    let (tip, packs) = first_snapshot(&env);
    let src = env.path("src");
    mkdir(&src.join("inner"));
    write(&src.join("file.txt"), b"x\n");
    let marker = env.path("ran");
    let cmd = format!("touch {}; echo dumped", q(&marker));
    let src_s = src.to_str().unwrap().to_owned();
    let inner = format!("{src_s}/inner/app.sql");
    let file = format!("{src_s}/file.txt");
    let file_dir = format!("{src_s}/file.txt/app.sql");
    let inner_dir = format!("{src_s}/inner");
    let c = cmd.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--from-command", c], "go in pairs"),
        (vec!["--as", "/backup/x", &src_s], "go in pairs"),
        (
            vec!["--from-command", c, "--as", "/a", "--from-command", c],
            "but 2 --from-command and 1 --as",
        ),
        (vec![], "PATH"),
        (
            vec!["--from-command", c, "--as", "backup/x"],
            "must be an absolute path",
        ),
        (vec!["--from-command", c, "--as", "/"], "not the root"),
        (vec!["--from-command", c, "--as", "/a/../b"], "'..'"),
        (
            vec!["--from-command", c, "--as", &inner, &src_s],
            "inside the saved directory",
        ),
        (
            vec!["--from-command", c, "--as", &file, &file],
            "the saved file",
        ),
        (
            vec!["--from-command", c, "--as", &file_dir, &file],
            "where the dump needs a directory",
        ),
        (
            vec!["--from-command", c, "--as", &src_s, &inner_dir],
            "need",
        ),
        (
            vec![
                "--from-command",
                c,
                "--as",
                "/d/x",
                "--from-command",
                c,
                "--as",
                "/d/x",
            ],
            "same path",
        ),
        (
            vec![
                "--from-command",
                c,
                "--as",
                "/d",
                "--from-command",
                c,
                "--as",
                "/d/x",
            ],
            "a directory holding the other",
        ),
    ];
    for (args, message) in cases {
        env.rw()
            .args(["save", "-n", "db"])
            .args(&args)
            .run()
            .status(2)
            .stderr_contains(message);
        assert!(!marker.exists(), "{args:?}: the command ran");
        assert_unchanged(&env, &tip, &packs, &format!("{args:?}"));
    }
}

#[test]
fn dump_beside_a_source_in_a_real_directory_is_read_on_every_save() {
    let env = Env::init();
    let top = env.path("top");
    let etc = top.join("etc");
    mkdir(&etc);
    write(&etc.join("conf"), b"setting=1\n");
    let feed = env.path("feed");
    write(&feed, b"version 1\n");
    let as_path = top.join("db.sql");
    let save = |date: &str| {
        env.rw()
            .args(["save", "-n", "db", "--date", date])
            .arg("--from-command")
            .arg(format!("cat {}", q(&feed)))
            .arg("--as")
            .arg(&as_path)
            .arg(&etc)
            .run()
            .success()
    };
    save("1700000000");
    // Same size, and a dump has no stat for the change index to trust:
    // the second save must read the command's new output.
    write(&feed, b"version 2\n");
    save("1700000100");
    let path = as_path.to_str().unwrap();
    assert_eq!(
        cat_file(&env, &utc_snapshot_name(1_700_000_000), path),
        b"version 1\n"
    );
    assert_eq!(cat_file(&env, "latest", path), b"version 2\n");
    // The dump sits beside the saved directory, whose parent keeps its
    // real metadata.
    let listing = env
        .rw()
        .args(["ls", "-l"])
        .arg(snap_path("db", "latest", &top))
        .run()
        .success();
    let names: Vec<String> = parse_ls_long(&listing.lines())
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["db.sql", "etc"], "{:?}", listing.lines());
    let restored: PathBuf = env.path("restored");
    env.restore(&restored, &snap_path("db", "latest", &top));
    assert_eq!(
        fs::read(restored.join("top/etc/conf")).expect("conf"),
        b"setting=1\n"
    );
    assert_eq!(
        fs::read(restored.join("top/db.sql")).expect("dump"),
        b"version 2\n"
    );
    assert_eq!(
        fs::metadata(restored.join("top")).expect("top").mode() & 0o7777,
        fs::metadata(&top).expect("live top").mode() & 0o7777
    );
}
