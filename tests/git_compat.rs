//! Repositories written by rewind are plain, healthy git repositories laid
//! out the way bup 0.33 writes them; git itself is the judge.

mod common;
use common::*;
use std::fs;
use std::path::Path;

/// A repository with two saves of the zoo (with a change between) on one
/// branch and a save of its `plain` directory on another.
fn populated() -> (Env, std::path::PathBuf) {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("zoo", None, &zoo);
    write(&zoo.join("added"), b"second save\n");
    env.save("zoo", None, &zoo);
    env.save("other", None, &zoo.join("plain"));
    (env, zoo)
}

#[test]
fn init_creates_a_bare_repository() {
    let env = Env::init();
    let out = run(env.git().args(["rev-parse", "--is-bare-repository"])).success();
    assert_eq!(out.stdout_str().trim(), "true");
    // bup only accepts a directory with objects/pack as a repository.
    assert!(env.repo.join("objects/pack").is_dir());
    // SHA-1 object format, as bup requires.
    let fmt = run(env.git().args(["rev-parse", "--show-object-format"])).success();
    assert_eq!(fmt.stdout_str().trim(), "sha1");
    assert_fsck(&env.repo, false);
}

#[test]
fn fsck_strict_is_clean() {
    let (env, _) = populated();
    assert_fsck(&env.repo, false);
    let refs = run(env.git().args(["for-each-ref", "--format=%(refname)"])).success();
    let mut refs = refs.lines();
    refs.sort();
    assert_eq!(refs, ["refs/heads/other", "refs/heads/zoo"]);
}

#[test]
fn clone_and_checkout_work_without_warnings() {
    let (env, zoo) = populated();
    let clone = env.path("clone");
    let out = run(git_plain()
        .args(["clone", "--no-hardlinks"])
        .arg(&env.repo)
        .arg(&clone))
    .success();
    let all = format!("{}{}", out.stdout_str(), out.stderr);
    assert!(
        !all.to_lowercase().contains("warning"),
        "git clone warned:\n{all}"
    );
    for branch in ["other", "zoo"] {
        run(git_plain().arg("-C").arg(&clone).args(["checkout", branch])).success();
    }
    // The checked-out tree holds the absolute source path.
    let rel = zoo.strip_prefix("/").unwrap();
    let regular = clone.join(rel).join(zoo::REGULAR);
    assert_eq!(fs::read(&regular).unwrap(), zoo::REGULAR_CONTENT);
    assert_eq!(
        fs::read(clone.join(rel).join("added")).unwrap(),
        b"second save\n"
    );

    // A chunked file is a `name.bup` directory whose leaves, concatenated in
    // byte order of their paths, are the file.
    let chunks = clone.join(rel).join("big.bin.bup");
    assert!(
        chunks.is_dir(),
        "big.bin must be stored chunked as big.bin.bup"
    );
    let mut leaves = Vec::new();
    walk(&chunks, &mut leaves);
    leaves.retain(|p| p.is_file());
    leaves.sort();
    let mut joined = Vec::new();
    for l in &leaves {
        joined.extend_from_slice(&fs::read(l).unwrap());
    }
    assert!(
        joined == fs::read(zoo.join(zoo::BIG)).unwrap(),
        "chunks of big.bin do not reassemble it ({} leaves, {} bytes)",
        leaves.len(),
        joined.len()
    );
}

