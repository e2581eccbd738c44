//! S3 credentials, region and endpoint the standard AWS way: the
//! environment first (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`), then the profile
//! (`AWS_PROFILE`, else `default`) in `~/.aws/credentials` and
//! `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`).
//! object_store reads the environment but not these files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// The profile the values came from, if a file gave any.
    pub profile: Option<String>,
}

impl Credentials {
    /// What the environment and the profile files say, the environment
    /// winning field by field.
    pub fn from_environment() -> Credentials {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let home = env("HOME").map(PathBuf::from);
        let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config_file = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let from_files = from_files(
            &profile,
            credentials_file.as_deref(),
            config_file.as_deref(),
        );
        Credentials {
            access_key_id: env("AWS_ACCESS_KEY_ID").or(from_files.access_key_id),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY").or(from_files.secret_access_key),
            session_token: env("AWS_SESSION_TOKEN").or(from_files.session_token),
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or(from_files.region),
            endpoint: env("AWS_ENDPOINT_URL_S3")
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .or(from_files.endpoint),
            profile: from_files.profile,
        }
    }
}

/// The values of `profile` in the two files (either may be missing).
fn from_files(profile: &str, credentials: Option<&Path>, config: Option<&Path>) -> Credentials {
    let read = |path: Option<&Path>| {
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| parse_ini(&text))
            .unwrap_or_default()
    };
    let credentials = read(credentials);
    let config = read(config);
    // In the config file every profile but the default is `[profile NAME]`.
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let from_credentials = credentials.get(profile);
    let from_config = config.get(&config_section);
    let get = |key: &str| {
        from_credentials
            .and_then(|s| s.get(key))
            .or_else(|| from_config.and_then(|s| s.get(key)))
            .cloned()
    };
    Credentials {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint: get("endpoint_url"),
        profile: (from_credentials.is_some() || from_config.is_some()).then(|| profile.to_string()),
    }
}

/// Sections of an INI file: `[name]` then `key = value` lines; `#` and `;`
/// start comments; keys are lower-cased, as the AWS tools read them.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            sections
                .entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_profile_reads_both_files_credentials_first() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = D\n\n[offsite]\n# comment\naws_access_key_id = AK\nAWS_SECRET_ACCESS_KEY=SK\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = us-east-1\n[profile offsite]\nregion = eu-west-3\nendpoint_url = https://s3.example\naws_access_key_id = ignored\n",
        )
        .unwrap();
        let c = from_files("offsite", Some(&creds), Some(&config));
        assert_eq!(c.access_key_id.as_deref(), Some("AK"));
        assert_eq!(c.secret_access_key.as_deref(), Some("SK"));
        assert_eq!(c.region.as_deref(), Some("eu-west-3"));
        assert_eq!(c.endpoint.as_deref(), Some("https://s3.example"));
        assert_eq!(c.profile.as_deref(), Some("offsite"));
        let d = from_files("default", Some(&creds), Some(&config));
        assert_eq!(d.access_key_id.as_deref(), Some("D"));
        assert_eq!(d.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn missing_files_and_profiles_give_nothing() {
        let c = from_files("nope", Some(Path::new("/nonexistent/x")), None);
        assert_eq!(c, Credentials::default());
    }
}
