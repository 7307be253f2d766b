//! TAP `sync` and `replay/{token}`: a request's parameters read and checked,
//! a query or a replay started within the service's limits, its result streamed.

use crate::app::allowance::query_cost;
use crate::app::{Config, Shared};
use crate::tap::auth::Caller;
use crate::tap::failure::{Failure, error};
use crate::tap::origin::Origin;
use crate::tap::params::{Params, Posted};
use crate::tap::stream::stream;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::encode::Format;
use engine::{QueryOptions, QueryResult, ReplayOptions};
use std::time::{Duration, Instant};
/// The record behind a token, as JSON (the page shows the pinned ADQL and snapshot).
pub(crate) async fn record(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
) -> Response {
    let record = app.engine.record(&token).await.and_then(|r| {
        app.engine.may_replay(&r, caller.privileged())?;
        Ok(r)
    });
    match record.map(|r| serde_json::to_value(&r)) {
        Ok(Ok(mut r)) => {
            // Where the catalog lives is the operator's business.
            if let Some(o) = r.as_object_mut() {
                o.remove("catalog_url");
            }
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_string_pretty(&r).unwrap_or_default(),
            )
                .into_response()
        }
        Ok(Err(e)) => Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the record could not be encoded: {e}"),
        }
        .response(),
        Err(e) => {
            let f = Failure::from(&e);
            (
                f.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                f.message,
            )
                .into_response()
        }
    }
}

pub(crate) async fn sync_get(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    sync(app, caller, Params::new(pairs)).await
}

pub(crate) async fn sync_post(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Posted(params): Posted,
) -> Response {
    sync(app, caller, params).await
}

/// The format a request names (`RESPONSEFORMAT`, or the older `FORMAT`).
pub(crate) fn format_of(params: &Params) -> Result<Format, String> {
    let Some(f) = params.get("RESPONSEFORMAT").or(params.get("FORMAT")) else {
        return Ok(Format::Votable);
    };
    let f = f.trim().to_ascii_lowercase();
    let mut pieces = f.split(';').map(str::trim);
    let base = pieces.next().unwrap_or("");
    // `application/x-votable+xml;serialization=TABLEDATA` and friends.
    let serialization = pieces
        .filter_map(|p| p.strip_prefix("serialization="))
        .map(|v| v.trim_matches('"').to_string())
        .next();
    match (base, serialization.as_deref()) {
        ("" | "votable" | "application/x-votable+xml" | "text/xml", None | Some("binary2")) => {
            Ok(Format::Votable)
        }
        ("votable" | "application/x-votable+xml" | "text/xml", Some("tabledata")) => {
            Ok(Format::VotableTd)
        }
        (_, Some(other)) => Err(format!(
            "VOTable serialization {other} is not offered: use BINARY2 (the default) or TABLEDATA"
        )),
        (other, None) => match other.parse().map_err(|_: String| {
            format!(
                "unknown format '{other}': use votable (the default), votable/td, csv, tsv, \
                 json or parquet"
            )
        })? {
            // The terminal's aligned table needs every row before its first
            // line, held in memory no limit counts: the command line's only.
            Format::Table => Err(format!(
                "{other} (the command line's aligned text table) is not offered over TAP: \
                 use votable (the default), votable/td, csv, tsv, json or parquet"
            )),
            f => Ok(f),
        },
    }
}

/// A TAP query request, as `sync` and `async` take it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The ADQL.
    pub adql: String,
    /// Snapshot, MAXREC and format.
    pub options: QueryOptions,
    /// The response format.
    pub format: Format,
}

/// Reads a query request from TAP parameters; the error is for the user.
pub(crate) fn request_of(params: &Params, config: &Config) -> Result<Request, String> {
    if let Some(r) = params.get("REQUEST")
        && !r.eq_ignore_ascii_case("doQuery")
    {
        return Err(format!(
            "REQUEST={r} is not supported: use REQUEST=doQuery (or leave it out)"
        ));
    }
    if let Some(lang) = params.get("LANG")
        && !matches!(
            lang.trim().to_ascii_uppercase().as_str(),
            "ADQL" | "ADQL-2.0" | "ADQL-2.1"
        )
    {
        return Err(format!(
            "LANG={lang} is not supported: this service speaks ADQL (ADQL, ADQL-2.0 or ADQL-2.1)"
        ));
    }
    let Some(adql) = params.get("QUERY").filter(|q| !q.trim().is_empty()) else {
        return Err("QUERY is missing: send the ADQL as QUERY=...".into());
    };
    let format = format_of(params)?;
    // An empty MAXREC (a form's cleared box) asks for nothing: the default.
    let maxrec = match params
        .get("MAXREC")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::parse::<u64>)
    {
        None => config.maxrec_default,
        Some(Ok(m)) => m.min(config.maxrec_limit),
        Some(Err(_)) => return Err("MAXREC must be a non-negative integer".into()),
    };
    let as_of = params
        .get("AS_OF")
        .map(|a| engine::as_of(a).map_err(|e| format!("AS_OF: {e}")))
        .transpose()?;
    Ok(Request {
        adql: adql.to_string(),
        options: QueryOptions {
            as_of,
            maxrec: Some(maxrec),
            time_limit: Some(config.max_duration),
            uploads: Vec::new(),
            privileged: false,
            always_plan: false,
            hold: None,
        },
        format,
    })
}