/// Object directories `objects/XX` that hold loose objects.
fn loose_objects(repo: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir(repo.join("objects")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            for f in fs::read_dir(e.path()).unwrap() {
                v.push(format!(
                    "{name}/{}",
                    f.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    v
}

#[test]
fn objects_are_packed_with_v2_indexes() {
    let (env, _) = populated();
    assert_eq!(loose_objects(&env.repo), Vec::<String>::new());
    let files = pack_dir_listing(&env.repo);
    assert!(!files.is_empty());
    let mut packs = 0;
    for f in &files {
        let (stem, ext) = f.rsplit_once('.').expect("extension");
        assert!(
            ext == "pack" || ext == "idx",
            "unexpected file in objects/pack: {f}"
        );
        assert!(
            stem.starts_with("pack-") && stem.len() == 45,
            "odd name {f}"
        );
        let other = if ext == "pack" { "idx" } else { "pack" };
        assert!(
            files.contains(&format!("{stem}.{other}")),
            "{f} has no .{other}"
        );
        let bytes = fs::read(env.repo.join("objects/pack").join(f)).unwrap();
        if ext == "idx" {
            assert_eq!(&bytes[..8], b"\xfftOc\0\0\0\x02", "{f} is not idx v2");
            let out = run(env
                .git()
                .args(["verify-pack"])
                .arg(env.repo.join("objects/pack").join(f)));
            assert_eq!(out.code, 0, "git verify-pack {f}: {}", out.stderr);
        } else {
            assert_eq!(&bytes[..8], b"PACK\0\0\0\x02", "{f} is not a v2 pack");
            packs += 1;
        }
    }
    assert!(packs >= 1);
    let count = run(env.git().args(["count-objects", "-v"])).success();
    assert!(
        count.lines().iter().any(|l| l == "count: 0")
            && count.lines().iter().any(|l| l == "garbage: 0"),
        "{}",
        count.stdout_str()
    );
}

#[test]
fn commits_have_only_bup_compatible_headers() {
    let (env, _) = populated();
    let all = run(env.git().args(["rev-list", "--all"])).success().lines();
    assert_eq!(all.len(), 3);
    for c in all {
        let raw = run(env.git().args(["cat-file", "commit", &c]))
            .success()
            .stdout;
        let text = String::from_utf8(raw).expect("commit is UTF-8");
        let (head, _msg) = text.split_once("\n\n").expect("blank line after headers");
        let keys: Vec<&str> = head
            .lines()
            .map(|l| l.split_once(' ').expect("header").0)
            .collect();
        let parents = keys.iter().filter(|k| **k == "parent").count();
        assert!(parents <= 1, "{c}: merge commits are not allowed");
        let mut want = vec!["tree"];
        want.extend(std::iter::repeat_n("parent", parents));
        want.extend(["author", "committer"]);
        assert_eq!(keys, want, "{c}:\n{head}");
        for l in head
            .lines()
            .filter(|l| l.starts_with("author ") || l.starts_with("committer "))
        {
            // "NAME <EMAIL> SECONDS +ZZZZ", with a non-empty name and e-mail.
            let (who, rest) = l
                .split_once(' ')
                .unwrap()
                .1
                .split_once(" <")
                .expect("name <");
            let (email, when) = rest.split_once("> ").expect("> ");
            assert!(!who.trim().is_empty() && !email.is_empty(), "{c}: {l}");
            let bad_edge = |s: &str| {
                s.starts_with(|c: char| ".,:;<>\"'".contains(c))
                    || s.ends_with(|c: char| ".,:;<>\"'".contains(c))
            };
            assert!(!bad_edge(who) && !bad_edge(email), "{c}: bup rejects {l}");
            let (secs, tz) = when.split_once(' ').expect("time zone");
            assert!(secs.parse::<u64>().is_ok(), "{c}: time {secs}");
            assert!(
                tz.len() == 5 && (tz.starts_with('+') || tz.starts_with('-')),
                "{c}: zone {tz}"
            );
        }
        let author = head.lines().find(|l| l.starts_with("author ")).unwrap();
        let committer = head.lines().find(|l| l.starts_with("committer ")).unwrap();
        assert_eq!(
            &author[7..],
            &committer[10..],
            "{c}: author and committer differ"
        );
    }
}

#[test]
fn author_times_strictly_increase_per_branch() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    // Back-to-back saves (same second) and saves with one fixed date.
    for i in 0..4 {
        write(&src.join("gen"), format!("{i}").as_bytes());
        env.save("fast", None, &src);
        env.save("fixed", Some("1401210344"), &src);
    }
    for branch in ["fast", "fixed"] {
        let out = run(env.git().args(["log", "--reverse", "--format=%at", branch])).success();
        let times: Vec<i64> = out.lines().iter().map(|l| l.parse().unwrap()).collect();
        assert_eq!(times.len(), 4, "{branch}");
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "{branch}: author times not strictly increasing: {times:?}"
        );
    }
    let first = run(env
        .git()
        .args(["log", "--reverse", "--format=%at", "fixed"]))
    .success();
    assert_eq!(first.lines()[0], "1401210344");
    assert_fsck(&env.repo, false);
}

/// `git ls-tree` entries of a tree-ish: (mode, type, name).
fn ls_tree(env: &Env, treeish: &str) -> Vec<(String, String, Vec<u8>)> {
    let out = run(env.git().args(["ls-tree", "-z", treeish])).success();
    out.stdout
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let tab = e.iter().position(|&b| b == b'\t').unwrap();
            let meta = String::from_utf8(e[..tab].to_vec()).unwrap();
            let mut f = meta.split(' ');
            (
                f.next().unwrap().to_owned(),
                f.next().unwrap().to_owned(),
                e[tab + 1..].to_vec(),
            )
        })
        .collect()
}

