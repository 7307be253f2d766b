//! `/tap/coverage/...`: MOCs of where detectors looked and where a table's
//! rows are, made from a query the engine writes and runs like any other
//! (pinned, embargoed, with a token), and replayed from that token.
//!
//! - `GET /tap/coverage/footprints?NIGHT=YYYY-MM-DD|last&UNTIL=YYYY-MM-DD&DIA=with|without`
//! - `GET /tap/coverage/tables/{table}`
//! - `GET /tap/coverage/replay/{token}`
//!
//! each with `ORDER` (0–13, 10 by default), `FORMAT` (`fits`, `ascii`,
//! `json`) and, but for a replay, `AS_OF`.

use std::time::Instant;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::coverage::{Coverage, DEFAULT_ORDER, MocFormat, Nights, Of};
use engine::{QueryResult, ReplayOptions};

use crate::app::Shared;
use crate::app::allowance::query_cost;
use crate::tap::auth::Caller;
use crate::tap::failure::Failure;
use crate::tap::origin::Origin;
use crate::tap::params::Params;
use crate::tap::sync::{Request, overdue, refused, start, turn};

/// A refusal or failure, as plain text (what a MOC's reader would show).
fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn failed(f: &Failure) -> Response {
    text(f.status, &f.message)
}

/// `ORDER` and `FORMAT`, as every coverage request takes them.
fn order_and_format(params: &Params) -> Result<(u8, MocFormat), String> {
    let order = match params.get("ORDER").map(str::trim).filter(|o| !o.is_empty()) {
        None => DEFAULT_ORDER,
        Some(o) => o
            .parse::<u8>()
            .ok()
            .filter(|o| *o <= engine::coverage::MAX_ORDER)
            .ok_or_else(|| {
                format!(
                    "ORDER={o} is not offered: use 0 to {} (the default is {DEFAULT_ORDER})",
                    engine::coverage::MAX_ORDER
                )
            })?,
    };
    let format = match params.get("FORMAT").or(params.get("RESPONSEFORMAT")) {
        None => MocFormat::Fits,
        Some(f) => f.parse()?,
    };
    Ok((order, format))
}

/// `GET /tap/coverage/footprints`.
pub(crate) async fn footprints(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    let nights = match (params.get("NIGHT"), params.get("UNTIL")) {
        (None, None) => Ok(Nights::All),
        (Some(n), None) => Nights::parse(n),
        (first, Some(last)) => {
            let from = first.map(Nights::parse).transpose();
            match (from, Nights::parse(last)) {
                (Ok(None), Ok(Nights::Between(_, b))) => Ok(Nights::Between(0, b)),
                (Ok(Some(Nights::Between(a, _))), Ok(Nights::Between(_, b))) => {
                    Ok(Nights::Between(a, b))
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => Err(engine::coverage::CoverageError::Night {
                    text: "last".into(),
                }),
            }
        }
    };
    let nights = match nights {
        Ok(n) => n,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let dia = match params.get("DIA").map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "any") => None,
        Some("with") => Some(true),
        Some("without") => Some(false),
        Some(other) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("DIA={other} is not offered: use with, without or any"),
            );
        }
    };
    covered(
        app,
        caller,
        params,
        Of::Footprints { nights, dia },
        "footprints",
    )
    .await
}

/// `GET /tap/coverage/tables/{table}`.
pub(crate) async fn table(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let path = format!("tables/{name}");
    covered(app, caller, Params::new(pairs), Of::Table(name), &path).await
}

/// Runs a coverage's query for `caller` and answers with its MOC.
async fn covered(app: Shared, caller: Caller, params: Params, of: Of, what: &str) -> Response {
    let (order, format) = match order_and_format(&params) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let adql = match of.adql(order, app.engine.tables()) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let as_of = match params
        .get("AS_OF")
        .map(|a| engine::as_of(a).map_err(|e| format!("AS_OF: {e}")))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let request = Request {
        adql,
        options: engine::QueryOptions {
            as_of,
            // Every row is folded into the MOC; none is sent.
            maxrec: None,
            time_limit: Some(app.config.max_duration),
            privileged: caller.privileged(),
            ..Default::default()
        },
        format: engine::encode::Format::Csv,
    };
    // The token's record is kept: it counts against the caller's share.
    if !caller.privileged()
        && let Err(e) = app.stored.spend(
            &caller.key(),
            query_cost(&request.adql, &[]),
            app.engine.state().usage(),
        )
    {
        return refused(&e);
    }
    let permit = match turn(&app, &caller.key()).await {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    let mut request = request;
    request.options.hold = Some(permit.clone());
    let deadline = Instant::now() + app.config.max_duration;
    let origin = Origin::of(
        &app.config,
        &format!("/tap/coverage/{what}"),
        &params.pairs(),
        &request.adql,
    );
    let result = match start(&app, &request, deadline).await {
        Ok(r) => r,
        Err(f) => return failed(&f),
    };
    answer(&app, result, order, format, deadline, &origin).await
}

/// `GET /tap/coverage/replay/{token}`: the MOC of a coverage's token, from
/// the same rows.
pub(crate) async fn replay(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    let (order, format) = match order_and_format(&params) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let asked = match app.engine.record(&token).await {
        Ok(r) => r.adql,
        Err(e) => return failed(&Failure::from(&e)),
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
    let origin = Origin::of(
        &app.config,
        &format!("/tap/coverage/replay/{token}"),
        &params.pairs(),
        &asked,
    );
    let result =
        match tokio::time::timeout_at(deadline.into(), app.engine.replay(&token, &options)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return failed(&Failure::from(&e)),
            Err(_) => return text(StatusCode::SERVICE_UNAVAILABLE, &overdue(&app)),
        };
    answer(&app, result, order, format, deadline, &origin).await
}

/// Folds a coverage query's rows into its MOC, within the deadline, and
/// answers with it: the MOC in the body, what it is in the headers.
async fn answer(
    app: &Shared,
    mut result: QueryResult,
    order: u8,
    format: MocFormat,
    deadline: Instant,
    origin: &Origin,
) -> Response {
    let snapshot = result.snapshot.snapshot;
    let token = result.token.clone();
    let coverage =
        match tokio::time::timeout_at(deadline.into(), Coverage::of_rows(&mut result, order)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return failed(&Failure::from(&e)),
            Err(_) => return text(StatusCode::SERVICE_UNAVAILABLE, &overdue(app)),
        };
    let base = &app.config.base_url;
    let replay = token.as_ref().map(|t| {
        format!(
            "{base}/tap/coverage/replay/{t}?ORDER={}",
            coverage.moc.depth_max()
        )
    });
    let mut body = Vec::new();
    if let Err(e) = coverage.write(format, token.clone(), &mut body) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the MOC could not be written: {e}"),
        );
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"coverage-{snapshot}.{}\"",
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    let facts = [
        (
            "x-coverage-area-deg2",
            format!("{:.6}", coverage.area_deg2()),
        ),
        ("x-coverage-order", coverage.moc.depth_max().to_string()),
        ("x-coverage-cells", coverage.cells().to_string()),
        ("x-coverage-rows", coverage.rows.to_string()),
        (
            "x-coverage-without-corners",
            coverage.without_corners.to_string(),
        ),
    ];
    for (name, value) in facts {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    if let Some(t) = token.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert("x-query-token", t);
    }
    origin.headers(&app.config, replay.as_deref(), Some(snapshot), &mut headers);
    (StatusCode::OK, headers, body).into_response()
}
