//! Restore with file content written on several threads: the result is the
//! same whatever the number of threads, a directory's metadata still comes
//! after its files', and a worker's error stops the restore with its
//! message.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The zoo plus many small files in nested directories, each with its own
/// mtime, so that several workers have files at once.
fn make_tree(dir: &Path) {
    make_zoo(dir);
    for d in 0..12 {
        let sub = dir.join(format!("many/d{d:02}/inner"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..25 {
            let path = sub.join(format!("f{f:02}"));
            fs::write(&path, format!("file {d} {f}\n").repeat(f * 40 + 1)).unwrap();
            set_mtime(&path, 1_600_000_000 + d * 1000 + f as i64);
        }
        set_mtime(&sub, 1_500_000_000 + d);
        set_mtime(sub.parent().unwrap(), 1_400_000_000 + d);
    }
    set_mtime(&dir.join("many"), 1_300_000_000);
}

fn set_mtime(path: &Path, secs: i64) {
    let status = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}.123456789"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "touch {}", path.display());
}

#[test]
fn restore_is_the_same_with_1_2_and_8_threads() {
    let env = Env::init();
    let src = env.path("src");
    make_tree(&src);
    // The zoo's own mtime was set before the extra files were made.
    set_mtime(&src, 1_200_000_000);
    env.save("t", None, &src);
    for threads in ["1", "2", "8"] {
        let out = env.path(&format!("out{threads}"));
        env.rw()
            .args(["restore", "--threads", threads, "-C"])
            .arg(&out)
            .arg(snap_path("t", "latest", &src))
            .run()
            .success();
        let d = compare_with(
            &src,
            &out.join("src"),
            &Compare {
                sparse: true,
                ..Compare::default()
            },
        );
        assert!(d.is_empty(), "--threads {threads}:\n{}", d.join("\n"));
    }
}

#[test]
fn read_only_directory_gets_its_mode_after_its_files_for_a_non_root_user() {
    // Without search permission on a directory, a user other than root
    // cannot reach its entries: if the directory's saved mode (0444) were
    // applied while workers still had files in it, their metadata would
    // fail. Restored as `nobody` from a snapshot of files nobody owns.
    let env = Env::init();
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    let ro = src.join("ro");
    fs::create_dir_all(&ro).unwrap();
    for f in 0..300 {
        let path = ro.join(format!("f{f:03}"));
        fs::write(&path, format!("{f}\n").repeat(f + 1)).unwrap();
        set_mtime(&path, 1_600_000_000 + f as i64);
    }
    chown_tree(&src, 65534);
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
    env.save("t", None, &src);
    chmod_readable(&env.repo);
    let out = env.path("out");
    fs::create_dir(&out).unwrap();
    chown_tree(&out, 65534);

    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(rewind_bin())
        .arg("-d")
        .arg(&env.repo)
        .args(["restore", "--threads", "8", "-C"])
        .arg(&out)
        .arg(with_slash(&snap_path("t", "latest", &src)))
        .env("HOME", &env.home)
        .env_remove("REWIND_CONFIG");
    let result = run(&mut cmd);
    assert_eq!(result.code, 0, "restore as nobody: {}", result.stderr);
    let restored = out.join("ro");
    let mode = fs::metadata(&restored).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o444, "the directory's saved mode");
    for f in 0..300 {
        let path = restored.join(format!("f{f:03}"));
        let meta = fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mtime(), 1_600_000_000 + f as i64, "{}", path.display());
        assert_eq!(
            fs::read(&path).unwrap(),
            format!("{f}\n").repeat(f + 1).as_bytes()
        );
    }
}

#[test]
fn a_full_disk_stops_a_threaded_restore_with_a_one_line_error() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    for f in 0..8 {
        fs::write(src.join(format!("big{f}")), random_bytes(f, 1 << 20)).unwrap();
    }
    env.save("t", None, &src);
    let out = env.path("small");
    fs::create_dir(&out).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&out)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a 2 MiB tmpfs (root needed)");
    let result = env
        .rw()
        .args(["restore", "--threads", "4", "-C"])
        .arg(&out)
        .arg(snap_path("t", "latest", &src))
        .run();
    let unmounted = Command::new("umount").arg(&out).status().expect("umount");
    assert!(unmounted.success());
    let result = result.status(2);
    let line = result.error_line();
    assert!(
        line.contains("cannot write") && line.contains("No space left on device"),
        "{line}"
    );
    assert!(!line.contains("panicked"), "{line}");
}

