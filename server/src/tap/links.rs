//! `/tap/links`: the DataLink 1.1 `{links}` endpoint. Each `ID` is a
//! `diaObjectId`, whose links are TAP queries for the object's current
//! version (`#this`), its light curve and its forced photometry
//! (`#coderived`); or a detector-visit `VISIT/DETECTOR`, whose links are its
//! images where the operator says they are served (`--image-url-template`:
//! the calexp `#this`, the difference image `#derivation`), its processing
//! summary (`#auxiliary`) and the DiaSources and forced photometry measured
//! on it (`#derivation`). Queries read the snapshot `AS_OF` names (results
//! give theirs in their descriptor).
//!
//! The links are made from the ID alone: nothing is read, so they say
//! nothing of whether the object exists, embargoed or not; the queries they
//! point to apply the caller's embargo.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::Shared;
use crate::tap::failure::{VOTABLE_MIME, error};
use crate::tap::params::{Params, Posted};

/// The most IDs one request may ask about.
const MAX_IDS: usize = 1000;

/// DataLink 1.1's fields, in its order: name, datatype, UCD.
const FIELDS: [(&str, &str, &str); 12] = [
    ("ID", "char", "meta.id;meta.main"),
    ("access_url", "char", "meta.ref.url"),
    ("service_def", "char", "meta.ref"),
    ("error_message", "char", "meta.code.error"),
    ("semantics", "char", "meta.code"),
    ("description", "char", "meta.note"),
    ("content_type", "char", "meta.code.mime"),
    ("content_length", "long", "phys.size;meta.file"),
    ("content_qualifier", "char", "meta.code.class"),
    ("local_semantics", "char", "meta.code"),
    ("link_auth", "char", "meta.code"),
    ("link_authorized", "boolean", "meta.code"),
];

/// The links of one object: (semantics, table, what it is).
const LINKS: [(&str, &str, &str, &str); 3] = [
    (
        "#this",
        "ppdb.DiaObject",
        "",
        "the object: its version current at the snapshot",
    ),
    (
        "#coderived",
        "ppdb.DiaSource",
        " ORDER BY midpointMjdTai",
        "light curve: the object's DiaSources",
    ),
    (
        "#coderived",
        "ppdb.DiaForcedSource",
        " ORDER BY midpointMjdTai",
        "forced photometry: the object's DiaForcedSources",
    ),
];

/// `GET /tap/links`.
pub(crate) async fn links_get(
    State(app): State<Shared>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    links(&app, &Params::new(pairs))
}

/// `POST /tap/links`.
pub(crate) async fn links_post(State(app): State<Shared>, Posted(params): Posted) -> Response {
    links(&app, &params)
}

/// Text as XML content: escaped, control characters (which XML cannot
/// carry) as spaces, at most 200 characters.
/// A cell as XML text. Only the caller's ID is cut (to 200 characters): a
/// URL cut short would run another query.
fn xml(s: &str, caller_said: bool) -> String {
    let keep = if caller_said { 200 } else { usize::MAX };
    let clean: String = s
        .chars()
        .take(keep)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::tap::failure::esc(&clean)
}