pub(crate) async fn sync(app: Shared, caller: Caller, params: Params) -> Response {
    let mut request = match request_of(&params, &app.config) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    request.options.privileged = caller.privileged();
    // What the query and the uploads it sent would store is counted before
    // they are parsed: a caller past its share costs no parsing.
    let sent: u64 = params.parts.iter().map(|(_, b)| b.len() as u64).sum();
    let counted = query_cost(&request.adql, &[]) + sent;
    if !caller.privileged()
        && let Err(e) = app
            .stored
            .spend(&caller.key(), counted, app.engine.state().usage())
    {
        return refused(&e);
    }
    // Uploads are read (fetched, parsed) with a turn and within the query's
    // time, as the query is: they are its work.
    let permit = match turn(&app, &caller.key()).await {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    // The turn is held until the query stops executing, not only until its
    // client goes: an abandoned query must not let another take its place early.
    request.options.hold = Some(permit.clone());
    let deadline = Instant::now() + app.config.max_duration;
    if let Some(value) = params.get("UPLOAD") {
        let parts = crate::tap::uploads::Parts::Inline(&params.parts);
        match tokio::time::timeout_at(
            deadline.into(),
            crate::tap::uploads::read(&app, value, &parts),
        )
        .await
        {
            Ok(Ok(tables)) => request.options.uploads = tables,
            Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
            Err(_) => return Failure::refused(overdue(&app)).response(),
        }
    }
    // Uploads fetched by URL were not in the request: they count once read.
    let cost = query_cost(&request.adql, &request.options.uploads);
    if !caller.privileged()
        && let Err(e) = app.stored.spend(
            &caller.key(),
            cost.saturating_sub(counted),
            app.engine.state().usage(),
        )
    {
        return refused(&e);
    }
    let origin = Origin::of(&app.config, "/tap/sync", &params.pairs(), &request.adql);
    match start(&app, &request, deadline).await {
        Ok(result) => stream(app, result, request.format, deadline, permit, origin).await,
        Err(e) => e.response(),
    }
}

/// A turn to run a sync request, waited for at most twice the longest a
/// query may run and five seconds more (the queries ahead end at their
/// deadlines, and stop within a step after): a request in the queue is then
/// answered "busy", not kept waiting for as long as the queries ahead of it
/// take (a runaway query once kept every queued request waiting 93 s).
pub(crate) async fn turn(
    app: &Shared,
    caller: &str,
) -> Result<std::sync::Arc<crate::app::limits::Permit>, Response> {
    let ticket = app
        .limits
        .admit(caller)
        .map_err(|busy| busy_response(&busy))?;
    let wait = app.config.max_duration * 2 + Duration::from_secs(5);
    match tokio::time::timeout(wait, ticket.acquire()).await {
        Ok(p) => Ok(std::sync::Arc::new(p)),
        Err(_) => Err(busy_response(&format!(
            "the service is busy: no turn to run came within {} s; try again later",
            wait.as_secs()
        ))),
    }
}

/// The refusal of what an anonymous caller would store: 429 past its own
/// share, 503 when the part of the store anonymous callers may fill is full.
pub(crate) fn refused(e: &crate::app::allowance::Refused) -> Response {
    if e.reserved {
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, &e.message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("600"));
        response
    } else {
        too_many(&e.message)
    }
}

/// A 429 for a caller past its share, telling it when to come back.
pub(crate) fn too_many(message: &str) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("600"));
    response
}

/// A 503 that tells the client when to come back.
pub(crate) fn busy_response(message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Plans a query, within the request's time; the error is for the user.
pub(crate) async fn start(
    app: &Shared,
    request: &Request,
    deadline: Instant,
) -> Result<QueryResult, Failure> {
    match tokio::time::timeout_at(
        deadline.into(),
        app.engine.query(&request.adql, &request.options),
    )
    .await
    {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(Failure::from(&e)),
        Err(_) => Err(Failure::refused(overdue(app))),
    }
}

pub(crate) fn overdue(app: &Shared) -> String {
    engine::overdue(app.config.max_duration)
}

pub(crate) async fn replay(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    // An unknown token is a 404 before the request takes a turn.
    let asked = match app.engine.record(&token).await {
        Ok(r) => r.adql,
        Err(e) => return Failure::from(&e).response(),
    };
    // A token names rows, not an encoding: without RESPONSEFORMAT, the service's default.
    let format = match format_of(&params) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let permit = match turn(&app, &caller.key()).await {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    let deadline = Instant::now() + app.config.max_duration;
    let options = ReplayOptions {
        time_limit: Some(app.config.max_duration),
        privileged: caller.privileged(),
        hold: Some(permit.clone()),
        ..Default::default()
    };
    let replayed =
        tokio::time::timeout_at(deadline.into(), app.engine.replay(&token, &options)).await;
    match replayed {
        Ok(Ok(result)) => {
            let path = format!("/tap/replay/{token}");
            let origin = Origin::of(&app.config, &path, &params.pairs(), &asked);
            stream(app, result, format, deadline, permit, origin).await
        }
        // The engine refuses an embargoed result to a caller without privilege (403).
        Ok(Err(e)) => Failure::from(&e).response(),
        Err(_) => Failure::refused(overdue(&app)).response(),
    }
}
