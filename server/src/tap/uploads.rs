//! TAP `UPLOAD`: `name,param:part` (a part of a multipart request) and
//! `name,http(s)://...` (fetched by the service), each a VOTable read as
//! `TAP_UPLOAD.name`.

use axum::body::Bytes;
use engine::Upload;
use futures::StreamExt;

use crate::app::Shared;

/// One table named in `UPLOAD`.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    /// The table name.
    pub name: String,
    /// Where it comes from: `param:part` or an http(s) URL.
    pub source: String,
}

/// Splits an `UPLOAD` value (`name,uri;name,uri`); the error is for the user.
pub fn named(value: &str) -> Result<Vec<Named>, String> {
    let mut out: Vec<Named> = Vec::new();
    for item in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, source)) = item.split_once(',') else {
            return Err(format!(
                "UPLOAD item '{item}' is not name,URI (e.g. targets,param:targets)"
            ));
        };
        let name = name.trim();
        engine::upload::check_name(name).map_err(|e| e.message())?;
        if out.iter().any(|n| n.name.eq_ignore_ascii_case(name)) {
            return Err(format!("UPLOAD names '{name}' twice"));
        }
        let source = source.trim();
        let lower = source.to_ascii_lowercase();
        if !(lower.starts_with("param:")
            || lower.starts_with("http://")
            || lower.starts_with("https://"))
        {
            return Err(format!(
                "UPLOAD '{name}' comes from '{source}': use param:<part> (a part of this \
                 multipart request) or an http(s) URL"
            ));
        }
        out.push(Named {
            name: name.to_string(),
            source: source.to_string(),
        });
    }
    Ok(out)
}

/// The part name of a `param:` source, checked so it can name a stored object.
pub fn part_name(source: &str) -> Option<&str> {
    let part = source.get(6..)?;
    let ok = !part.is_empty()
        && part.len() <= 128
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && part != "."
        && part != "..";
    ok.then_some(part)
}

/// Fetches an http(s) upload, refusing more than the upload limit, and (unless
/// the service allows private uploads) any address that is not public.
pub async fn fetch(app: &Shared, url: &str) -> Result<Bytes, String> {
    let limit = app.config.upload_limit;
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
    if !app.config.private_uploads {
        // Otherwise any client could make the service read what only it can reach:
        // its own endpoints, the cluster's, a cloud metadata address. Names are
        // checked when they resolve, address literals here and at every redirect;
        // a proxy would resolve names where this cannot see them.
        public_host(url)?;
        builder = builder
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(PublicOnly))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if let Err(e) = public_host(attempt.url().as_str()) {
                    attempt.error(e)
                } else {
                    attempt.follow()
                }
            }));
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot fetch uploads: {e}"))?;
    let response = client.get(url).send().await.map_err(|e| {
        // reqwest says only "error sending request"; the why is in its causes,
        // which also tell of this service's network (its certificates, its
        // resolver): the operator reads them in the log, the caller gets the kind.
        let mut why = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            why = format!("{why}: {c}");
            cause = c.source();
        }
        eprintln!("warning: fetching the upload {url} failed: {why}");
        let kind = if why.contains("private or local address") {
            return private(url);
        } else if e.is_timeout() {
            "it did not answer in time"
        } else if e.is_redirect() {
            "its redirects went where this service does not follow"
        } else if why.contains("certificate") || why.contains("tls") || why.contains("TLS") {
            "its TLS certificate was not accepted"
        } else if why.contains("dns error") || why.contains("lookup address") {
            "its host name did not resolve"
        } else if e.is_connect() {
            "no connection could be made"
        } else {
            "the request failed"
        };
        format!("fetching the upload {url} failed: {kind}")
    })?;
    if !response.status().is_success() {
        return Err(format!(
            "fetching the upload {url} failed: HTTP {}",
            response.status()
        ));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("fetching the upload {url} failed: {e}"))?;
        body.extend_from_slice(&chunk);
        if body.len() as u64 > limit {
            return Err(too_big(app, url));
        }
    }
    Ok(Bytes::from(body))
}

/// Refuses a URL whose host is an address literal that is not public.
fn public_host(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("the upload URL {url}: {e}"))?;
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(a)) => std::net::IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => std::net::IpAddr::V6(a),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(format!("the upload URL {url} names no host")),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(private(url))
    }
}

fn private(what: &str) -> String {
    format!(
        "the upload {what} is at a private or local address, which this service does not \
         fetch from"
    )
}

