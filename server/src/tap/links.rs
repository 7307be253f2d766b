//! `/tap/links`: the DataLink 1.1 `{links}` endpoint. Each `ID` is a
//! `diaObjectId`; its links are TAP queries for the object's current version
//! (`#this`), its light curve and its forced photometry (`#coderived`), at
//! the snapshot `AS_OF` names (results give theirs in their descriptor).
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
fn xml(s: &str) -> String {
    let clean: String = s
        .chars()
        .take(200)
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
            "ID is missing: give a diaObjectId as ID=... (repeat ID for more)",
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
        let size = if datatype == "char" {
            " arraysize=\"*\""
        } else {
            ""
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
            for c in cells {
                let _ = write!(tr, "<TD>{}</TD>", xml(c));
            }
            tr.push_str("</TR>\n");
            tr
        };
        let Ok(object) = id.trim().parse::<i64>() else {
            let message = format!(
                "UsageFault: {} is not a diaObjectId (an integer)",
                id.trim()
            );
            out.push_str(&row([id, "", "", &message, "", "", "", "", "", "", "", ""]));
            continue;
        };
        for (semantics, table, order, description) in LINKS {
            let query = format!("SELECT * FROM {table} WHERE diaObjectId = {object}{order}");
            let mut pairs = vec![("REQUEST", "doQuery"), ("LANG", "ADQL"), ("QUERY", &query)];
            if let Some(a) = &as_of {
                pairs.push(("AS_OF", a));
            }
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            let url = format!("{sync}?{encoded}");
            out.push_str(&row([
                id,
                &url,
                "",
                "",
                semantics,
                description,
                VOTABLE_MIME,
                "",
                "",
                "",
                "",
                "",
            ]));
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
