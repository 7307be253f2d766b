//! The service describing itself: the page, the landing document, VOSI
//! `availability`, `capabilities` and `tables`.

use crate::app::Shared;
use crate::tap::failure::{error, esc, xml};
use crate::tap::params::Params;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::encode::Format;
use engine::{Engine, QueryOptions};
/// The web page: an ADQL box, the result as a table and a sky plot, the token
/// with its replay link, and the tables to browse.
pub(crate) async fn home(State(app): State<Shared>) -> Response {
    let examples = serde_json::to_string(&app.examples).unwrap_or_else(|_| "[]".into());
    // `</` inside a script would end it.
    let examples = examples.replace("</", "<\\/");
    let page = include_str!("page.html").replacen("/*EXAMPLES*/[]", &examples, 1);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src 'self' data:",
            ),
        ],
        page,
    )
        .into_response()
}

pub(crate) async fn landing(State(app): State<Shared>) -> Response {
    let base = &app.config.base_url;
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><title>ppdb TAP</title><h1>ppdb TAP service</h1><ul>\
             <li><a href=\"{base}/tap/capabilities\">capabilities</a></li>\
             <li><a href=\"{base}/tap/tables\">tables</a></li>\
             <li><a href=\"{base}/tap/availability\">availability</a></li>\
             <li>sync: {base}/tap/sync?LANG=ADQL&amp;QUERY=...</li></ul>"
        ),
    )
        .into_response()
}

pub(crate) async fn availability(State(app): State<Shared>) -> Response {
    // A store with no room for a small query's record refuses every new query.
    let state = app.engine.state();
    let (available, note) = match state.room_for(64 << 10).await {
        Ok(())
            if state
                .usage()
                .is_some_and(|(used, limit)| used + (64 << 10) > limit / 2) =>
        {
            (
                "true",
                "accepting queries with a privileged token; the room for anonymous query records \
             is full, and anonymous queries are refused until it is made",
            )
        }
        Ok(()) => ("true", "accepting queries"),
        Err(_) => (
            "false",
            "the store for query records and results is full: new queries are refused \
             until jobs expire or tokens are expired; replays are served",
        ),
    };
    xml(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:availability xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\
         <vosi:available>{available}</vosi:available>\
         <vosi:note>{note}</vosi:note></vosi:availability>\n"
    ))
}