/// Resolves names as the system does, keeping only public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(private(&host).into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local
/// (cloud metadata lives there), shared, reserved, documentation or multicast.
fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let [b0, b1, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || b0 == 0
                || (b0 == 100 && (64..128).contains(&b1))
                || (b0 == 192 && b1 == 0)
                || (b0 == 198 && (18..20).contains(&b1))
                || b0 >= 240)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            // IPv4 addresses carried inside IPv6 are as public as the IPv4 one:
            // mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), 6to4 (2002:ab:cd::).
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            if s[..6] == [0; 6] && !a.is_loopback() && !a.is_unspecified() {
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                )));
            }
            if s[0] == 0x2002 {
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                )));
            }
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_unique_local()
                || a.is_unicast_link_local()
                // Documentation, NAT64 (well-known and local-use) and Teredo.
                || s[0] == 0x2001 && s[1] == 0x0db8
                || s[0] == 0x0064 && s[1] == 0xff9b
                || s[0] == 0x2001 && s[1] == 0x0000)
        }
    }
}

/// The message for an upload over the limit.
pub fn too_big(app: &Shared, what: &str) -> String {
    format!(
        "the upload {what} is larger than this service's limit of {} bytes",
        app.config.upload_limit
    )
}

/// Where the `param:` parts of a request are.
pub enum Parts<'a> {
    /// In the request itself (sync).
    Inline(&'a [(String, Bytes)]),
    /// Stored with an async job, at `jobs/{id}/parts/{part}`.
    Job(&'a str),
}

impl Parts<'_> {
    async fn get(&self, app: &Shared, part: &str) -> Result<Option<Bytes>, String> {
        match self {
            Parts::Inline(parts) => Ok(parts
                .iter()
                .find(|(n, _)| n == part)
                .map(|(_, b)| b.clone())),
            Parts::Job(id) => app
                .engine
                .state()
                .read(&format!("jobs/{id}/parts/{part}"))
                .await
                .map_err(|e| crate::tap::failure::Failure::from(&e).message),
        }
    }
}

/// The most tables one request may upload.
const MAX_UPLOADS: usize = 8;

/// Reads the tables an `UPLOAD` value names.
pub async fn read(app: &Shared, value: &str, parts: &Parts<'_>) -> Result<Vec<Upload>, String> {
    let mut out = Vec::new();
    let named = named(value)?;
    if named.len() > MAX_UPLOADS {
        return Err(format!(
            "UPLOAD names {} tables; a query may upload {MAX_UPLOADS} at most",
            named.len()
        ));
    }
    for n in named {
        let bytes = if n.source.to_ascii_lowercase().starts_with("param:") {
            let Some(p) = part_name(&n.source) else {
                return Err(format!("'{}' does not name a request part", n.source));
            };
            parts.get(app, p).await?.ok_or_else(|| {
                format!(
                    "UPLOAD '{}' names part '{p}', but the request has no such part \
                     (send it as a file in a multipart/form-data body)",
                    n.name
                )
            })?
        } else {
            fetch(app, &n.source).await?
        };
        if bytes.len() as u64 > app.config.upload_limit {
            return Err(too_big(app, &n.name));
        }
        // Parsing is work for a core, not for the runtime's threads that answer requests.
        let name = n.name.clone();
        let upload = tokio::task::spawn_blocking(move || Upload::from_votable(&name, &bytes))
            .await
            .map_err(|e| format!("reading the upload {} stopped: {e}", n.name))?;
        out.push(upload.map_err(|e| e.message())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_public_addresses_are_fetched_from() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            // IPv4 inside IPv6: compatible, 6to4, NAT64, Teredo.
            "::127.0.0.1",
            "::169.254.169.254",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "64:ff9b::7f00:1",
            "2001:0:4136:e378::1",
        ] {
            let ip: std::net::IpAddr = private.parse().unwrap();
            assert!(!is_public(ip), "{private}");
        }
        for public in [
            "8.8.8.8",
            "134.79.1.1",
            "2001:4860:4860::8888",
            "2002:808:808::1",
        ] {
            let ip: std::net::IpAddr = public.parse().unwrap();
            assert!(is_public(ip), "{public}");
        }
        assert!(public_host("http://[::1]:8080/x").is_err());
        assert!(public_host("http://[::127.0.0.1]/x").is_err());
        assert!(public_host("http://169.254.169.254/latest/meta-data/").is_err());
        assert!(public_host("https://8.8.8.8/x.xml").is_ok());
        // Names are checked when they resolve.
        assert!(public_host("https://example.org/x.xml").is_ok());
    }

    use super::*;

    #[test]
    fn upload_values_are_split_and_checked() {
        let n = named("t1,param:a; t2,https://example.org/x.xml").unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].source, "https://example.org/x.xml");
        for (bad, want) in [
            ("t1", "not name,URI"),
            ("1t,param:a", "cannot name an upload"),
            ("t,file:///etc/passwd", "use param:"),
            ("t,param:a;T,param:b", "twice"),
        ] {
            let e = named(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert_eq!(part_name("param:ok-1"), Some("ok-1"));
        assert_eq!(part_name("param:../x"), None);
        assert_eq!(part_name("param:"), None);
    }
}
