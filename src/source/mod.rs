//! What a save reads: the source paths given on the command line, where they
//! land in the snapshot (`paths`), and which directory entries are skipped
//! (`filter`: excludes and one-file-system).

pub mod command;
pub mod filter;
pub mod mounts;
pub mod paths;
