//! The namespace (backup names, snapshots, `latest`, tags) asked in-process,
//! without a mount, over repositories written by rewind, by bup 0.33 and by
//! plain git; `bup ls` and `git rev-list` / `git rev-parse` are the judges.

mod common;
use common::*;
use rewind::object::ObjectId;
use rewind::repo::Repository;
use rewind::view::namespace::{self, Direct, Entry, Item};
use rewind::view::NodeType;
use std::path::Path;
use std::process::Command;

/// `bup -d REPO` in this process's time zone (snapshot names are local
/// times, and the namespace runs here).
fn bup_here(env: &Env) -> Command {
    let mut c = env.bup();
    match std::env::var_os("TZ") {
        Some(tz) => c.env("TZ", tz),
        None => c.env_remove("TZ"),
    };
    c
}

/// This process's time zone, for a child that must name snapshots as the
/// namespace does here: without TZ, the system's zone, which glibc reads
/// from /etc/localtime (UTC when there is none) in both processes.
fn here_tz() -> String {
    std::env::var("TZ").unwrap_or_else(|_| ":/etc/localtime".into())
}

/// `bup ls ARGS` lines, in bup's order.
fn bup_ls(env: &Env, args: &[&str]) -> Vec<String> {
    run(bup_here(env).arg("ls").args(args)).success().lines()
}

fn names(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect()
}

fn list(repo: &Repository, path: &str) -> Vec<Entry> {
    let src = Direct::new(repo);
    let item = namespace::resolve(&src, path.as_bytes(), false).expect("resolve");
    namespace::list(&src, &item).expect("list")
}

fn rev_parse(env: &Env, what: &str) -> ObjectId {
    let out = run(env.git().args(["rev-parse", what])).success();
    ObjectId::from_hex(out.stdout_str().trim().as_bytes()).expect("hex id")
}

fn latest_target(repo: &Repository, name: &str) -> (String, ObjectId) {
    let src = Direct::new(repo);
    match namespace::resolve(&src, format!("{name}/latest").as_bytes(), false) {
        Ok(Item::Latest { target, tip, .. }) => (target, tip),
        other => panic!("{name}/latest: {other:?}"),
    }
}

