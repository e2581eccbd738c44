//! rewind: daily backups into plain git repositories that bup 0.33 can read.
//!
//! Data flows one way. Writing: `source` (walk the file system) -> `chunk`
//! (content-defined splitting) -> `pack` (pack files + idx) -> `object` (trees,
//! commits) -> `repo` (refs, moved last). Reading: `repo` -> `view` (snapshots,
//! paths, file contents at an offset) -> restore / ls / mount.

pub mod cache;
pub mod chunk;
pub mod cli;
pub mod commands;
pub mod config;
pub mod fsck;
#[doc(hidden)]
pub mod fuzz;
pub mod gc;
pub mod interrupt;
pub mod locks;
pub mod meta;
pub mod mirror;
pub mod mount;
pub mod object;
pub mod pack;
pub mod pipe;
pub mod progress;
pub mod prune;
pub mod remote;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod run;
pub mod save;
pub mod schedule;
pub mod source;
pub mod time;
pub mod view;

#[cfg(test)]
mod test_support;
