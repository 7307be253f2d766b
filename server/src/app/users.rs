//! Who is asking: bearer tokens name privileged users, who see embargoed rows.
//!
//! Tokens come from a file (`--tokens`) and from the `PPDB_TOKENS` variable,
//! one `user=secret` per line (or separated by commas); `#` starts a comment.
//! A request without `Authorization` is anonymous and sees only what the
//! embargo releases; a request with a token this server does not know is
//! refused (401) rather than quietly served as anonymous.

use std::sync::Arc;

/// Secrets shorter than this are refused when the server starts.
const MIN_SECRET: usize = 16;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No bearer token; from this address (when known).
    Anonymous(Option<std::net::IpAddr>),
    /// A user named by a known bearer token (privileged: sees embargoed rows).
    User(String),
}

impl Caller {
    /// Whether the caller sees embargoed rows.
    pub fn privileged(&self) -> bool {
        matches!(self, Caller::User(_))
    }

    /// The owner recorded on the caller's async jobs.
    pub fn owner(&self) -> Option<String> {
        match self {
            Caller::Anonymous(_) => None,
            Caller::User(name) => Some(name.clone()),
        }
    }

    /// Who the caller is for a share of the service: the user, or for an
    /// anonymous caller its address (anonymous callers cannot be told apart
    /// otherwise).
    pub fn key(&self) -> String {
        match self {
            Caller::User(name) => format!("user {name}"),
            Caller::Anonymous(Some(ip)) => format!("address {}", network(*ip)),
            Caller::Anonymous(None) => "anonymous".to_string(),
        }
    }
}

/// The network an address stands for when callers are told apart: an IPv6
/// address's /64 (one subscriber's, which hands its hosts any address in it:
/// counted one by one, a single host could take every connection and share),
/// and an IPv4 address (also one written as IPv6) itself.
pub fn network(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The known bearer tokens.
#[derive(Debug, Clone, Default)]
pub struct Users {
    entries: Arc<Vec<(String, String)>>,
}

impl Users {
    /// Reads `user=secret` entries; `origin` names where they came from, for errors.
    pub fn parse(text: &str, origin: &str) -> Result<Users, String> {
        let mut entries = Vec::new();
        for (n, line) in text.split(['\n', ',']).enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((user, secret)) = line.split_once('=') else {
                return Err(format!(
                    "{origin}, entry {}: expected user=secret, got '{}'",
                    n + 1,
                    line.chars().take(20).collect::<String>()
                ));
            };
            let (user, secret) = (user.trim(), secret.trim());
            if user.is_empty()
                || !user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
            {
                return Err(format!(
                    "{origin}, entry {}: the user name must be letters, digits, '.', '_', '@' or '-'",
                    n + 1
                ));
            }
            if secret.len() < MIN_SECRET || secret.chars().any(|c| c.is_whitespace()) {
                return Err(format!(
                    "{origin}, entry {} ({user}): a secret must be at least {MIN_SECRET} characters \
                     without spaces",
                    n + 1
                ));
            }
            entries.push((user.to_string(), secret.to_string()));
        }
        Ok(Users {
            entries: Arc::new(entries),
        })
    }

    /// Both sets of entries.
    pub fn merge(self, other: Users) -> Users {
        let mut entries = (*self.entries).clone();
        entries.extend(other.entries.iter().cloned());
        Users {
            entries: Arc::new(entries),
        }
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no user has a token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The user a secret names.
    pub(crate) fn user_of(&self, secret: &str) -> Option<&str> {
        // Every entry is compared in full, so the time taken says nothing about
        // how much of a guess was right.
        let mut found = None;
        for (user, known) in self.entries.iter() {
            if same(known.as_bytes(), secret.as_bytes()) {
                found = Some(user.as_str());
            }
        }
        found
    }

    /// Whether a job owner is still a known user (jobs run with their owner's privilege).
    pub fn knows(&self, user: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == user)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_are_refused_with_their_place() {
        let u = Users::parse(
            "# staff\nalice=0123456789abcdefXYZ\n\nbob = fedcba9876543210fff # night\n",
            "tokens.txt",
        )
        .unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u.user_of("0123456789abcdefXYZ"), Some("alice"));
        assert_eq!(u.user_of("fedcba9876543210fff"), Some("bob"));
        assert_eq!(u.user_of("0123456789abcdef"), None);
        assert_eq!(u.user_of(""), None);
        let e = Users::parse("carol=short", "PPDB_TOKENS").unwrap_err();
        assert!(e.contains("PPDB_TOKENS, entry 1 (carol)"), "{e}");
        let e = Users::parse("a=0123456789abcdef0,nonsense", "f").unwrap_err();
        assert!(e.contains("entry 2"), "{e}");
        let e = Users::parse("../x=0123456789abcdef0", "f").unwrap_err();
        assert!(e.contains("user name"), "{e}");
    }

    #[test]
    fn callers_are_told_apart_by_ipv4_address_or_ipv6_slash_64() {
        let key = |a: &str| Caller::Anonymous(Some(a.parse().unwrap())).key();
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