/// bup saves whose `--date`s go back and forth, two in one second: bup
/// lists the snapshots sorted by name (the same second's with -N suffixes,
/// and one older same-second save apart from them without), `latest` is
/// the tip even though it is not the newest date. The namespace lists
/// exactly what `bup ls` does, in its order.
#[test]
fn snapshots_of_out_of_order_dates_list_as_bup_lists_them() {
    let env = Env::new();
    let src = env.path("src");
    mkdir(&src);
    run(env.bup().arg("init")).success();
    let saves = [
        ("x", "1500000000"),
        ("x", "1401210344"),
        ("x", "1500000000"),
        ("x", "1500000000"),
        ("y", "1500000000"),
        ("y", "1401210344"),
    ];
    for (i, (name, date)) in saves.iter().enumerate() {
        write(&src.join("f"), format!("{i}").as_bytes());
        run(env.bup().arg("index").arg(&src)).success();
        run(env
            .bup()
            .args(["save", "-n", name, "--date", date])
            .arg(&src))
        .success();
    }
    let bup = bup_ls(&env, &["x"]);
    let repo = Repository::open(&env.repo).expect("open");
    let ours = list(&repo, "x");
    assert_eq!(names(&ours), bup);
    // The fixture is what it claims: out of order, with both kinds of
    // same-second names.
    let snaps: Vec<&String> = bup.iter().filter(|n| *n != "latest").collect();
    assert_eq!(snaps.len(), 4, "{bup:?}");
    assert!(bup.iter().any(|n| n.ends_with("-1")), "{bup:?}");
    assert_eq!(ours.last().map(|e| e.node_type), Some(NodeType::Symlink));

    // latest names the tip's snapshot, as bup's does, and is dated by it.
    let (target, tip) = latest_target(&repo, "x");
    assert_eq!(tip, rev_parse(&env, "x"));
    let bup_long = bup_ls(&env, &["-l", "x"]);
    let bup_latest = bup_long
        .iter()
        .find(|l| l.contains(" latest -> "))
        .expect("bup latest");
    assert!(
        bup_latest.ends_with(&format!(" -> {target}")),
        "{bup_latest}"
    );
    let latest = ours.last().expect("latest");
    assert_eq!(latest.link.as_deref(), Some(target.as_bytes()));
    let tip_time = run(env.git().args(["log", "-1", "--format=%at", "x"]))
        .success()
        .stdout_str()
        .trim()
        .parse::<i64>()
        .expect("time");
    assert_eq!(latest.time, Some(tip_time));
    assert_eq!(tip_time, 1500000000);
    // Every name reaches a snapshot whose tree is its commit's.
    let src_ns = Direct::new(&repo);
    for e in ours.iter().filter(|e| e.node_type == NodeType::Directory) {
        let name = String::from_utf8_lossy(&e.name);
        let found = namespace::lookup(
            &src_ns,
            &namespace::resolve(&src_ns, b"x", false).expect("x"),
            &e.name,
        )
        .expect("lookup");
        let id = found.id.expect("a snapshot names its commit");
        assert_eq!(e.id, Some(id));
        match found.item {
            Item::Node(node) => assert_eq!(node.id, rev_parse(&env, &format!("{id}^{{tree}}"))),
            other => panic!("{name}: {other:?}"),
        }
    }
    // y's tip is its oldest date: latest names it, as bup's does, though
    // another name sorts after it.
    let y = list(&repo, "y");
    assert_eq!(names(&y), bup_ls(&env, &["y"]));
    let (target, tip) = latest_target(&repo, "y");
    assert_eq!(tip, rev_parse(&env, "y"));
    assert!(target.starts_with("2014-"), "{target}");
    assert_eq!(
        y.last().and_then(|e| e.link.clone()),
        Some(target.clone().into_bytes())
    );
    let bup_long = bup_ls(&env, &["-l", "y"]);
    assert!(
        bup_long
            .iter()
            .any(|l| l.ends_with(&format!(" latest -> {target}"))),
        "{bup_long:?}"
    );
    // `rewind ls` shows the same order.
    assert_eq!(env.ls_names(&here_tz(), "x"), bup);
}

/// rewind's own saves list as bup lists them too (a `--date` before the
/// latest snapshot is moved to one second after it), and the root lists
/// the names with their tips' times.
#[test]
fn rewind_saves_list_as_bup_lists_them() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("f"), b"first");
    env.save("n", Some("1500000000"), &src);
    write(&src.join("f"), b"second");
    env.save("n", Some("1400000000"), &src);
    env.save("m", Some("1600000000"), &src);
    let repo = Repository::open(&env.repo).expect("open");
    let n = list(&repo, "n");
    assert_eq!(names(&n), bup_ls(&env, &["n"]));
    assert_eq!(n.len(), 3);
    assert_eq!(n[2].time, Some(1500000001));
    let root = list(&repo, "");
    assert_eq!(names(&root), ["m", "n"]);
    assert_eq!(bup_ls(&env, &[]), ["m", "n"]);
    assert_eq!(root[0].time, Some(1600000000));
    assert_eq!(root[1].time, Some(1500000001));
    assert!(root.iter().all(|e| e.node_type == NodeType::Directory));
}