pub(crate) async fn capabilities(State(app): State<Shared>) -> Response {
    let base = &app.config.base_url;
    let retention = app.config.job_lifetime.as_secs();
    let duration = app.config.max_duration.as_secs();
    let upload = app.config.upload_limit;
    let mut udfs = String::new();
    let mut geo = String::new();
    for f in adql::FUNCTIONS {
        if f.udf {
            udfs.push_str(&format!(
                "<feature><form>{}</form><description>{}</description></feature>",
                esc(f.signature),
                esc(f.description)
            ));
        }
    }
    for g in [
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "CONTAINS",
        "INTERSECTS",
        "DISTANCE",
        "AREA",
        "CENTROID",
        "COORD1",
        "COORD2",
        "COORDSYS",
    ] {
        geo.push_str(&format!("<feature><form>{g}</form></feature>"));
    }
    let mut outputs = String::new();
    for f in Format::ALL {
        let Some((mime, id)) = f.advertised() else {
            continue;
        };
        match id {
            Some(id) => outputs.push_str(&format!("<outputFormat ivo-id=\"{id}\">")),
            None => outputs.push_str("<outputFormat>"),
        }
        // The alias is the short name RESPONSEFORMAT takes (`votable/td` reads as well).
        let alias = if f == Format::VotableTd {
            "votable/td"
        } else {
            f.name()
        };
        outputs.push_str(&format!(
            "<mime>{mime}</mime><alias>{alias}</alias></outputFormat>"
        ));
    }
    // VOResource lets a capability describe itself: what the embargo hides from whom.
    let embargo = match (app.engine.embargo(), app.engine.embargo().cutoff()) {
        (_, None) => String::new(),
        (engine::Embargo::Window(w), Some(cutoff)) => format!(
            "<description>Embargo: rows observed in the last {} hours (now: after MJD {cutoff:.6}, \
             TAI) are visible only to callers with a bearer token; every result says which \
             cutoff it was read under (INFO embargo_cutoff_mjd_tai).</description>",
            w.as_secs_f64() / 3600.0
        ),
        (_, Some(cutoff)) => format!(
            "<description>Embargo: rows observed after MJD {cutoff:.6} (TAI) are visible only to \
             callers with a bearer token; every result says which cutoff it was read under \
             (INFO embargo_cutoff_mjd_tai).</description>"
        ),
    };
    let vosi = |id: &str, path: &str| {
        format!(
            "<capability standardID=\"ivo://ivoa.net/std/VOSI#{id}\">\
             <interface xsi:type=\"vs:ParamHTTP\"><accessURL use=\"full\">{base}/tap/{path}</accessURL></interface>\
             </capability>"
        )
    };
    xml(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:capabilities xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\" \
         xmlns:vr=\"http://www.ivoa.net/xml/VOResource/v1.0\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" \
         xmlns:tr=\"http://www.ivoa.net/xml/TAPRegExt/v1.0\">\n\
         <capability standardID=\"ivo://ivoa.net/std/TAP\" xsi:type=\"tr:TableAccess\">{embargo}\
         <interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"1.1\"><accessURL use=\"base\">{base}/tap</accessURL></interface>\
         <dataModel ivo-id=\"ivo://ivoa.net/std/ObsCore#core-1.1\">ObsCore-1.1</dataModel>\
         <language><name>ADQL</name>\
         <version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.1\">2.1</version>\
         <version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.0\">2.0</version>\
         <description>ADQL 2.1; FOR SYSTEM_TIME AS OF reads an earlier snapshot</description>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-udf\">{udfs}</languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adqlgeo\">{geo}</languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-string\">\
         <feature><form>LOWER</form></feature><feature><form>UPPER</form></feature><feature><form>ILIKE</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-sets\">\
         <feature><form>UNION</form></feature><feature><form>EXCEPT</form></feature><feature><form>INTERSECT</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-common-table\">\
         <feature><form>WITH</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-type\">\
         <feature><form>CAST</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-unit\">\
         <feature><form>IN_UNIT</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-offset\">\
         <feature><form>OFFSET</form></feature></languageFeatures>\
         </language>\
         {outputs}\
         <uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-inline\"/>\
         <uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-http\"/>\
         <uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-https\"/>\
         <retentionPeriod><default>{retention}</default><hard>{retention}</hard></retentionPeriod>\
         <executionDuration><default>{duration}</default><hard>{duration}</hard></executionDuration>\
         <outputLimit><default unit=\"row\">{}</default><hard unit=\"row\">{}</hard></outputLimit>\
         <uploadLimit><hard unit=\"byte\">{upload}</hard></uploadLimit>\
         </capability>\n{}\n{}\n{}\n\
         <capability standardID=\"ivo://ivoa.net/std/DALI#examples\">\
         <interface xsi:type=\"vr:WebBrowser\"><accessURL use=\"full\">{base}/tap/examples</accessURL></interface>\
         </capability>\n\
         <capability standardID=\"ivo://ivoa.net/std/DataLink#links-1.1\">\
         <interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"1.1\"><accessURL use=\"base\">{base}/tap/links</accessURL></interface>\
         </capability>\n\
         </vosi:capabilities>\n",
        app.config.maxrec_default,
        app.config.maxrec_limit,
        vosi("capabilities", "capabilities"),
        vosi("availability", "availability"),
        vosi("tables", "tables"),
    ))
}

