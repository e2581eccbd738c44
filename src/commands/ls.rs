use super::{resolve_following, Error, Status, UsageError};
use crate::cli::LsArgs;
use crate::meta::{mode_string, Metadata};
use crate::repo::Repo;
use crate::view::namespace::{self, Direct, Entry};
use crate::view::{self, content_size, ContentReader, Item, Node, NodeType};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

struct Row {
    mode: u32,
    owner: String,
    /// The size, or `major,minor` for devices, as `ls -l` and bup show.
    size: String,
    mtime: i64,
    name: Vec<u8>,
    link: Option<Vec<u8>>,
}

fn owner(meta: Option<&Metadata>, numeric: bool) -> String {
    let Some(m) = meta else {
        return "?/?".into();
    };
    let pick = |name: &[u8], id: u32| {
        if numeric || name.is_empty() {
            id.to_string()
        } else {
            String::from_utf8_lossy(name).into_owned()
        }
    };
    format!("{}/{}", pick(&m.user, m.uid), pick(&m.group, m.gid))
}

/// `snapshot_time`: the time shown for an entry with no saved metadata
/// (see [`Node::unsaved_meta`]).
fn node_row(repo: &dyn Repo, node: &Node, numeric: bool, snapshot_time: i64) -> Result<Row, Error> {
    let meta = node.meta.as_ref();
    let is_device =
        meta.is_some_and(|m| matches!(m.mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK));
    let size = match (node.node_type, meta) {
        (NodeType::Special, Some(m)) if is_device => {
            let rdev = m.rdev as libc::dev_t;
            format!("{},{}", libc::major(rdev), libc::minor(rdev))
        }
        (NodeType::Directory | NodeType::Special, _) => "0".into(),
        (
            _,
            Some(Metadata {
                size: Some(size), ..
            }),
        ) => size.to_string(),
        _ => content_size(repo.objects(), node.content())?.to_string(),
    };
    let link = if node.node_type == NodeType::Symlink {
        let mut target = Vec::new();
        io::copy(
            &mut ContentReader::new(repo.objects(), node.content()),
            &mut target,
        )?;
        Some(target)
    } else {
        None
    };
    Ok(Row {
        mode: node.mode(),
        owner: owner(meta, numeric),
        size,
        mtime: meta.map_or(snapshot_time, |m| m.mtime.sec),
        name: node.name.clone(),
        link,
    })
}

fn print_rows(rows: &[Row], long: bool) -> io::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let owner_width = rows.iter().map(|r| r.owner.len()).max().unwrap_or(0);
    let size_width = rows
        .iter()
        .map(|r| r.size.to_string().len())
        .max()
        .unwrap_or(0);
    for r in rows {
        if long {
            write!(
                out,
                "{} {:<ow$} {:>sw$} {} ",
                mode_string(r.mode),
                r.owner,
                r.size,
                crate::time::listing_time(r.mtime),
                ow = owner_width,
                sw = size_width
            )?;
        }
        out.write_all(&r.name)?;
        if let (true, Some(link)) = (long, &r.link) {
            out.write_all(b" -> ")?;
            out.write_all(link)?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A row for an entry of the namespace's own directories (backup names,
/// snapshots, `latest`); tags are shown as what they point at.
fn entry_row(e: &Entry) -> Row {
    let (mode, size) = match &e.link {
        Some(target) => (libc::S_IFLNK | 0o755, target.len()),
        None => (libc::S_IFDIR | 0o755, 0),
    };
    Row {
        mode,
        owner: "?/?".into(),
        size: size.to_string(),
        mtime: e.time.unwrap_or(0),
        name: e.name.clone(),
        link: e.link.clone(),
    }
}

pub fn run(repo: &dyn Repo, args: &LsArgs) -> Result<Status, Error> {
    let path = args.path.as_deref().map_or(&b""[..], |p| p.as_bytes());
    // Entries the view left out (and logged) make the listing partial.
    let mut status = Status::Success;
    let src = Direct::new(repo);
    let (item, time) = resolve_following(&src, path)?;
    let rows = match item {
        // Each tag as what it points at; one that cannot be read is
        // listed by name, with a warning, and makes the listing partial.
        item @ Item::Tags => namespace::list(&src, &item)?
            .iter()
            .map(|e| match namespace::lookup(&src, &item, &e.name) {
                Ok(found) => match found.item {
                    Item::Node(node) => {
                        node_row(repo, &node, args.numeric_ids, found.time.unwrap_or(0))
                    }
                    _ => Ok(entry_row(e)),
                },
                Err(err) => {
                    tracing::warn!(".tag/{}: {err}", e.name.escape_ascii());
                    status = Status::Partial;
                    Ok(entry_row(e))
                }
            })
            .collect::<Result<_, Error>>()?,
        Item::Node(node) if node.node_type == NodeType::Directory => {
            let dir = view::list_dir_with_meta(repo, &node.id).map_err(|e| e.reached_from(path))?;
            if !dir.skipped.is_empty() {
                status = Status::Partial;
            }
            dir.entries
                .iter()
                .map(|n| node_row(repo, n, args.numeric_ids, time))
                .collect::<Result<_, _>>()?
        }
        Item::Node(node) => vec![node_row(repo, &node, args.numeric_ids, time)?],
        item => namespace::list(&src, &item)?
            .iter()
            .map(entry_row)
            .collect(),
    };
    print_rows(&rows, args.long)?;
    Ok(status)
}

pub fn cat_file(repo: &dyn Repo, path: &[u8]) -> Result<Status, Error> {
    let node = match resolve_following(&Direct::new(repo), path)?.0 {
        Item::Node(node)
            if node.node_type == NodeType::Regular || node.node_type == NodeType::Symlink =>
        {
            node
        }
        _ => {
            return Err(Box::new(UsageError(format!(
                "{}: not a file",
                String::from_utf8_lossy(path)
            ))))
        }
    };
    let mut reader = ContentReader::of_node(repo.objects(), &node);
    let mut out = io::stdout().lock();
    loop {
        let piece = reader.next_piece()?;
        if piece.is_empty() {
            break;
        }
        out.write_all(piece)?;
    }
    out.flush()?;
    Ok(Status::Success)
}