/// A plain git repository whose history branches and merges, with
/// committer times that do not follow the history and two author times
/// in one second (c and d, next to each other in rev-list's order).
/// Returns the commit ids by label.
fn merged_history(env: &Env) -> std::collections::HashMap<&'static str, String> {
    run(git_plain().args(["init", "-q", "--bare"]).arg(&env.repo)).success();
    let mut ids: std::collections::HashMap<&'static str, String> = std::collections::HashMap::new();
    // (label, parents, author time, committer time)
    let plan: [(&str, &[&str], i64, i64); 7] = [
        ("a", &[], 1_000_000_000, 1_000_000_000),
        ("b", &["a"], 1_000_000_100, 1_000_000_100),
        ("c", &["a"], 1_000_000_200, 1_000_000_300),
        ("d", &["c"], 1_000_000_200, 1_000_000_050),
        ("e", &["b"], 1_000_000_400, 1_000_000_400),
        ("m", &["e", "d"], 1_000_000_500, 1_000_000_500),
        ("n", &["m", "b"], 1_000_000_600, 1_000_000_600),
    ];
    for (label, parents, at, ct) in plan {
        let blob = run_with_input(
            env.git().args(["hash-object", "-w", "--stdin"]),
            Some(label.as_bytes()),
        )
        .success()
        .stdout_str()
        .trim()
        .to_owned();
        let tree = run_with_input(
            env.git().arg("mktree"),
            Some(format!("100644 blob {blob}\tf\n").as_bytes()),
        )
        .success()
        .stdout_str()
        .trim()
        .to_owned();
        let mut c = env.git();
        c.args(["commit-tree", &tree, "-m", label])
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@h")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@h")
            .env("GIT_AUTHOR_DATE", format!("{at} +0000"))
            .env("GIT_COMMITTER_DATE", format!("{ct} +0000"));
        for p in parents {
            c.args(["-p", ids[p].as_str()]);
        }
        let id = run(&mut c).success().stdout_str().trim().to_owned();
        ids.insert(label, id);
    }
    run(env.git().args(["update-ref", "refs/heads/main", &ids["n"]])).success();
    ids
}

/// bup 0.33 lists every commit reachable from the tip (`git rev-list`),
/// not only first parents; names follow rev-list's order, so same-second
/// commits on two sides of a merge get bup's -N suffixes as bup gives
/// them.
#[test]
fn merges_list_every_reachable_commit_as_bup_does() {
    let env = Env::new();
    let ids = merged_history(&env);
    let repo = Repository::open(&env.repo).expect("open");
    let history =
        rewind::view::snapshots::snapshots(&repo, &rev_parse(&env, "main")).expect("snapshots");
    // Oldest first: rev-list's order reversed.
    let mut want = run(env.git().args(["rev-list", "main"])).success().lines();
    want.reverse();
    let got: Vec<String> = history.iter().map(|s| s.commit.to_hex()).collect();
    assert_eq!(got, want, "rev-list order");
    assert_eq!(got.len(), ids.len());
    let ours = list(&repo, "main");
    assert_eq!(names(&ours), bup_ls(&env, &["main"]));
    assert!(names(&ours).iter().any(|n| n.ends_with("-1")), "{ours:?}");
    let (_, tip) = latest_target(&repo, "main");
    assert_eq!(tip.to_hex(), ids["n"]);

    // The commit cache (written for long histories) keeps every parent:
    // listed again from it, the same; and long merged histories write it.
    let again = rewind::view::snapshots::snapshots(&repo, &tip).expect("again");
    assert_eq!(again, history);
}

/// A long merged history is listed from the commit cache exactly as from
/// the commits.
#[test]
fn merged_history_lists_the_same_from_the_commit_cache() {
    let env = Env::new();
    run(git_plain().args(["init", "-q", "--bare"]).arg(&env.repo)).success();
    // Two lines of 40 commits merged every 10: more than the cache's
    // threshold.
    let mut script = String::from("set -e\n");
    script.push_str("t=$(git mktree </dev/null)\n");
    script.push_str("a=$(GIT_AUTHOR_DATE='1000000000 +0000' GIT_COMMITTER_DATE='1000000000 +0000' git commit-tree $t -m root)\nb=$a\n");
    for i in 1..=40 {
        let at = 1_000_000_000 + i * 10;
        script.push_str(&format!(
            "a=$(GIT_AUTHOR_DATE='{at} +0000' GIT_COMMITTER_DATE='{at} +0000' git commit-tree $t -p $a -m a{i})\n"
        ));
        script.push_str(&format!(
            "b=$(GIT_AUTHOR_DATE='{} +0000' GIT_COMMITTER_DATE='{} +0000' git commit-tree $t -p $b -m b{i})\n",
            at + 3,
            at + 5
        ));
        if i % 10 == 0 {
            script.push_str(&format!(
                "a=$(GIT_AUTHOR_DATE='{0} +0000' GIT_COMMITTER_DATE='{0} +0000' git commit-tree $t -p $a -p $b -m m{i})\n",
                at + 7
            ));
        }
    }
    script.push_str("git update-ref refs/heads/main $a\n");
    run(Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("GIT_DIR", &env.repo)
        .env("GIT_AUTHOR_NAME", "A")
        .env("GIT_AUTHOR_EMAIL", "a@h")
        .env("GIT_COMMITTER_NAME", "A")
        .env("GIT_COMMITTER_EMAIL", "a@h"))
    .success();
    let repo = Repository::open(&env.repo).expect("open");
    let tip = rev_parse(&env, "main");
    let first = rewind::view::snapshots::snapshots(&repo, &tip).expect("list");
    let mut want = run(env.git().args(["rev-list", "main"])).success().lines();
    want.reverse();
    let got: Vec<String> = first.iter().map(|s| s.commit.to_hex()).collect();
    assert_eq!(got, want);
    let cache = env.repo.join("rewind/commits.cache");
    assert!(cache.exists(), "a long history leaves a cache");
    // From the cache alone (no pack can be read): the same.
    let packs = env.repo.join("objects");
    let away = env.path("objects-away");
    std::fs::rename(&packs, &away).expect("move objects");
    std::fs::create_dir_all(packs.join("pack")).expect("mkdir");
    let repo = Repository::open(&env.repo).expect("open");
    let cached = rewind::view::snapshots::snapshots(&repo, &tip);
    std::fs::remove_dir_all(&packs).expect("rm");
    std::fs::rename(&away, &packs).expect("objects back");
    assert_eq!(cached.expect("list from the cache"), first);
}