/// Rows of a TAP_SCHEMA query as strings (empty for NULL).
pub(crate) async fn rows(engine: &Engine, adql: &str) -> Result<Vec<Vec<String>>, engine::Error> {
    let (batches, _) = engine
        .query_unpinned(adql, &QueryOptions::default())
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    let opts = arrow::util::display::FormatOptions::default();
    for b in &batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()?;
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&fmts)
                    .map(|(c, f)| {
                        if c.is_null(r) {
                            String::new()
                        } else {
                            f.value(r).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// VOSI tables (all of them; `detail=min` leaves out the columns). `tables=a,b`
/// keeps only those tables, still as a tableset: astroquery's `load_table`
/// asks so, and takes the first table it is given.
pub(crate) async fn tables(
    State(app): State<Shared>,
    headers: axum::http::HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    let min = params
        .get("DETAIL")
        .is_some_and(|d| d.eq_ignore_ascii_case("min"));
    let pick: Option<Vec<String>> = params
        .get("TABLES")
        .map(|t| t.split(',').map(|n| n.trim().to_string()).collect());
    tableset(&app, Shape::Set(pick), min, esa_flags(&headers)).await
}

/// VOSI 1.1: one table, with its columns.
pub(crate) async fn one_table(
    State(app): State<Shared>,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> Response {
    tableset(&app, Shape::One(name), false, esa_flags(&headers)).await
}

/// Whether the client may be astroquery, whose table parser (written for ESA's
/// archives) reads an `esatapplus:flags` attribute on every column and fails
/// without it. The VODataService schema the IVOA's validator holds does not
/// allow the attribute, so it goes only to astroquery, which names itself on
/// POSTs and sends its GETs with no `User-Agent` at all (browsers, pyvo, curl
/// and STILTS all send one).
pub(crate) fn esa_flags(headers: &axum::http::HeaderMap) -> bool {
    match headers.get(header::USER_AGENT).map(|v| v.to_str()) {
        None => true,
        Some(ua) => ua.is_ok_and(|ua| ua.starts_with("astroquery/")),
    }
}

/// Which VOSI tables document to write.
pub(crate) enum Shape {
    /// A `vosi:tableset`, of these tables only when given.
    Set(Option<Vec<String>>),
    /// A `vosi:table` document of one table.
    One(String),
}

/// The rows of TAP_SCHEMA a VOSI tables document shows. They change only
/// with the schema, which is the engine's for its life: read once (each
/// request read them again, ~10 ms of four queries).
#[derive(Debug)]
pub(crate) struct TapRows {
    schemas: Vec<Vec<String>>,
    tables: Vec<Vec<String>>,
    columns: Vec<Vec<String>>,
    keys: Vec<Vec<String>>,
}

impl TapRows {
    async fn read(e: &Engine) -> Result<TapRows, engine::Error> {
        let schemas = rows(
            e,
            "SELECT schema_name, description FROM TAP_SCHEMA.schemas ORDER BY schema_index",
        )
        .await?;
        let tables = rows(
            e,
            "SELECT schema_name, table_name, description, utype, table_type FROM TAP_SCHEMA.tables \
             ORDER BY table_index",
        )
        .await?;
        let columns = rows(
            e,
            "SELECT table_name, column_name, description, unit, ucd, datatype, arraysize, xtype, \
             principal, indexed, std, utype FROM TAP_SCHEMA.columns ORDER BY table_name, column_index",
        )
        .await?;
        let keys = rows(
            e,
            "SELECT k.from_table, k.target_table, k.description, c.from_column, c.target_column \
             FROM TAP_SCHEMA.keys AS k JOIN TAP_SCHEMA.key_columns AS c ON c.key_id = k.key_id \
             ORDER BY k.key_id",
        )
        .await?;
        Ok(TapRows {
            schemas,
            tables,
            columns,
            keys,
        })
    }
}

/// VOSI tables, from TAP_SCHEMA itself so the two always agree.
pub(crate) async fn tableset(app: &Shared, shape: Shape, min: bool, esa: bool) -> Response {
    let (only, pick) = match &shape {
        Shape::One(name) => (Some(name.as_str()), None),
        Shape::Set(pick) => (None, pick.as_deref()),
    };
    let read = app
        .tap_rows
        .get_or_try_init(|| TapRows::read(&app.engine))
        .await;
    let TapRows {
        schemas,
        tables,
        columns,
        keys,
    } = match read {
        Ok(r) => r,
        Err(x) => return error(StatusCode::INTERNAL_SERVER_ERROR, &x.message()),
    };
    let namespaces = format!(
        "xmlns:vosi=\"http://www.ivoa.net/xml/VOSITables/v1.0\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"{}",
        if esa {
            " xmlns:esatapplus=\"http://esa.int/xml/EsaTapPlus\""
        } else {
            ""
        }
    );
    // 0: the column plays none of the roles (ra, dec, flux, ...) ESA's flags mark.
    let column_tag = if esa {
        "<column esatapplus:flags=\"0\">"
    } else {
        "<column>"
    };
    let wanted: Vec<&str> = only
        .into_iter()
        .chain(pick.into_iter().flatten().map(String::as_str))
        .collect();
    if let Some(name) = wanted.iter().find(|n| !tables.iter().any(|t| t[1] == **n)) {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no table {name}: /tap/tables lists them"),
        )
            .into_response();
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if only.is_none() {
        out.push_str(&format!("<vosi:tableset {namespaces}>\n"));
    }
    for s in schemas {
        let shown = |t: &&Vec<String>| {
            t[0] == s[0] && (wanted.is_empty() || wanted.contains(&t[1].as_str()))
        };
        if only.is_none() && pick.is_some() && !tables.iter().any(|t| shown(&t)) {
            continue;
        }
        if only.is_none() {
            out.push_str(&format!(
                "<schema><name>{}</name><description>{}</description>\n",
                esc(&s[0]),
                esc(&s[1])
            ));
        }
        for t in tables.iter().filter(shown) {
            let kind = if t[4] == "view" { "view" } else { "table" };
            if only.is_some() {
                out.push_str(&format!("<vosi:table {namespaces} type=\"{kind}\">"));
            } else {
                out.push_str(&format!("<table type=\"{kind}\">"));
            }
            out.push_str(&format!(
                "<name>{}</name><description>{}</description>",
                esc(&t[1]),
                esc(&t[2])
            ));
            if !t[3].is_empty() {
                out.push_str(&format!("<utype>{}</utype>", esc(&t[3])));
            }
            out.push('\n');
            for c in columns.iter().filter(|c| c[0] == t[1] && !min) {
                out.push_str(&format!("{column_tag}<name>{}</name>", esc(&c[1])));
                if !c[2].is_empty() {
                    out.push_str(&format!("<description>{}</description>", esc(&c[2])));
                }
                if !c[3].is_empty() {
                    out.push_str(&format!("<unit>{}</unit>", esc(&c[3])));
                }
                if !c[4].is_empty() {
                    out.push_str(&format!("<ucd>{}</ucd>", esc(&c[4])));
                }
                if !c[11].is_empty() {
                    out.push_str(&format!("<utype>{}</utype>", esc(&c[11])));
                }
                out.push_str(&format!(
                    "<dataType xsi:type=\"vs:VOTableType\"{}{}>{}</dataType>",
                    if c[6].is_empty() {
                        String::new()
                    } else {
                        format!(" arraysize=\"{}\"", esc(&c[6]))
                    },
                    if c[7].is_empty() {
                        String::new()
                    } else {
                        format!(" extendedType=\"{}\"", esc(&c[7]))
                    },
                    esc(&c[5])
                ));
                for (flag, value) in [("indexed", &c[9]), ("principal", &c[8]), ("std", &c[10])] {
                    if value == "1" {
                        out.push_str(&format!("<flag>{flag}</flag>"));
                    }
                }
                out.push_str("</column>\n");
            }
            for k in keys.iter().filter(|k| k[0] == t[1] && !min) {
                // astroquery takes any <description> for the table's own, so the
                // last key's would replace it: it gets keys without theirs.
                let description = if esa {
                    String::new()
                } else {
                    format!("<description>{}</description>", esc(&k[2]))
                };
                out.push_str(&format!(
                    "<foreignKey><targetTable>{}</targetTable><fkColumn><fromColumn>{}</fromColumn>\
                     <targetColumn>{}</targetColumn></fkColumn>{description}</foreignKey>\n",
                    esc(&k[1]),
                    esc(&k[3]),
                    esc(&k[4]),
                ));
            }
            out.push_str(if only.is_some() {
                "</vosi:table>\n"
            } else {
                "</table>\n"
            });
        }
        if only.is_none() {
            out.push_str("</schema>\n");
        }
    }
    if only.is_none() {
        out.push_str("</vosi:tableset>\n");
    }
    xml(out)
}