fn chown_tree(path: &Path, id: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{id}:{id}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn chmod_readable(path: &Path) {
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A file of 24 MiB: random data with zero runs, an aligned hole in the
/// middle, one starting off a block boundary, and a hole at its end, so
/// that parts start and end anywhere relative to blocks and holes.
fn make_big_file(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::File::create(path).unwrap();
    let len: u64 = 24 << 20;
    let mut at = 0u64;
    let mut seed = 7;
    while at < len {
        let n = (3 << 20).min(len - at);
        let mut block = random_bytes(seed, n as usize);
        // A zero run inside the data, not block-aligned.
        let zeros = 100_000.min(block.len() / 2);
        block[12_345..12_345 + zeros].fill(0);
        f.write_all(&block).unwrap();
        at += n;
        seed += 1;
    }
    // Holes: 1 MiB aligned at 8 MiB, 300,001 bytes at 15 MiB + 77, and
    // the last 2 MiB.
    for (start, len) in [
        (8u64 << 20, 1u64 << 20),
        ((15 << 20) + 77, 300_001),
        (22 << 20, 2 << 20),
    ] {
        f.seek(SeekFrom::Start(start)).unwrap();
        f.write_all(&vec![0u8; len as usize]).unwrap();
    }
    drop(f);
    // Re-punch the aligned holes so the source itself is sparse there.
    let status = Command::new("fallocate")
        .args(["--dig-holes"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "fallocate --dig-holes");
    set_mtime(path, 1_650_000_000);
}

#[test]
fn a_large_file_is_written_in_parts_by_several_threads_and_restores_the_same() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    make_big_file(&src.join("disk.img"));
    write_random(&src.join("small"), 3, 5000);
    env.save("t", None, &src);
    for threads in ["1", "2", "4"] {
        let out = env.path(&format!("out{threads}"));
        let restored = env
            .rw()
            .args(["-vv", "restore", "--threads", threads, "-C"])
            .arg(&out)
            .arg(snap_path("t", "latest", &src))
            .run()
            .success();
        // Written in parts whenever there is more than one thread.
        let split = restored
            .stderr
            .lines()
            .find(|l| l.contains("disk.img") && l.contains("written in"));
        match (threads, split) {
            ("1", None) => {}
            ("1", Some(line)) => panic!("one thread split the file: {line}"),
            (_, None) => panic!(
                "--threads {threads}: the file was not split:\n{}",
                restored.stderr
            ),
            (_, Some(line)) => {
                let parts: usize = line
                    .split(" written in ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no part count in {line:?}"));
                assert!(parts > 2, "{line}");
            }
        }
        let d = compare_with(&src, &out.join("src"), &Compare::default());
        assert!(d.is_empty(), "--threads {threads}:\n{}", d.join("\n"));
        assert_eq!(
            fs::read(src.join("disk.img")).unwrap(),
            fs::read(out.join("src/disk.img")).unwrap(),
            "--threads {threads}"
        );
    }
}

#[test]
fn a_damaged_chunk_in_a_part_fails_the_restore_naming_the_file() {
    let env = Env::init();
    env.corrupted.set(true);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("disk.img"), 11, 24 << 20);
    env.save("t", None, &src);
    // The file is nearly all of the one pack: a byte flipped in the middle
    // of the pack is inside one of its chunks.
    let pack = fs::read_dir(env.repo.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .expect("a pack");
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&pack, &bytes).unwrap();
    let out = env.path("out");
    let failed = env
        .rw()
        .args(["restore", "--threads", "2", "-C"])
        .arg(&out)
        .arg(snap_path("t", "latest", &src))
        .run()
        .no_panic();
    assert_ne!(
        failed.code, 0,
        "a damaged chunk restored:\n{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("disk.img"),
        "the error should name the file:\n{}",
        failed.stderr
    );
}