/// A prune of a merged history keeps every snapshot it decides to keep,
/// also those of the side that is not the first parents' line.
#[test]
fn prune_of_a_merged_history_keeps_what_it_keeps() {
    let env = Env::new();
    let ids = merged_history(&env);
    let before = env.rw().args(["ls", "main"]).run().success().lines();
    env.rw()
        .args(["prune", "--keep-last", "5", "main"])
        .run()
        .success();
    let after = env.rw().args(["ls", "main"]).run().success().lines();
    assert_eq!(after.len(), 6, "{after:?}");
    // The five newest in rev-list's order (n, m, e, b, d): their trees are
    // all still reachable from the branch, d from what was the second
    // parent's side.
    let trees: std::collections::HashSet<String> =
        run(env.git().args(["log", "--format=%T", "main"]))
            .success()
            .lines()
            .into_iter()
            .collect();
    for label in ["n", "m", "e", "b", "d"] {
        let tree = run(env
            .git()
            .args(["rev-parse", &format!("{}^{{tree}}", ids[label])]))
        .success()
        .stdout_str()
        .trim()
        .to_owned();
        assert!(
            trees.contains(&tree),
            "{label} lost: {before:?} -> {after:?}"
        );
    }
    assert_eq!(trees.len(), 5);
    env.dangling_ok.set(true);
}