fn links(app: &Shared, params: &Params) -> Response {
    let ids: Vec<String> = params
        .pairs()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("ID"))
        .map(|(_, v)| v)
        .collect();
    if ids.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "ID is missing: give a diaObjectId or a detector-visit (VISIT/DETECTOR) as ID=... \
             (repeat ID for more)",
        );
    }
    if ids.len() > MAX_IDS {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "{} IDs asked for: at most {MAX_IDS} in one request",
                ids.len()
            ),
        );
    }
    let as_of = match params.get("AS_OF").map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match engine::as_of(a) {
            Ok(_) => Some(a.to_string()),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("AS_OF: {e}")),
        },
    };
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n\
         <RESOURCE type=\"results\">\n<INFO name=\"standardID\" value=\"ivo://ivoa.net/std/DataLink#links-1.1\"/>\n<TABLE>\n",
    );
    for (name, datatype, ucd) in FIELDS {
        let size = match (datatype, name) {
            ("char", _) => " arraysize=\"*\"",
            (_, "content_length") => " unit=\"byte\"",
            _ => "",
        };
        let _ = writeln!(
            out,
            "<FIELD name=\"{name}\" datatype=\"{datatype}\"{size} ucd=\"{ucd}\"/>"
        );
    }
    out.push_str("<DATA><TABLEDATA>\n");
    let sync = format!("{}/tap/sync", app.config.base_url);
    for id in &ids {
        let row = |cells: [&str; 12]| {
            let mut tr = String::from("<TR>");
            for (i, c) in cells.iter().enumerate() {
                let _ = write!(tr, "<TD>{}</TD>", xml(c, i == 0));
            }
            tr.push_str("</TR>\n");
            tr
        };
        // A link: the ID, where it points, what it is, its content type.
        let link = |url: &str, semantics: &str, description: &str, mime: &str| {
            row([
                id,
                url,
                "",
                "",
                semantics,
                description,
                mime,
                "",
                "",
                "",
                "",
                "",
            ])
        };
        let tap = |query: &str| {
            let mut pairs = vec![("REQUEST", "doQuery"), ("LANG", "ADQL"), ("QUERY", query)];
            if let Some(a) = &as_of {
                pairs.push(("AS_OF", a));
            }
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            format!("{sync}?{encoded}")
        };
        if let Some((visit, detector)) = detector_visit(id) {
            for (semantics, url, description, mime) in
                visit_links(app.config.image_urls.as_deref(), visit, detector, tap)
            {
                out.push_str(&link(&url, semantics, &description, mime));
            }
            continue;
        }
        let Ok(object) = id.trim().parse::<i64>() else {
            let shown: String = id.trim().chars().take(100).collect();
            let message = format!(
                "UsageFault: {shown} is neither a diaObjectId (an integer) nor a detector-visit \
                 (VISIT/DETECTOR)"
            );
            out.push_str(&row([
                id, "", "", &message, "#this", "", "", "", "", "", "", "",
            ]));
            continue;
        };
        for (semantics, table, order, description) in LINKS {
            let query = format!("SELECT * FROM {table} WHERE diaObjectId = {object}{order}");
            let url = tap(&query);
            out.push_str(&link(&url, semantics, description, VOTABLE_MIME));
        }
    }
    out.push_str("</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n");
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/x-votable+xml;content=datalink",
        )],
        out,
    )
        .into_response()
}

/// A detector-visit ID, `VISIT/DETECTOR`.
fn detector_visit(id: &str) -> Option<(i64, i64)> {
    let (v, d) = id.trim().split_once('/')?;
    Some((v.trim().parse().ok()?, d.trim().parse().ok()?))
}

/// A detector-visit's links: (semantics, URL, description, content type).
fn visit_links(
    images: Option<&str>,
    visit: i64,
    detector: i64,
    tap: impl Fn(&str) -> String,
) -> Vec<(&'static str, String, String, &'static str)> {
    let mut links = Vec::new();
    if let Some(template) = images {
        let image = |kind: &str| {
            template
                .replace("{visit}", &visit.to_string())
                .replace("{detector}", &detector.to_string())
                .replace("{kind}", kind)
        };
        links.push((
            "#this",
            image("calexp"),
            format!("calibrated exposure of detector {detector} in visit {visit}"),
            "image/fits",
        ));
        links.push((
            "#derivation",
            image("difference"),
            "difference image, if one was made (where a template existed: ivoa.ObsCore lists those made)"
                .to_string(),
            "image/fits",
        ));
    }
    let at = format!("visit = {visit} AND detector = {detector}");
    links.push((
        "#auxiliary",
        tap(&format!(
            "SELECT * FROM ppdb.DetectorVisitProcessingSummary WHERE {at}"
        )),
        "processing summary: corners, seeing, zero point, ...".to_string(),
        VOTABLE_MIME,
    ));
    for (table, what) in [
        (
            "ppdb.DiaSource",
            "DiaSources measured on the difference image",
        ),
        (
            "ppdb.DiaForcedSource",
            "forced photometry on the detector-visit",
        ),
    ] {
        links.push((
            "#derivation",
            tap(&format!("SELECT * FROM {table} WHERE {at}")),
            what.to_string(),
            VOTABLE_MIME,
        ));
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_callers_id_is_cut_never_a_url() {
        let url = format!("https://example.org/tap/sync?QUERY={}", "x".repeat(400));
        assert_eq!(xml(&url, false).len(), url.len());
        assert_eq!(xml(&"1".repeat(400), true).len(), 200);
    }

    #[test]
    fn a_detector_visit_is_two_integers_and_its_images_fill_the_template() {
        assert_eq!(
            detector_visit(" 2025112600003/42 "),
            Some((2025112600003, 42))
        );
        assert_eq!(detector_visit("2025112600003"), None);
        assert_eq!(detector_visit("a/1"), None);
        let links = visit_links(
            Some("https://img.example/{kind}?v={visit}&d={detector}"),
            7,
            3,
            |q| q.to_string(),
        );
        assert_eq!(links[0].1, "https://img.example/calexp?v=7&d=3");
        assert_eq!(links[1].1, "https://img.example/difference?v=7&d=3");
        assert_eq!(links.len(), 5);
        assert_eq!(visit_links(None, 7, 3, |q| q.to_string()).len(), 3);
    }
}
