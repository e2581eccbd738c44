//! Repositories on a backup server, reached over SSH: where a location
//! points ([`location`]), the protocol ([`wire`]), the client that makes a
//! server's repository a [`crate::repo::Repo`] ([`client`]) and the server
//! (`rewind server`, [`server`]).

mod ahead;
mod checks;
pub mod client;
pub mod location;
mod outbox;
mod receiving;
pub mod server;
mod session;
mod ssh;
pub mod wire;

pub use client::{Remote, SshOptions};
pub use location::{Location, SshTarget};
