//! A job's sub-resources (UWS 1.1 §2.2.3): phase, execution duration,
//! destruction, quote, owner, error, results and parameters, each read and,
//! where UWS allows, set.

use super::*;

/// A job's property as text/plain, the way UWS gives single values.
pub(super) async fn plain(app: &Shared, id: &str, value: impl FnOnce(Job) -> String) -> Response {
    match job_or(app, id).await {
        Ok(j) => text(StatusCode::OK, value(j)),
        Err(r) => r,
    }
}

pub(super) async fn phase(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| j.phase.name().to_string()).await
}

pub(super) async fn post_phase(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    let Some(p) = params.get("PHASE") else {
        return text(
            StatusCode::BAD_REQUEST,
            "send PHASE=RUN or PHASE=ABORT\n".into(),
        );
    };
    match change_phase(&app, &caller, &id, p).await {
        Ok(()) => see_other(job_url(&app, &id)),
        Err(r) => r,
    }
}

pub(super) async fn change_phase(
    app: &Shared,
    caller: &Caller,
    id: &str,
    phase: &str,
) -> Result<(), Response> {
    let job = job_or(app, id).await?;
    match phase.trim().to_ascii_uppercase().as_str() {
        "RUN" => {
            if job.phase == Phase::Pending {
                run_job(app, id, &caller.key()).await?;
            }
            Ok(())
        }
        "ABORT" => {
            if job.phase.active() {
                update(app, id, |j| {
                    if j.phase.active() {
                        j.phase = Phase::Aborted;
                        j.ended = Some(Utc::now());
                    }
                })
                .await
                .map_err(store_failure)?;
                if let Ok(mut running) = app.jobs.running.lock()
                    && let Some(handle) = running.remove(id)
                {
                    handle.abort();
                }
                let _ = app
                    .engine
                    .state()
                    .remove_all(&format!("jobs/{id}/result"))
                    .await;
            }
            Ok(())
        }
        other => Err(text(
            StatusCode::BAD_REQUEST,
            format!("PHASE={other} is not something a job can be asked to do: use RUN or ABORT\n"),
        )),
    }
}

pub(super) async fn duration(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| j.execution_duration.to_string()).await
}

pub(super) async fn post_duration(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    post_setting(&app, &id, params, Setting::Duration).await
}

/// A job setting that has its own UWS resource.
#[derive(Clone, Copy)]
pub(super) enum Setting {
    Duration,
    Destruction,
}

/// `POST` to a setting's resource: change it, then 303 to the job.
pub(super) async fn post_setting(
    app: &Shared,
    id: &str,
    params: Params,
    setting: Setting,
) -> Response {
    let (name, form) = match setting {
        Setting::Duration => ("EXECUTIONDURATION", "<seconds>"),
        Setting::Destruction => ("DESTRUCTION", "<ISO-8601 time>"),
    };
    let Some(value) = params.get(name) else {
        return text(StatusCode::BAD_REQUEST, format!("send {name}={form}\n"));
    };
    let changed = match setting {
        Setting::Duration => set_duration(app, id, value).await,
        Setting::Destruction => set_destruction(app, id, value).await,
    };
    match changed {
        Ok(()) => see_other(job_url(app, id)),
        Err(r) => r,
    }
}

pub(super) async fn set_duration(app: &Shared, id: &str, value: &str) -> Result<(), Response> {
    let Ok(seconds) = value.trim().parse::<i64>() else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("EXECUTIONDURATION={value} must be a whole number of seconds\n"),
        ));
    };
    let job = job_or(app, id).await?;
    if job.phase != Phase::Pending {
        return Err(text(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: its execution duration can change only while it is PENDING\n",
                job.phase.name()
            ),
        ));
    }
    let d = clamp_duration(app, seconds);
    update(app, id, |j| j.execution_duration = d)
        .await
        .map_err(store_failure)?;
    Ok(())
}

pub(super) async fn destruction(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| time(&j.destruction)).await
}

pub(super) async fn post_destruction(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    post_setting(&app, &id, params, Setting::Destruction).await
}

pub(super) async fn set_destruction(app: &Shared, id: &str, value: &str) -> Result<(), Response> {
    let Some(t) = parse_time(value) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("DESTRUCTION={value} is not an ISO-8601 time\n"),
        ));
    };
    let job = job_or(app, id).await?;
    // The server keeps jobs no longer than its configured lifetime from their
    // creation: asking again must not keep one for ever.
    let t = t.min(job.created + app.config.job_lifetime);
    update(app, id, |j| j.destruction = t)
        .await
        .map_err(store_failure)?;
    Ok(())
}

pub(super) async fn quote(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| time(&quote_of(&j))).await
}

pub(super) async fn owner(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| j.owner.unwrap_or_default()).await
}

pub(super) async fn error_doc(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match job_or(&app, &id).await {
        Ok(j) => match &j.error {
            Some(message) => error(StatusCode::OK, message),
            None => text(
                StatusCode::NOT_FOUND,
                format!("job {id} is {} and has no error\n", j.phase.name()),
            ),
        },
        Err(r) => r,
    }
}

pub(super) async fn results(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match job_or(&app, &id).await {
        Ok(j) => xml(results_xml(&app, &j, true)),
        Err(r) => r,
    }
}

pub(super) async fn result(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let job = match job_or(&app, &id).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    if let (Phase::Error, Some(message)) = (job.phase, &job.error) {
        // DALI: no result, so 404; the error document lets a client that
        // fetches the result (astroquery does) show why.
        return error(StatusCode::NOT_FOUND, message);
    }
    if job.phase != Phase::Completed {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "job {id} is {}: a result exists only once it is COMPLETED\n",
                job.phase.name()
            ),
        );
    }
    match app.engine.state().read_stream(&result_key(&id)).await {
        Ok(Some(stream)) => {
            let mut response = Response::new(Body::from_stream(stream));
            let media = job
                .result_type
                .as_deref()
                .and_then(|m| HeaderValue::from_str(m).ok())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            response.headers_mut().insert(header::CONTENT_TYPE, media);
            if let Some(t) = job
                .token
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok())
            {
                response.headers_mut().insert("x-query-token", t);
            }
            response
        }
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("the result of job {id} is gone\n"),
        ),
        Err(e) => store_failure(e),
    }
}

pub(super) async fn parameters(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match job_or(&app, &id).await {
        Ok(j) => xml(parameters_xml(&j, true)),
        Err(r) => r,
    }
}

pub(super) async fn post_parameters(
    State(app): State<Shared>,
    caller: Extension<Caller>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    post_job(State(app), caller, Path(id), posted).await
}
