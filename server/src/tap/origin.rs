//! Where a result came from, as the IVOA "Data Origin in the VO" note names
//! it: `INFO` elements in VOTables (and so in VOParquet's embedded header and
//! the JSON format's `infos`), and the same items as HTTP headers for the
//! formats that have no place for them (CSV, TSV).

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::app::Config;

/// The IVOID of the protocol every result here is served through.
pub(crate) const TAP_PROTOCOL: &str = "ivo://ivoa.net/std/TAP";

/// The longest `request` item given in full: a request with a 100 000-id `IN`
/// list would otherwise repeat megabytes in the header of every format (the
/// `query` item still holds the ADQL whole).
const REQUEST_LIMIT: usize = 16 << 10;

/// Who publishes the results, for the `publisher`, `contact` and `citation` items.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The data centre that produced the result.
    pub name: String,
    /// An e-mail address or URL that reaches the publisher, if given.
    pub contact: Option<String>,
    /// How to cite the data (a DOI, say); by default each result's replay URL,
    /// which gives the same rows again.
    pub citation: Option<String>,
}

impl Default for Publisher {
    fn default() -> Publisher {
        Publisher {
            name: "Vera C. Rubin Observatory".into(),
            contact: Some("https://community.lsst.org".into()),
            citation: None,
        }
    }
}

/// The request a result answers: what `request` and `request_date` say.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    request: String,
    query: String,
    date: String,
}

impl Origin {
    /// A request to `path` of the service with `pairs` as its parameters (in
    /// the form-urlencoded query string the note asks for, whatever the
    /// method), asking for the ADQL `query` as its caller wrote it.
    pub(crate) fn of(
        config: &Config,
        path: &str,
        pairs: &[(String, String)],
        query: &str,
    ) -> Origin {
        let mut request = format!("{}{path}", config.base_url);
        if !pairs.is_empty() {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            if request.len() + query.len() < REQUEST_LIMIT {
                request.push('?');
                request.push_str(&query);
            }
        }
        Origin {
            request,
            query: query.to_string(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// The items the service adds to those the engine gives (the snapshot as
    /// `resource_version`, the `query`, the software): `replay` is the result's
    /// replay URL, if it has a token.
    pub(crate) fn infos(&self, config: &Config, replay: Option<&str>) -> Vec<(String, String)> {
        let p = &config.publisher;
        let mut infos = vec![
            ("publisher".to_string(), p.name.clone()),
            ("service_protocol".into(), TAP_PROTOCOL.into()),
            ("request".into(), self.request.clone()),
            ("request_date".into(), self.date.clone()),
            ("query".into(), self.query.clone()),
        ];
        if let Some(c) = &p.contact {
            infos.push(("contact".into(), c.clone()));
        }
        if let Some(c) = p.citation.as_deref().or(replay) {
            infos.push(("citation".into(), c.to_string()));
        }
        infos
    }

    /// The items as response headers (`X-Data-Origin-Publisher`, ...) and the
    /// citation as RFC 8574's `Link: <...>; rel="cite-as"`; items a header
    /// cannot carry as they are (non-ASCII text) are left to the document.
    pub(crate) fn headers(
        &self,
        config: &Config,
        replay: Option<&str>,
        snapshot: Option<u64>,
        headers: &mut HeaderMap,
    ) {
        let mut infos = self.infos(config, replay);
        infos.retain(|(name, _)| name != "request" && name != "query");
        if let Some(k) = snapshot {
            infos.push(("resource_version".into(), k.to_string()));
        }
        infos.push((
            "server_software".into(),
            format!("ppdb {}", env!("CARGO_PKG_VERSION")),
        ));
        for (name, value) in infos {
            let name = format!("x-data-origin-{}", name.replace('_', "-"));
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                headers.insert(n, v);
            }
        }
        let cite = config.publisher.citation.as_deref().or(replay);
        if let Some(c) = cite.filter(|c| c.starts_with("http://") || c.starts_with("https://"))
            && let Ok(v) = HeaderValue::from_str(&format!("<{c}>; rel=\"cite-as\""))
        {
            headers.append(header::LINK, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_its_url_with_the_parameters_form_encoded_unless_too_long() {
        let config = Config::new("http://127.0.0.1:9".into());
        let pairs = vec![
            ("LANG".to_string(), "ADQL".to_string()),
            ("QUERY".into(), "SELECT TOP 1 * FROM ppdb.DiaObject".into()),
        ];
        let o = Origin::of(&config, "/tap/sync", &pairs, "");
        assert_eq!(
            o.request,
            "http://127.0.0.1:9/tap/sync?LANG=ADQL&QUERY=SELECT+TOP+1+*+FROM+ppdb.DiaObject"
        );
        let long = vec![("QUERY".to_string(), "x".repeat(REQUEST_LIMIT))];
        assert_eq!(
            Origin::of(&config, "/tap/sync", &long, "").request,
            "http://127.0.0.1:9/tap/sync"
        );
    }

    #[test]
    fn the_citation_is_the_replay_url_unless_the_operator_names_one() {
        let mut config = Config::new("http://h".into());
        let o = Origin::of(&config, "/tap/sync", &[], "SELECT 1");
        let cite = |infos: Vec<(String, String)>| {
            infos
                .into_iter()
                .find(|(n, _)| n == "citation")
                .map(|(_, v)| v)
        };
        assert_eq!(
            cite(o.infos(&config, Some("http://h/tap/replay/t"))).as_deref(),
            Some("http://h/tap/replay/t")
        );
        assert_eq!(cite(o.infos(&config, None)), None);
        config.publisher.citation = Some("doi:10.0/x".into());
        assert_eq!(
            cite(o.infos(&config, Some("http://h/tap/replay/t"))).as_deref(),
            Some("doi:10.0/x")
        );
        let mut headers = HeaderMap::new();
        o.headers(
            &config,
            Some("http://h/tap/replay/t"),
            Some(7),
            &mut headers,
        );
        assert_eq!(headers["x-data-origin-citation"], "doi:10.0/x");
        assert_eq!(headers["x-data-origin-resource-version"], "7");
        // A DOI is not a URL: no cite-as link.
        assert!(headers.get(header::LINK).is_none());
    }
}
