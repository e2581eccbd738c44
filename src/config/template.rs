//! The commented configuration `rewind config init` writes.

/// `rewind config init`: every option with its default, commented. Parses
/// as a valid configuration (tests hold it to that).
pub const TEMPLATE: &str = r#"# rewind configuration: what `rewind run` saves, and where.
# See rewind.toml(5). Check it with `rewind config check`, try it with
# `rewind run --dry-run`.

# The repository snapshots go to: an absolute local path, created with
# `rewind -d PATH init`, or a backup server's, `user@host:/path` or
# `ssh://user@host:port/path`, created with `rewind -r LOCATION init`
# (see rewind-server(1)). -d/--repo, -r/--remote or REWIND_REPO on the
# command line override it.
repository = "/var/backups/rewind"

# `rewind status` reports a backup CRITICAL when its newest snapshot is
# older than this: a number with a unit, s, m, h or d (e.g. 26h, 1d12h).
# A backup may set its own. Default: 26h (daily, with two hours of slack).
max-age = "26h"

# After its backups and prunes, `rewind run` reclaims the space of what no
# snapshot uses any more and merges small packs (as `rewind gc` does; see
# rewind-gc(1)). Only for a repository on this machine: a backup server
# runs `rewind gc` itself. Default: false.
# gc = true

# Retention: after its backups, `rewind run` removes the snapshots of each
# backup name that these rules do not keep (as `rewind prune` does; see
# rewind-prune(1) for the exact rules). Without a [retention] section every
# snapshot is kept. Days, weeks and months are those of the saving host's
# local time. keep-within takes y, m (months), w, d and h: "30d", "1y6m".
# A backup's own [backup.retention] replaces this section for it.
# [retention]
# keep-daily = 7
# keep-weekly = 4
# keep-monthly = 12
# keep-yearly = 3
# keep-within = "2d"

# Off-site mirror: on its day, after the backups, prunes and gc, `rewind
# run` pushes the repository to an S3 bucket (or a folder), encrypted, as
# `rewind mirror push` does (see rewind-mirror(1)): only what the bucket
# lacks, the refs last. Only for a repository on this machine (the backup
# server). Credentials and region come from the AWS environment or
# ~/.aws/credentials and ~/.aws/config. Default: no mirror.
# [mirror]
# s3://BUCKET, s3://BUCKET/PREFIX, or file:///PATH (e.g. a disk taken
# off-site).
# url = "s3://acme-backups/web"
# The key that encrypts the mirror, made with `rewind mirror keygen
# /etc/rewind-mirror.key`. Keep a copy off this machine: without it the
# mirror cannot be read. Required unless plain = true.
# key = "/etc/rewind-mirror.key"
# Mirror unencrypted instead (the bucket's owner can read everything).
# Default: false.
# plain = false
# An S3-compatible server instead of AWS. Default: AWS_ENDPOINT_URL or the
# AWS profile's endpoint_url, else AWS itself.
# endpoint = "https://s3.example.net"
# The day of the week (local time) the run pushes, monday to sunday, or
# "daily". Default: saturday.
# day = "saturday"
# How long files that gc removed stay in the bucket, so that the mirror of
# a week ago still restores. Default: 14d.
# grace = "14d"

# One [[backup]] table per backup name; `rewind run` makes them in this
# order. Each becomes the branch NAME in the repository (`rewind ls NAME`).
[[backup]]
# Letters, digits, '.', '_', '-', '+', '@', '='.
name = "system"
# Absolute paths to save.
paths = ["/etc", "/root", "/home"]
# Patterns to skip: '*.tmp' matches names anywhere, '/var/cache' a path.
# Default: none.
excludes = ["*.tmp", "/root/.cache"]
# Files of more patterns, one per line (absolute paths). Default: none.
exclude-from = []
# Stay on the file system of each path (do not descend into mounts).
# Default: false.
one-file-system = false
# Overrides the top-level max-age for this backup.
# max-age = "26h"

# A backup of database dumps: each command's standard output is saved as
# the file named by `as` (absolute, inside the snapshot), streamed, without
# a temporary copy. A command that fails (non-zero exit) fails this backup:
# its snapshot is not made, the command's stderr is shown, and `rewind run`
# exits 2; the other backups still run.
# [[backup]]
# name = "databases"
# paths = []
# [[backup.dump]]
# command = "mysqldump --single-transaction bugs"
# as = "/var/lib/mysql/backup/bugs.sql"
# [[backup.dump]]
# command = "pg_dump -U postgres wiki"
# as = "/var/lib/postgresql/backup/wiki.sql"
# Dumps are large: keep fewer of them than the other backups.
# [backup.retention]
# keep-daily = 3
# keep-weekly = 2
"#;