/// Tags of every kind are peeled to what they point at: a commit or a
/// tree is a directory, a blob a file, through annotated tags and tags of
/// tags. Lightweight tags list as `bup ls -l .tag` lists them (bup 0.33
/// cannot read annotated tags at all).
#[test]
fn tags_are_peeled_and_typed() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("f"), b"tagged file\n");
    env.save("x", Some("1500000000"), &src);
    let rel = src
        .strip_prefix("/")
        .expect("absolute")
        .to_str()
        .expect("utf-8");
    let blob = rev_parse(&env, &format!("x:{rel}/f")).to_hex();
    let git_tag = |args: &[&str]| {
        run(env
            .git()
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@h")
            .arg("tag")
            .args(args))
        .success();
    };
    git_tag(&["light", "x"]);
    git_tag(&["treetag", "x^{tree}"]);
    git_tag(&["blobtag", &blob]);
    let repo = Repository::open(&env.repo).expect("open");
    let kinds = |repo: &Repository| -> Vec<(String, NodeType)> {
        list(repo, ".tag")
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.node_type))
            .collect()
    };
    // bup agrees on names and types (d or -) and sizes.
    let type_and_name = |lines: Vec<String>| -> Vec<(char, String, String)> {
        parse_ls_long(&lines)
            .into_iter()
            .map(|l| {
                let size = if l.mode.starts_with('d') {
                    "-".into()
                } else {
                    l.size
                };
                (l.mode.chars().next().unwrap_or('?'), l.name, size)
            })
            .collect()
    };
    let bup = type_and_name(bup_ls(&env, &["-l", ".tag"]));
    let cli = type_and_name(env.rw().args(["ls", "-l", ".tag"]).run().success().lines());
    assert_eq!(cli, bup);
    assert_eq!(
        kinds(&repo),
        [
            ("blobtag".to_owned(), NodeType::Regular),
            ("light".to_owned(), NodeType::Directory),
            ("treetag".to_owned(), NodeType::Directory),
        ]
    );

    git_tag(&["-a", "-m", "annotated", "ann", "x"]);
    git_tag(&["-a", "-m", "of a tag", "tagoftag", "ann"]);
    git_tag(&["-a", "-m", "a blob", "annblob", &blob]);
    git_tag(&["-a", "-m", "a tree", "anntree", "x^{tree}"]);
    git_tag(&["-a", "-m", "deeper", "deeper", "tagoftag"]);
    let want: Vec<(String, NodeType)> = [
        ("ann", NodeType::Directory),
        ("annblob", NodeType::Regular),
        ("anntree", NodeType::Directory),
        ("blobtag", NodeType::Regular),
        ("deeper", NodeType::Directory),
        ("light", NodeType::Directory),
        ("tagoftag", NodeType::Directory),
        ("treetag", NodeType::Directory),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), *t))
    .collect();
    assert_eq!(kinds(&repo), want);
    // Each resolves to what git peels it to: a commit's tree, a tree, a
    // blob; commit tags are dated by the commit.
    let src_ns = Direct::new(&repo);
    for (name, node_type) in &want {
        let peeled = match node_type {
            NodeType::Regular => rev_parse(&env, &format!("{name}^{{}}")),
            _ => rev_parse(&env, &format!("{name}^{{tree}}")),
        };
        let found = namespace::lookup(&src_ns, &Item::Tags, name.as_bytes()).expect("lookup");
        assert_eq!(
            found.id,
            Some(rev_parse(&env, &format!("refs/tags/{name}")))
        );
        let is_commit = run(env.git().args(["cat-file", "-t", &format!("{name}^{{}}")]))
            .success()
            .stdout_str()
            .trim()
            == "commit";
        assert_eq!(found.time, is_commit.then_some(1500000000), "{name}");
        match found.item {
            Item::Node(node) => {
                assert_eq!(node.id, peeled, "{name}");
                assert_eq!(node.node_type, *node_type, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // `ls -l .tag` shows the types; a tagged blob reads as its content.
    let cli = type_and_name(env.rw().args(["ls", "-l", ".tag"]).run().success().lines());
    let types: Vec<(char, String)> = cli.into_iter().map(|(t, n, _)| (t, n)).collect();
    let want_types: Vec<(char, String)> = want
        .iter()
        .map(|(n, t)| (if *t == NodeType::Regular { '-' } else { 'd' }, n.clone()))
        .collect();
    assert_eq!(types, want_types);
    for name in ["blobtag", "annblob"] {
        let out = env
            .rw()
            .args(["cat-file", &format!(".tag/{name}")])
            .run()
            .success();
        assert_eq!(out.stdout, b"tagged file\n");
    }
    // Through a peeled commit tag, paths inside resolve as in the snapshot.
    let inside = env
        .rw()
        .arg("cat-file")
        .arg(format!(".tag/deeper/{rel}/f"))
        .run()
        .success();
    assert_eq!(inside.stdout, b"tagged file\n");
    assert!(Path::new(&env.repo).join("refs/tags/deeper").exists());

    // A tag naming an object the repository lacks: `ls -l .tag` lists it
    // by name with a warning, the others as before, and exits 1.
    write(
        &env.repo.join("refs/tags/gone"),
        b"0123456789012345678901234567890123456789\n",
    );
    let out = env.rw().args(["ls", "-l", ".tag"]).run().status(1);
    let listed: Vec<String> = parse_ls_long(&out.lines())
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(listed.len(), want.len() + 1, "{listed:?}");
    assert!(listed.contains(&"gone".to_owned()), "{listed:?}");
    assert!(out.stderr.contains(".tag/gone"), "{}", out.stderr);
    env.corrupted.set(true);
}
