//! `/tap/coverage/...`: MOCs of where detectors looked and where a table's
//! rows are, made from a query the engine writes and runs like any other
//! (pinned, embargoed, with a token), and replayed from that token.
//!
//! - `GET /tap/coverage/footprints?NIGHT=YYYY-MM-DD|last&UNTIL=YYYY-MM-DD&DIA=with|without`
//!   (or `TIME=MJD1 MJD2`, a window in TAI, instead of nights)
//! - `GET /tap/coverage/space-time?NIGHT=...&DIA=...&TIME_ORDER=0..61` (an ST-MOC)
//! - `GET /tap/coverage/tables/{table}`
//! - `GET /tap/coverage/replay/{token}`
//! - `GET /tap/coverage/growth?DIA=...` (JSON: area night by night; `TOKEN=` replays one)
//!
//! each with `ORDER` (0–13, 10 by default), `FORMAT` (`fits`, `ascii`,
//! `json`) and, but for a replay, `AS_OF`; as GET or POST (a query string, a
//! form or multipart body, as TAP takes its parameters).

use std::time::Instant;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::coverage::{Coverage, DEFAULT_ORDER, MocFormat, Nights, Of, space_time};
use engine::{QueryResult, ReplayOptions};

use crate::app::Shared;
use crate::app::allowance::query_cost;
use crate::tap::auth::Caller;
use crate::tap::failure::Failure;
use crate::tap::origin::Origin;
use crate::tap::params::{Params, Posted};
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

/// `ORDER` (`None` when not given) and `FORMAT`, as every coverage request takes them.
fn order_and_format(params: &Params) -> Result<(Option<u8>, MocFormat), String> {
    let order = match params.get("ORDER").map(str::trim).filter(|o| !o.is_empty()) {
        None => None,
        Some(o) => Some(
            o.parse::<u8>()
                .ok()
                .filter(|o| *o <= engine::coverage::MAX_ORDER)
                .ok_or_else(|| {
                    format!(
                        "ORDER={} is not offered: use 0 to {} (the default is {DEFAULT_ORDER})",
                        o.chars().take(40).collect::<String>(),
                        engine::coverage::MAX_ORDER
                    )
                })?,
        ),
    };
    let format = match params.get("FORMAT").or(params.get("RESPONSEFORMAT")) {
        None => MocFormat::Fits,
        Some(f) => f.parse()?,
    };
    Ok((order, format))
}

/// `DIA`: only detector-visits with DIA rows, only those without, or all.
fn dia_of(params: &Params) -> Result<Option<bool>, String> {
    match params.get("DIA").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(None),
        Some("with") => Ok(Some(true)),
        Some("without") => Ok(Some(false)),
        Some(other) => Err(format!(
            "DIA={} is not offered: use with or without (or leave it out)",
            other.chars().take(40).collect::<String>()
        )),
    }
}

/// Which detector-visits: `NIGHT` (to `UNTIL`) or a `TIME` window, and `DIA`.
fn visits(params: &Params) -> Result<(Nights, Option<bool>), String> {
    let nights = Nights::window(params.get("NIGHT"), params.get("UNTIL"), params.get("TIME"))
        .map_err(|e| e.to_string())?;
    Ok((nights, dia_of(params)?))
}

/// `GET /tap/coverage/footprints`.
pub(crate) async fn footprints(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Posted(params): Posted,
) -> Response {
    drawn(&app, &caller, &params, "footprints", |nights, dia| {
        Ok(Of::Footprints { nights, dia })
    })
    .await
}

/// `GET /tap/coverage/space-time`: footprints over their exposures, an ST-MOC.
pub(crate) async fn space_time(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Posted(params): Posted,
) -> Response {
    drawn(&app, &caller, &params, "space-time", |nights, dia| {
        Ok(Of::SpaceTime {
            nights,
            dia,
            time_order: time_order_of(&params)?,
        })
    })
    .await
}

