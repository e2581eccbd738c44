//! The commit of a save and the move of its branch. Author times stay
//! strictly increasing per branch (bup names snapshots by author second, and
//! its 0.33 tools break on duplicates), and a concurrent save to the same
//! name is answered by re-parenting onto the new tip rather than failing.

use super::{ObjectSink, SaveError};
use crate::object::commit::{self, sanitize_ident, Commit, Signature};
use crate::object::{Kind, ObjectId};
use crate::repo::Repo;

/// Who saves: `Full Name <login@host>`, like bup.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: Vec<u8>,
    pub email: Vec<u8>,
}

impl Identity {
    /// The current user from the password database and the host name.
    pub fn current() -> Identity {
        use crate::meta::ids;
        // getpwuid_r, not getpwuid: saves run on several threads at once
        // (tests, a future server), and getpwuid's static buffer may be
        // overwritten by another thread's lookup while we copy from it.
        let uid = ids::uid();
        let (login, gecos) = match ids::user_entry(uid) {
            Some(pw) => (Some(pw.name), pw.gecos),
            None => (None, None),
        };
        let mut host = [0u8; 256];
        // SAFETY: `host` is a live, exclusively borrowed buffer of exactly
        // host.len() bytes; gethostname(2) writes at most that many.
        let rc = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) };
        let host = if rc == 0 {
            // Truncated names may lack the NUL: then the whole buffer.
            let end = host.iter().position(|&b| b == 0).unwrap_or(host.len());
            host[..end].to_vec()
        } else {
            b"localhost".to_vec()
        };
        let login = login.unwrap_or_else(|| format!("user{uid}").into_bytes());
        let full = gecos
            .and_then(|g| g.split(|&b| b == b',').next().map(<[u8]>::to_vec))
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| login.clone());
        let mut email = login.clone();
        email.push(b'@');
        email.extend_from_slice(&host);
        Identity {
            name: sanitize_ident(&full, "rewind"),
            email: sanitize_ident(&email, "rewind@localhost"),
        }
    }
}

pub(super) fn author_time(repo: &dyn Repo, id: &ObjectId) -> Result<i64, SaveError> {
    let object = repo.objects().read(id)?;
    Ok(commit::decode(&object.data)?.author.time)
}

fn encode(tree: ObjectId, parent: Option<ObjectId>, time: i64, identity: &Identity) -> Vec<u8> {
    let signature = Signature {
        name: identity.name.clone(),
        email: identity.email.clone(),
        time,
        utc_offset_minutes: crate::time::utc_offset_minutes(time),
    };
    commit::encode(&Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: signature.clone(),
        committer: signature,
        message: b"rewind save\n".to_vec(),
    })
}

/// The author time for a new snapshot: as requested (now, or `--date`), but
/// at least one second after the parent's so that snapshot names stay unique
/// and ordered; bup 0.33's tools break on same-second snapshots.
fn next_time(requested: i64, parent_time: Option<i64>) -> i64 {
    match parent_time {
        Some(p) if requested <= p => {
            tracing::info!("snapshot dated {} instead of {requested}: a branch's snapshots must be in time order", p + 1);
            p + 1
        }
        _ => requested,
    }
}

pub(super) fn write_commit(
    sink: &mut ObjectSink,
    tree: ObjectId,
    parent: Option<ObjectId>,
    parent_time: Option<i64>,
    requested: i64,
    identity: &Identity,
) -> Result<(ObjectId, i64), SaveError> {
    let time = next_time(requested, parent_time);
    let id = sink.put(Kind::Commit, &encode(tree, parent, time, identity))?;
    Ok((id, time))
}

/// Moves the branch from `parent` to `commit`. If another save moved it in
/// the meantime, writes a new commit of the same tree on top of the new tip
/// and tries again, so both saves land.
pub(super) fn move_branch(
    repo: &dyn Repo,
    ref_name: &str,
    mut commit: ObjectId,
    mut parent: Option<ObjectId>,
    mut time: i64,
    tree: ObjectId,
    identity: &Identity,
) -> Result<(ObjectId, i64), SaveError> {
    for _ in 0..20 {
        match repo.update_ref(ref_name, commit, parent) {
            Ok(()) => return Ok((commit, time)),
            Err(crate::repo::Error::RefChanged { found, .. }) => {
                tracing::info!("{ref_name} moved during the save; re-parenting onto the new tip");
                parent = found;
                let parent_time = match found {
                    Some(id) => Some(author_time(repo, &id)?),
                    None => None,
                };
                // One commit to write: the objects known now are enough.
                let known = std::sync::Arc::new(repo.known_objects());
                let mut sink = ObjectSink::new(repo, known)?;
                let (id, t) = write_commit(&mut sink, tree, parent, parent_time, time, identity)?;
                sink.publish()?;
                commit = id;
                time = t;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SaveError::Contended(ref_name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_strictly_increase() {
        assert_eq!(next_time(100, None), 100);
        assert_eq!(next_time(100, Some(99)), 100);
        assert_eq!(next_time(100, Some(100)), 101);
        assert_eq!(next_time(50, Some(100)), 101);
    }

    #[test]
    fn identity_is_acceptable_to_bup() {
        let id = Identity::current();
        assert!(!id.name.is_empty() && id.email.contains(&b'@'));
        assert_eq!(sanitize_ident(&id.name, "x"), id.name);
    }
}
