//! Image references: `busybox`, `busybox:1.36`, `docker.io/library/busybox:1.36`,
//! `ghcr.io/org/app@sha256:...`.
//!
//! Normalization follows Docker's familiar names, kept simple: a first component with a `.` or
//! `:` or equal to `localhost` is a registry, otherwise the registry is `docker.io`; a single
//! component on `docker.io` gets `library/`; a missing tag is `latest`. Names are stored fully
//! qualified (`docker.io/library/busybox:latest`) and shown familiar (`busybox`).

use super::ImageError;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, normalized reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io/library/busybox`.
    pub repository: String,
    pub tag: String,
    /// `sha256:...` when given as `name@digest`.
    pub digest: Option<String>,
}

impl Reference {
    /// `repository:tag`, the key of the image index.
    pub fn name(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

fn invalid(r: &str, reason: &str) -> ImageError {
    ImageError::InvalidReference {
        reference: r.to_string(),
        reason: reason.to_string(),
    }
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or '-'+
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses and normalizes `r`.
pub fn parse(r: &str) -> Result<Reference, ImageError> {
    if r.is_empty() || r.len() > 255 {
        return Err(invalid(r, "must be 1-255 characters"));
    }
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => {
            super::content::validate_digest(d)?;
            (n, Some(d.to_string()))
        }
        None => (r, None),
    };
    // A tag is after the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    let tag = tag.unwrap_or(DEFAULT_TAG);
    if !valid_tag(tag) {
        return Err(invalid(r, "invalid tag"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let registry = if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let reg = parts.remove(0);
        if !reg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        {
            return Err(invalid(r, "invalid registry"));
        }
        reg.to_string()
    } else {
        DEFAULT_REGISTRY.to_string()
    };
    if parts.is_empty() || !parts.iter().all(|c| valid_path_component(c)) {
        return Err(invalid(
            r,
            "repository must be lowercase letters, digits and separators",
        ));
    }
    if registry == DEFAULT_REGISTRY && parts.len() == 1 {
        parts.insert(0, "library");
    }
    Ok(Reference {
        repository: format!("{registry}/{}", parts.join("/")),
        tag: tag.to_string(),
        digest,
    })
}

/// The short form users type: `docker.io/library/busybox` → `busybox`.
pub fn familiar_repository(repo: &str) -> &str {
    repo.strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo)
}

/// Splits a stored `repository:tag` name.
pub fn split_name(name: &str) -> (&str, &str) {
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            (
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox:1.36",
            ),
            ("me/app", "docker.io/me/app:latest"),
            ("localhost:5000/app:v1", "localhost:5000/app:v1"),
            ("ghcr.io/org/team/app", "ghcr.io/org/team/app:latest"),
        ] {
            assert_eq!(parse(input).expect(input).name(), want, "{input}");
        }
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "BusyBox",
            "a::b",
            "a:",
            "a/../b",
            "app@sha256:xyz",
            "a:b c",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn familiar_and_split() {
        assert_eq!(familiar_repository("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar_repository("docker.io/me/app"), "me/app");
        assert_eq!(familiar_repository("ghcr.io/x/y"), "ghcr.io/x/y");
        assert_eq!(
            split_name("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }
}