/// A coverage of detector-visits (those `NIGHT`, `TIME` and `DIA` choose),
/// drawn as `of` says, answered as a MOC.
async fn drawn(
    app: &Shared,
    caller: &Caller,
    params: &Params,
    what: &str,
    of: impl FnOnce(Nights, Option<bool>) -> Result<Of, String>,
) -> Response {
    let of = match visits(params).and_then(|(nights, dia)| of(nights, dia)) {
        Ok(of) => of,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    match run(app, caller, params, of, what).await {
        Ok(ran) => answer(app, ran, params).await,
        Err(refusal) => refusal,
    }
}

/// `TIME_ORDER`, 0 to 61 (40 when not given).
fn time_order_of(params: &Params) -> Result<u8, String> {
    let Some(o) = params
        .get("TIME_ORDER")
        .map(str::trim)
        .filter(|o| !o.is_empty())
    else {
        return Ok(space_time::DEFAULT_TIME_ORDER);
    };
    o.parse::<u8>()
        .ok()
        .filter(|o| *o <= space_time::MAX_TIME_ORDER)
        .ok_or_else(|| {
            format!(
                "TIME_ORDER={} is not offered: use 0 to {} (the default is {})",
                o.chars().take(40).collect::<String>(),
                space_time::MAX_TIME_ORDER,
                space_time::DEFAULT_TIME_ORDER
            )
        })
}

/// `GET /tap/coverage/tables/{table}`.
pub(crate) async fn table(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Posted(params): Posted,
) -> Response {
    let path = format!("tables/{name}");
    match run(&app, &caller, &params, Of::Table(name), &path).await {
        Ok(ran) => answer(&app, ran, &params).await,
        Err(refusal) => refusal,
    }
}

/// `GET /tap/coverage/growth`: footprint area night by night, as JSON; with
/// `TOKEN`, the same from a growth's token.
pub(crate) async fn growth(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Posted(params): Posted,
) -> Response {
    let ran = match params.get("TOKEN") {
        Some(token) => replayed(&app, &caller, token.trim(), &params).await,
        None => match dia_of(&params) {
            Ok(dia) => run(&app, &caller, &params, Of::Growth { dia }, "growth").await,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e),
        },
    };
    let Ran {
        mut result,
        origin,
        deadline,
    } = match ran {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let order = match order_and_format(&params) {
        Ok((o, _)) if params.get("TOKEN").is_some() => o,
        Ok(_) => None,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let nights = match tokio::time::timeout_at(
        deadline.into(),
        engine::coverage::growth::by_night(&mut result, order),
    )
    .await
    {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return failed(&Failure::from(&e)),
        Err(_) => return text(StatusCode::SERVICE_UNAVAILABLE, &overdue(&app)),
    };
    let token = result.token.clone();
    let snapshot = result.snapshot.snapshot;
    let replay = token
        .as_ref()
        .map(|t| format!("{}/tap/coverage/growth?TOKEN={t}", app.config.base_url));
    let body = serde_json::json!({
        "snapshot": snapshot,
        "token": token,
        "replay": replay,
        "nights": nights,
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(t) = token.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert("x-query-token", t);
    }
    origin.headers(&app.config, replay.as_deref(), Some(snapshot), &mut headers);
    let text = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
    (StatusCode::OK, headers, text).into_response()
}

/// A coverage's query started, and where it came from.
struct Ran {
    result: QueryResult,
    origin: Origin,
    deadline: Instant,
}

/// Starts a coverage's query for `caller`, as a sync query would start:
/// within its share, with a turn, by the deadline.
async fn run(
    app: &Shared,
    caller: &Caller,
    params: &Params,
    of: Of,
    what: &str,
) -> Result<Ran, Response> {
    let (order, _) = order_and_format(params).map_err(|e| text(StatusCode::BAD_REQUEST, &e))?;
    let adql = of
        .adql(order.unwrap_or(DEFAULT_ORDER), app.engine.tables())
        .map_err(|e| text(StatusCode::BAD_REQUEST, &e.to_string()))?;
    let as_of = params
        .get("AS_OF")
        .map(|a| engine::as_of(a).map_err(|e| format!("AS_OF: {e}")))
        .transpose()
        .map_err(|e| text(StatusCode::BAD_REQUEST, &e))?;
    // The token's record is kept: it counts against the caller's share.
    if !caller.privileged()
        && let Err(e) = app.stored.spend(
            &caller.key(),
            query_cost(&adql, &[]),
            app.engine.state().usage(),
        )
    {
        return Err(refused(&e));
    }
    let permit = turn(app, &caller.key()).await?;
    let request = Request {
        adql,
        options: engine::QueryOptions {
            as_of,
            // Every row is folded into the answer; none is sent.
            maxrec: None,
            time_limit: Some(app.config.max_duration),
            privileged: caller.privileged(),
            hold: Some(permit),
            ..Default::default()
        },
        format: engine::encode::Format::Csv,
    };
    let deadline = Instant::now() + app.config.max_duration;
    let origin = Origin::of(
        &app.config,
        &format!("/tap/coverage/{what}"),
        &params.pairs(),
        &request.adql,
    );
    let result = start(app, &request, deadline)
        .await
        .map_err(|f| failed(&f))?;
    Ok(Ran {
        result,
        origin,
        deadline,
    })
}

/// Replays a coverage's token for `caller`.
async fn replayed(
    app: &Shared,
    caller: &Caller,
    token: &str,
    params: &Params,
) -> Result<Ran, Response> {
    let asked = match app.engine.record(token).await {
        Ok(r) => r.adql,
        Err(e) => return Err(failed(&Failure::from(&e))),
    };
    let permit = turn(app, &caller.key()).await?;
    let deadline = Instant::now() + app.config.max_duration;
    let options = ReplayOptions {
        time_limit: Some(app.config.max_duration),
        privileged: caller.privileged(),
        hold: Some(permit),
        ..Default::default()
    };
    let path = format!("/tap/coverage/replay/{token}");
    let origin = Origin::of(&app.config, &path, &params.pairs(), &asked);
    let result =
        match tokio::time::timeout_at(deadline.into(), app.engine.replay(token, &options)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(failed(&Failure::from(&e))),
            Err(_) => return Err(text(StatusCode::SERVICE_UNAVAILABLE, &overdue(app))),
        };
    Ok(Ran {
        result,
        origin,
        deadline,
    })
}

/// `GET /tap/coverage/replay/{token}`: the MOC of a coverage's token, from
/// the same rows, at the order it was drawn at unless `ORDER` says otherwise.
pub(crate) async fn replay(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Posted(params): Posted,
) -> Response {
    if let Err(e) = order_and_format(&params) {
        return text(StatusCode::BAD_REQUEST, &e);
    }
    match replayed(&app, &caller, &token, &params).await {
        Ok(ran) => answer(&app, ran, &params).await,
        Err(refusal) => refusal,
    }
}

/// Folds a coverage query's rows into its MOC, within the deadline, and
/// answers with it: the MOC in the body, what it is in the headers.
async fn answer(app: &Shared, ran: Ran, params: &Params) -> Response {
    let Ran {
        mut result,
        origin,
        deadline,
    } = ran;
    let (order, format) = match order_and_format(params) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
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
        "inline; filename=\"{}-{snapshot}.{}\"",
        if coverage.space_time.is_some() {
            "space-time"
        } else if coverage.footprints {
            "footprints"
        } else {
            "cells"
        },
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    let facts: [(&str, String); 6] = [
        (
            "x-coverage-area-deg2",
            format!("{:.6}", coverage.area_deg2()),
        ),
        ("x-coverage-order", coverage.moc.depth_max().to_string()),
        ("x-coverage-cells", coverage.cells().to_string()),
        ("x-coverage-rows", coverage.rows.to_string()),
        (
            "x-coverage-of",
            if coverage.footprints {
                "detector-visits"
            } else {
                "cells"
            }
            .to_string(),
        ),
        (
            "x-coverage-without-corners",
            coverage.without_corners.to_string(),
        ),
    ];
    let timed = coverage.space_time.as_ref().map(|st| {
        [
            ("x-coverage-time-order", st.time_order.to_string()),
            ("x-coverage-without-time", st.without_time.to_string()),
        ]
    });
    for (name, value) in facts.into_iter().chain(timed.into_iter().flatten()) {
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
