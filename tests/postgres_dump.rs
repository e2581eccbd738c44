//! A real database backed up with a dump source: a throwaway PostgreSQL
//! cluster on loopback, `pg_dump` saved by `rewind save --from-command`,
//! the data changed and saved again, then the FIRST dump loaded from a real
//! `rewind mount` into a fresh database whose rows must equal the original
//! ones. A dump of a database that does not exist must leave no snapshot.
//!
//! Needs PostgreSQL's server binaries (`apt-get install postgresql`, as
//! .ci/run does): without them the test fails and says so, it never passes
//! silently. It depends on no machine state: the cluster is made by
//! `initdb` in a temporary directory and stopped on every exit path.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn pg_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/<version>/bin/initdb): \
             install postgresql (apt-get install postgresql postgresql-client) to run this test"
        ),
    }
}

fn is_root() -> bool {
    effective_ids().0 == 0
}

/// A command run as the `postgres` user when we are root (initdb and the
/// server refuse to run as root), as ourselves otherwise.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run(Command::new("id").arg(flag).arg("postgres"));
        assert_eq!(
            out.code, 0,
            "no `postgres` user: install postgresql (apt-get install postgresql), \
             which creates it"
        );
        out.stdout_str().trim().parse().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A running throwaway cluster; stopped (immediately) on drop.
struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Server {
    fn start(root: &Path) -> Server {
        let bin = pg_bin_dir();
        let data = root.join("pgdata");
        let sockets = root.join("sockets");
        for dir in [&data, &sockets] {
            fs::create_dir(dir).expect("mkdir");
            if is_root() {
                let (uid, gid) = postgres_ids();
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown");
            }
        }
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).expect("chmod");
        run(as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"]))
        .success();
        let port = free_port();
        let server = Server { bin, data, port };
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            sockets.display()
        );
        run(as_postgres(&server.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&server.data)
            .arg("-l")
            .arg(server.data.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]))
        .success();
        server
    }

    /// `psql` on loopback as the superuser, stopping at the first error.
    fn psql(&self, db: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.env("LC_ALL", "C")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db]);
        c
    }

    fn sql(&self, db: &str, sql: &str) -> String {
        run(self.psql(db).args(["-At", "-c", sql]))
            .success()
            .stdout_str()
    }

    /// Every row of the test table, in a stable text form.
    fn rows(&self, db: &str) -> String {
        self.sql(db, "SELECT id, name, price, note FROM items ORDER BY id")
    }

    /// The shell command that dumps `db` (what an admin would configure).
    fn dump_command(&self, db: &str) -> String {
        format!(
            "{} -h 127.0.0.1 -p {} -U postgres --no-password {db}",
            self.bin.join("pg_dump").display(),
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

const DUMP_AS: &str = "/var/lib/postgresql/backup/app.sql";

#[test]
fn postgres_dump_restores_the_first_snapshot_rows_from_the_mount() {
    // The cluster lives outside the scratch base: the postgres user must
    // be able to reach it, and every directory above /tmp is traversable.
    let tmp = tempfile::Builder::new()
        .prefix("rw-pg")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = Server::start(tmp.path());
    server.sql("postgres", "CREATE DATABASE app");
    server.sql(
        "app",
        "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, \
         price numeric(10,2), note text);
         INSERT INTO items SELECT i, 'item ' || i, i * 1.25, \
           CASE WHEN i % 7 = 0 THEN E'quote '' tab \\t newline \\n é' END \
         FROM generate_series(1, 20000) AS i;",
    );
    let original = server.rows("app");
    assert_eq!(
        server.sql("app", "SELECT count(*) FROM items").trim(),
        "20000"
    );

    let env = Env::init();
    let save = |date: &str, db: &str| {
        env.rw()
            .args(["save", "-n", "pg", "--date", date])
            .args(["--from-command", &server.dump_command(db), "--as", DUMP_AS])
            .run()
    };
    save("1700000000", "app").success();
    server.sql(
        "app",
        "UPDATE items SET price = price * 2 WHERE id % 3 = 0;
         DELETE FROM items WHERE id % 5 = 0;
         INSERT INTO items VALUES (99999, 'late', 1.00, NULL);",
    );
    let changed = server.rows("app");
    assert_ne!(changed, original);
    save("1700000100", "app").success();

    // A dump that fails (no such database) leaves no snapshot.
    let tip = branch_tip(&env.repo, "pg").expect("saved");
    save("1700000200", "nosuchdb")
        .status(2)
        .stderr_contains("no snapshot was made")
        .stderr_contains("database \"nosuchdb\" does not exist");
    assert_eq!(branch_tip(&env.repo, "pg").as_deref(), Some(tip.as_str()));
    let snaps = snapshot_names(&env.rw().args(["ls", "pg"]).run().success().lines());
    let first = utc_snapshot_name(1_700_000_000);
    assert_eq!(snaps, [first.clone(), utc_snapshot_name(1_700_000_100)]);

    // Load the FIRST dump into a fresh database, from the mount.
    server.sql("postgres", "CREATE DATABASE restored");
    let load = |file: &Path| {
        run(server.psql("restored").arg("-f").arg(file)).success();
    };
    // Without FUSE (outside CI) the dump is still checked, through cat-file.
    if require_fuse() {
        let mount = Mount::at(env.rw().command(), &env.path("mnt"))
            .within(Duration::from_secs(30))
            .start();
        let dump = mount
            .path
            .join("pg")
            .join(&first)
            .join(DUMP_AS.trim_start_matches('/'));
        let st = fs::metadata(&dump).expect("dump in the mount");
        assert_eq!(st.mode() & 0o7777, 0o600);
        load(&dump);
    } else {
        let file = env.path("app.sql");
        let out = env
            .rw()
            .arg("cat-file")
            .arg(format!("pg/{first}{DUMP_AS}"))
            .run()
            .success();
        fs::write(&file, &out.stdout).expect("write dump");
        load(&file);
    }
    let restored = server.rows("restored");
    assert!(
        restored == original,
        "rows restored from the first dump differ from the original rows \
         ({} vs {} bytes of rows; the changed table has {})",
        restored.len(),
        original.len(),
        changed.len()
    );
}