#[test]
fn tree_layout_follows_bup() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("z", None, &zoo);
    let rel = zoo.strip_prefix("/").unwrap().to_str().unwrap().to_owned();

    // Every directory level, from the root down, has a .bupm.
    let mut prefix = String::new();
    for comp in std::iter::once("").chain(rel.split('/')) {
        if !comp.is_empty() {
            prefix.push_str(comp);
            prefix.push('/');
        }
        let entries = ls_tree(&env, &format!("z:{prefix}"));
        assert!(
            entries.iter().any(|e| e.2 == b".bupm"),
            "no .bupm in /{prefix}"
        );
    }

    let names = ls_tree(&env, &format!("z:{rel}/names"));
    let find = |n: &[u8]| {
        names
            .iter()
            .find(|e| e.2 == n)
            .map(|e| (e.0.as_str(), e.1.as_str()))
    };
    // Mangling of names that look like bup's own suffixes.
    assert_eq!(find(b"x.bup.bupl"), Some(("100644", "blob")), "x.bup");
    assert_eq!(find(b"x.bupl.bupl"), Some(("100644", "blob")), "x.bupl");
    assert_eq!(find(b"x.bupm.bupl"), Some(("100644", "blob")), "x.bupm");
    assert_eq!(find(b".bupm.bupl"), Some(("100644", "blob")), ".bupm file");
    assert_eq!(
        find(b"x.bup.bupl.bupl"),
        Some(("100644", "blob")),
        "x.bup.bupl"
    );
    assert_eq!(find(b"d.bup.bupl"), Some(("040000", "tree")), "dir d.bup");
    assert_eq!(find(b"e.bupm.bupl"), Some(("040000", "tree")), "dir e.bupm");
    // 100 kB: chunked or not is the chunker's choice, mangled either way.
    let chunky = (find(b"chunky.bup.bup"), find(b"chunky.bup.bupl"));
    assert!(
        matches!(
            chunky,
            (Some(("040000", "tree")), None) | (None, Some(("100644", "blob")))
        ),
        "chunky.bup stored as {chunky:?}"
    );
    assert_eq!(find(b"chunky.bup"), None, "unmangled chunky.bup");
    assert_eq!(find(b"with space"), Some(("100644", "blob")));
    assert_eq!(find(b"x.bup"), None, "unmangled x.bup");

    let top = ls_tree(&env, &format!("z:{rel}"));
    let find = |n: &[u8]| {
        top.iter()
            .find(|e| e.2 == n)
            .map(|e| (e.0.as_str(), e.1.as_str()))
    };
    assert_eq!(
        find(b"big.bin.bup"),
        Some(("040000", "tree")),
        "chunked big.bin"
    );
    assert_eq!(find(b"regular.txt"), Some(("100644", "blob")));
    assert_eq!(find(b"empty"), Some(("100644", "blob")));

    // Symlinks are 120000 blobs holding the target; specials are empty blobs.
    let links = ls_tree(&env, &format!("z:{rel}/links"));
    let rel_link = links.iter().find(|e| e.2 == b"rel").unwrap();
    assert_eq!(rel_link.0, "120000");
    let target = run(env
        .git()
        .args(["cat-file", "blob", &format!("z:{rel}/links/rel")]))
    .success();
    assert_eq!(target.stdout, b"../regular.txt");
    for e in ls_tree(&env, &format!("z:{rel}/special")) {
        if e.2 != b".bupm" {
            let id = run(env.git().args([
                "rev-parse",
                &format!("z:{rel}/special/{}", String::from_utf8_lossy(&e.2)),
            ]))
            .success();
            assert_eq!(
                id.stdout_str().trim(),
                "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391",
                "special file {:?} must be the empty blob",
                String::from_utf8_lossy(&e.2)
            );
        }
    }
    // An empty directory is a tree holding only its .bupm.
    let empty = ls_tree(&env, &format!("z:{rel}/dirs/empty"));
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].2, b".bupm");

    // Only modes git and bup know.
    let all = run(env.git().args(["ls-tree", "-r", "-t", "z"])).success();
    for l in all.lines() {
        let mode = l.split(' ').next().unwrap();
        assert!(
            ["100644", "100755", "120000", "040000"].contains(&mode),
            "unexpected mode: {l}"
        );
    }
}
