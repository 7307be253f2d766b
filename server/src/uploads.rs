//! TAP `UPLOAD`: `name,param:part` (a part of a multipart request) and
//! `name,http(s)://...` (fetched by the service), each a VOTable read as
//! `TAP_UPLOAD.name`.

use axum::body::Bytes;
use engine::Upload;
use futures::StreamExt;

use crate::tap::Shared;

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

/// Fetches an http(s) upload, refusing more than the upload limit.
pub async fn fetch(app: &Shared, url: &str) -> Result<Bytes, String> {
    let limit = app.config.upload_limit;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot fetch uploads: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching the upload {url} failed: {e}"))?;
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
                .map_err(|e| e.message()),
        }
    }
}

/// Reads the tables an `UPLOAD` value names.
pub async fn read(app: &Shared, value: &str, parts: &Parts<'_>) -> Result<Vec<Upload>, String> {
    let mut out = Vec::new();
    for n in named(value)? {
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
        out.push(Upload::from_votable(&n.name, &bytes).map_err(|e| e.message())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
