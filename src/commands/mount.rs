use super::{open_at, Error, Status, UsageError};
use crate::cli::{Cli, MountArgs, UmountArgs};
use crate::mount::{self, MountConfig};

/// "256M", "1G", "65536": binary units.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (digits, shift) = match t.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&t[..t.len() - 1], 10),
        b'M' => (&t[..t.len() - 1], 20),
        b'G' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    digits.parse::<usize>().ok()?.checked_mul(1 << shift)
}

pub fn run(cli: &Cli, args: &MountArgs) -> Result<Status, Error> {
    let cache_bytes = parse_size(&args.cache_size).ok_or_else(|| {
        UsageError(format!(
            "--cache-size {}: expected a size like 256M or 1G",
            args.cache_size
        ))
    })?;
    // Checked before opening the repository so the stale-mount advice comes first.
    mount::check_mountpoint(&args.mountpoint)?;
    let source = match &args.repos {
        Some(dir) => {
            // Checked now, so that a mistyped DIR is the caller's error and
            // not an empty mount; absolute, as the daemon changes to `/`.
            let dir = crate::source::paths::absolute(dir, &std::env::current_dir()?);
            crate::repo::under::list(&dir)?;
            mount::Mounted::Under(dir)
        }
        None => match super::location(cli)? {
            crate::remote::Location::Local(path) => mount::Mounted::One(Box::new(open_at(&path)?)),
            crate::remote::Location::Ssh(target) => {
                return Err(Box::new(UsageError(format!(
                    "mount reads repositories on this machine: run it on the server that holds {target} (e.g. `rewind mount --repos DIR MOUNTPOINT` there)"
                ))))
            }
        },
    };
    let cfg = MountConfig {
        mountpoint: args.mountpoint.clone(),
        foreground: args.foreground,
        allow_other: args.allow_other,
        cache_bytes,
        threads: args.threads.clamp(1, 64),
        log_file: cli.log_file.clone(),
    };
    mount::run(source, &cfg)?;
    Ok(Status::Success)
}

pub fn umount(args: &UmountArgs) -> Result<Status, Error> {
    mount::unmount(&args.mountpoint)?;
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}
