//! Where a repository is: a local path, `[user@]host:path` (scp style, as
//! bup and rsync write it) or `ssh://[user@]host[:port]/path`.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Ssh(SshTarget),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@host` or `host`, as given to ssh.
    pub destination: String,
    pub port: Option<u16>,
    /// On the server: absolute, or relative to the login's home directory.
    pub path: String,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(
                f,
                "ssh://{}:{port}/{}",
                self.destination,
                self.path.trim_start_matches('/')
            ),
            None => write!(f, "{}:{}", self.destination, self.path),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid repository location {text:?}: {why}")]
pub struct LocationError {
    text: String,
    why: &'static str,
}

impl Location {
    /// Parses a location. A text with a `:` before any `/` is remote (as
    /// with scp and rsync); write `./a:b` for a local path with a colon.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        let fail = |why| LocationError {
            text: text.to_string(),
            why,
        };
        if let Some(rest) = text.strip_prefix("ssh://") {
            let (authority, path) = rest
                .split_once('/')
                .ok_or_else(|| fail("an ssh:// URL needs a path after the host"))?;
            let (destination, port) = split_port(authority).map_err(fail)?;
            // ssh://host/path is absolute; ssh://host/~/path is in the home.
            let path = match path.strip_prefix("~/") {
                Some(home) => home.to_string(),
                None => format!("/{path}"),
            };
            let destination = strip_brackets(destination);
            return Ok(Location::Ssh(
                check(&destination, port, path).map_err(fail)?,
            ));
        }
        match text.split_once(':') {
            Some((host, path)) if !host.contains('/') && !host.is_empty() => Ok(Location::Ssh(
                check(host, None, path.to_string()).map_err(fail)?,
            )),
            _ => Ok(Location::Local(PathBuf::from(text))),
        }
    }
}

/// Splits `[user@]host[:port]`, where host may be a bracketed IPv6
/// address (`[::1]`, `[::1]:2222`).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let host = &authority[authority.rfind('@').map_or(0, |i| i + 1)..];
    let port_text = if host.starts_with('[') {
        let end = host
            .find(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        host[end + 1..].strip_prefix(':')
    } else {
        host.rsplit_once(':').map(|(_, p)| p)
    };
    let Some(text) = port_text else {
        return Ok((authority, None));
    };
    let port = text
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or("the port must be a number from 1 to 65535")?;
    Ok((&authority[..authority.len() - text.len() - 1], Some(port)))
}

/// `user@[::1]` -> `user@::1`: ssh takes the address without brackets.
fn strip_brackets(destination: &str) -> String {
    match destination.rsplit_once('@') {
        Some((user, host)) => format!(
            "{user}@{}",
            host.trim_start_matches('[').trim_end_matches(']')
        ),
        None => destination
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    }
}

fn check(destination: &str, port: Option<u16>, path: String) -> Result<SshTarget, &'static str> {
    let host = destination.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Err("no host name");
    }
    // ssh would read a leading '-' as an option.
    if destination.starts_with('-')
        || destination
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("the user and host may not start with '-' or hold spaces");
    }
    if path.is_empty() || path.trim_end_matches('/').is_empty() && path != "/" {
        return Err("no repository path after the host");
    }
    if path.contains('\0') {
        return Err("the path holds a NUL byte");
    }
    Ok(SshTarget {
        destination: destination.to_string(),
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(destination: &str, port: Option<u16>, path: &str) -> Location {
        Location::Ssh(SshTarget {
            destination: destination.into(),
            port,
            path: path.into(),
        })
    }

    #[test]
    fn locations_parse_as_scp_and_rsync_read_them() {
        assert_eq!(
            Location::parse("backup@server:/home/backup/web").unwrap(),
            ssh("backup@server", None, "/home/backup/web")
        );
        assert_eq!(
            Location::parse("server:web").unwrap(),
            ssh("server", None, "web")
        );
        assert_eq!(
            Location::parse("ssh://backup@server:2222/home/backup/web").unwrap(),
            ssh("backup@server", Some(2222), "/home/backup/web")
        );
        assert_eq!(
            Location::parse("ssh://backup@[::1]:2222/srv/web").unwrap(),
            ssh("backup@::1", Some(2222), "/srv/web")
        );
        assert_eq!(
            Location::parse("ssh://[::1]/srv/web").unwrap(),
            ssh("::1", None, "/srv/web")
        );
        assert_eq!(
            Location::parse("ssh://server/~/web").unwrap(),
            ssh("server", None, "web")
        );
        for local in ["/srv/backup", "./a:b", "relative/dir", "dir"] {
            assert_eq!(
                Location::parse(local).unwrap(),
                Location::Local(local.into()),
                "{local}"
            );
        }
        for bad in [
            "server:",
            "ssh://server",
            "ssh://server:0/x",
            "ssh://server:99999/x",
            "-oProxyCommand=x:/r",
            ":/x",
        ] {
            assert!(
                Location::parse(bad).is_err()
                    || matches!(Location::parse(bad), Ok(Location::Local(_))),
                "{bad}"
            );
        }
        assert!(Location::parse("-oProxyCommand=x:/r").is_err());
        assert!(Location::parse("server:").is_err());
    }
}
