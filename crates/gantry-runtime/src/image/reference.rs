//! Image references, parsed and normalised as Docker and containerd do.
//!
//! `busybox` is `docker.io/library/busybox:latest`; `localhost:5000/x` keeps its registry; `name@sha256:...` names
//! content; `name:tag@sha256:...` keeps both, and the digest is what a pull fetches.

use std::fmt;

/// The registry of references that name none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag of references that name neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Why a string is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("the reference is empty")]
    Empty,
    /// A repository path component is not lowercase letters and digits joined by `.`, `_`, `__` or dashes.
    #[error("invalid repository path component {0:?} (lowercase letters and digits, joined by '.', '_', '__' or '-')")]
    InvalidComponent(String),
    /// Repository names are lowercase.
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    /// The registry part is not a host name or address with an optional port.
    #[error("invalid registry {0:?}")]
    InvalidRegistry(String),
    /// A tag is 1 to 128 word characters, dots and dashes, not starting with a dot or a dash.
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    /// A digest is `sha256:` and 64 lowercase hexadecimal digits.
    #[error("invalid digest {0:?} (expected sha256: and 64 hexadecimal digits)")]
    InvalidDigest(String),
    /// The repository name is longer than 255 characters.
    #[error("repository name is longer than 255 characters")]
    TooLong,
    /// A bare 64-digit hexadecimal string is an image ID, not a name.
    #[error("{0:?} looks like an image ID, not a repository name")]
    LooksLikeId(String),
}

/// A normalised image reference: registry, repository, and a tag and/or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference. A reference with neither a tag nor a digest gets the tag `latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                validate_digest(digest)?;
                (name, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/': a ':' before it belongs to a registry port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_and_tag[..at], Some(name_and_tag[at + 1..].to_string()))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            validate_tag(tag)?;
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(ReferenceError::LooksLikeId(name.to_string()));
        }
        let (registry, repository) = split_registry(name);
        validate_registry(registry)?;
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if repository.len() > 255 {
            return Err(ReferenceError::TooLong);
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(repository));
        }
        for component in repository.split('/') {
            validate_component(component)?;
        }
        let tag = if tag.is_none() && digest.is_none() { Some(DEFAULT_TAG.to_string()) } else { tag };
        Ok(Reference { registry: registry.to_string(), repository, tag, digest })
    }

    /// The registry host (with its port, if any): `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:...`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, when the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|tag| format!("{}:{tag}", self.name()))
    }

    /// `registry/repository@digest` for a digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `name` into registry and repository. The first component is a registry only when it looks like a host:
/// it has a `.` or a `:`, is `localhost`, or has uppercase letters (which repositories may not).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn validate_registry(registry: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidRegistry(registry.to_string());
    let port = if let Some(rest) = registry.strip_prefix('[') {
        // An IPv6 address in brackets, as in a URL.
        let (address, after) = rest.split_once(']').ok_or_else(invalid)?;
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid());
        }
        match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        }
    } else {
        let (host, port) = match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(invalid());
            }
        }
        port
    };
    match port {
        Some(port) if !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() => Err(invalid()),
        _ => Ok(()),
    }
}

/// A path component: `[a-z0-9]+` runs joined by one `.`, one or two `_`, or any number of `-`.
fn validate_component(component: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidComponent(component.to_string());
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(invalid());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(ReferenceError::InvalidTag(tag.to_string())) }
}

/// Checks that `digest` is `sha256:` followed by 64 lowercase hexadecimal digits.
pub fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(()),
        _ => Err(ReferenceError::InvalidDigest(digest.to_string())),
    }
}

/// Whether `hex` is 64 lowercase hexadecimal digits.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn short_names_are_docker_hub_library_images_with_the_latest_tag() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
    }

    #[test]
    fn registries_with_ports_and_localhost_are_kept() {
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("127.0.0.1:5000/team/app:v1"), "127.0.0.1:5000/team/app:v1");
        assert_eq!(norm("registry.example.com/a/b/c"), "registry.example.com/a/b/c:latest");
        assert_eq!(norm("[::1]:5000/x:1"), "[::1]:5000/x:1");
        let r = Reference::parse("localhost:5000/x:2").unwrap();
        assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "x", Some("2")));
    }

    #[test]
    fn digests_replace_the_default_tag_and_may_follow_a_tag() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1.36@{D}"));
        assert_eq!(r.tagged().as_deref(), Some("docker.io/library/busybox:1.36"));
    }

    #[test]
    fn invalid_references_are_refused_with_the_reason() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert_eq!(Reference::parse("Busybox"), Err(ReferenceError::Uppercase("library/Busybox".into())));
        assert!(matches!(Reference::parse("a//b"), Err(ReferenceError::InvalidComponent(_))));
        assert!(matches!(Reference::parse("a/-b"), Err(ReferenceError::InvalidComponent(_))));
        assert!(matches!(Reference::parse("a/b..c"), Err(ReferenceError::InvalidComponent(_))));
        assert!(matches!(Reference::parse("busybox:"), Err(ReferenceError::InvalidTag(_))));
        assert!(matches!(Reference::parse("busybox:-x"), Err(ReferenceError::InvalidTag(_))));
        assert!(matches!(Reference::parse("busybox@sha256:abc"), Err(ReferenceError::InvalidDigest(_))));
        assert!(matches!(Reference::parse("busybox@md5:abc"), Err(ReferenceError::InvalidDigest(_))));
        assert!(matches!(Reference::parse("host:port/x"), Err(ReferenceError::InvalidRegistry(_))));
        assert!(matches!(Reference::parse("ex-.com/x"), Err(ReferenceError::InvalidRegistry(_))));
        assert!(matches!(Reference::parse(&"a".repeat(64)), Err(ReferenceError::LooksLikeId(_))));
        assert!(matches!(Reference::parse(&"a".repeat(300)), Err(ReferenceError::TooLong)));
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "a-b.c_d"] {
            assert!(validate_component(ok).is_ok(), "{ok}");
        }
        for bad in ["a___b", "a._b", "a.", "_a", "a.-b"] {
            assert!(validate_component(bad).is_err(), "{bad}");
        }
    }
}
