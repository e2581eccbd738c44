//! What a mirror carries of a local repository: its refs and HEAD, its
//! packs (each with its index) and loose objects, and a few small files.
//! Read in the order that keeps a mirror whole: refs first, then files, so
//! every object a listed ref needs is in a listed file (a save publishes
//! its pack before it moves the ref; gc is held off while a push runs).

use super::manifest::{path_kind, PathKind, SMALL_FILES};
use super::MirrorError;
use crate::object::ObjectId;
use crate::repo::Repository;
use std::collections::BTreeMap;
use std::path::Path;

/// Files sent and received together, in this order: a pack before its
/// index (readers find packs by their index), or one loose object.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Repository paths.
    pub files: Vec<String>,
}

pub struct Inventory {
    root: std::path::PathBuf,
    pub head: String,
    pub refs: BTreeMap<String, ObjectId>,
    pub units: Vec<Unit>,
    pub small: BTreeMap<String, Vec<u8>>,
}

impl Inventory {
    pub fn read(repo: &Repository) -> Result<Inventory, MirrorError> {
        let root = repo.path();
        let refs = repo.list_refs("refs/")?.into_iter().collect();
        let head_path = root.join("HEAD");
        let head = std::fs::read_to_string(&head_path)
            .map_err(MirrorError::io("reading", &head_path))?
            .trim_end()
            .to_string();
        let mut units = Vec::new();
        pack_units(&root.join("objects/pack"), &mut units)?;
        loose_units(&root.join("objects"), &mut units)?;
        let mut small = BTreeMap::new();
        for name in SMALL_FILES {
            let path = root.join(name);
            match std::fs::read(&path) {
                Ok(bytes) if bytes.len() <= super::manifest::MAX_SMALL => {
                    small.insert(name.to_string(), bytes);
                }
                Ok(_) => tracing::warn!(
                    "{} is larger than a mirror carries inline; it is not mirrored",
                    path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(MirrorError::io("reading", &path)(e)),
            }
        }
        Ok(Inventory {
            root: root.to_path_buf(),
            head,
            refs,
            units,
            small,
        })
    }

    pub fn files(&self) -> impl Iterator<Item = &String> {
        self.units.iter().flat_map(|u| u.files.iter())
    }

    /// The size of a listed file. Asked only of files a mirror lacks: a
    /// listing is one read of the directory, a size one inode each, which
    /// for 10,000 packs on a cold cache costs more than the rest of a push
    /// with nothing new. (Files are named by their content, so a name the
    /// manifest has is the same file.)
    pub fn size(&self, path: &str) -> Result<u64, MirrorError> {
        size_of(&self.root.join(path))
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, MirrorError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MirrorError::io("listing", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(MirrorError::io("listing", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn size_of(path: &Path) -> Result<u64, MirrorError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(MirrorError::io("reading", path))
}

/// Packs with their indexes. A pack without an index is being written or
/// is a killed writer's debris: no ref can need it yet, and git ignores it.
fn pack_units(dir: &Path, units: &mut Vec<Unit>) -> Result<(), MirrorError> {
    let names = read_dir_names(dir)?;
    for name in &names {
        let Some(stem) = name.strip_suffix(".idx") else {
            continue;
        };
        let pack = format!("objects/pack/{stem}.pack");
        let idx = format!("objects/pack/{name}");
        // Sorted by read_dir_names: a binary search, not a scan per index.
        let has_pack = names.binary_search(&format!("{stem}.pack")).is_ok();
        if path_kind(&pack) != Some(PathKind::Pack) || !has_pack {
            continue;
        }
        units.push(Unit {
            files: vec![pack, idx],
        });
    }
    Ok(())
}

fn loose_units(objects: &Path, units: &mut Vec<Unit>) -> Result<(), MirrorError> {
    for dir in read_dir_names(objects)? {
        if dir.len() != 2 {
            continue;
        }
        for file in read_dir_names(&objects.join(&dir))? {
            let path = format!("objects/{dir}/{file}");
            if path_kind(&path) == Some(PathKind::Loose) {
                units.push(Unit { files: vec![path] });
            }
        }
    }
    Ok(())
}

/// Groups a manifest's files the way [`Inventory`] does: each pack with
/// its index after it, each loose object alone.
pub fn units_of(files: &BTreeMap<String, super::manifest::FileEntry>) -> Vec<Unit> {
    let mut units = Vec::new();
    for path in files.keys() {
        match path_kind(path) {
            Some(PathKind::Pack) => {
                let mut unit = vec![path.clone()];
                let idx = format!("{}.idx", path.trim_end_matches(".pack"));
                if files.contains_key(&idx) {
                    unit.push(idx);
                }
                units.push(Unit { files: unit });
            }
            Some(PathKind::PackIndex) => {
                // With its pack, unless the pack is missing from the list.
                let pack = format!("{}.pack", path.trim_end_matches(".idx"));
                if !files.contains_key(&pack) {
                    units.push(Unit {
                        files: vec![path.clone()],
                    });
                }
            }
            _ => units.push(Unit {
                files: vec![path.clone()],
            }),
        }
    }
    units
}
