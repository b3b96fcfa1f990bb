//! Authentication: who is asking. X.509 client certificates signed by the cluster CA (CN = user, O = group),
//! or bearer tokens from a static token file. Authorization comes later (RBAC); for now every authenticated
//! user may do anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// The groups the user belongs to (always including `system:authenticated`).
    pub groups: Vec<String>,
}

impl User {
    /// A user with the given groups plus `system:authenticated`.
    pub fn new(name: impl Into<String>, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User { name: name.into(), groups }
    }
}

/// A problem with the token file. Each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `token,user,uid[,"group1,group2"]`.
    #[error("{path}:{line}: expected token,user,uid[,\"group1,group2\"]")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
    },
}

/// Static bearer tokens, in kube-apiserver's `--token-auth-file` format: `token,user,uid[,"group1,group2"]`.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, User>,
}

impl TokenFile {
    /// Reads and parses a token file.
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        TokenFile::parse(&text).map_err(|line| TokenFileError::Malformed { path: path.to_path_buf(), line })
    }

    /// Parses the file's text; the error is the 1-based number of the first malformed line.
    pub fn parse(text: &str) -> Result<TokenFile, usize> {
        let mut tokens = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            let [token, user, _uid, rest @ ..] = fields.as_slice() else { return Err(index + 1) };
            if token.is_empty() || user.is_empty() {
                return Err(index + 1);
            }
            let groups = rest
                .first()
                .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            tokens.insert(token.clone(), User::new(user.clone(), groups));
        }
        Ok(TokenFile { tokens })
    }

    /// The user a token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }

    /// Adds a token (e.g. the join token's identity).
    pub fn insert(&mut self, token: String, user: User) {
        self.tokens.insert(token, user);
    }
}

/// Splits one CSV line, honouring double quotes (groups are a quoted, comma-separated list).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current).trim().to_string()),
            c => current.push(c),
        }
    }
    fields.push(current.trim().to_string());
    fields
}

/// The bearer token of an `Authorization` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_carry_users_and_quoted_groups() {
        let file = TokenFile::parse("# comment\nabc,alice,1,\"dev,ops\"\ndef,bob,2\n").unwrap();
        let alice = file.authenticate("abc").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(file.authenticate("def").unwrap().name, "bob");
        assert!(file.authenticate("nope").is_none());
    }

    #[test]
    fn malformed_token_lines_are_reported_by_number() {
        assert_eq!(TokenFile::parse("abc,alice,1\nbroken\n").unwrap_err(), 2);
    }

    #[test]
    fn bearer_tokens_are_taken_from_the_header() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
