//! UWS documents: a job, its parameters and results, as UWS 1.1 XML.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::app::Shared;
use crate::tap::failure::esc;

use super::*;

pub(super) fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

pub(super) fn owner_xml(job: &Job) -> String {
    match &job.owner {
        Some(o) => format!("<uws:ownerId>{}</uws:ownerId>", esc(o)),
        None => "<uws:ownerId xsi:nil=\"true\"/>".into(),
    }
}

pub(super) fn nil_or_time(name: &str, t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("<uws:{name}>{}</uws:{name}>", time(t)),
        None => format!("<uws:{name} xsi:nil=\"true\"/>"),
    }
}

/// The quote: when the job will have finished at the latest.
pub(super) fn quote_of(job: &Job) -> DateTime<Utc> {
    let from = job.started.unwrap_or_else(Utc::now);
    job.ended
        .unwrap_or(from + chrono::Duration::seconds(job.execution_duration as i64))
}

pub(super) fn job_xml(app: &Shared, job: &Job) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <uws:job xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" \
         xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"1.1\">\n",
    );
    out.push_str(&format!("<uws:jobId>{}</uws:jobId>\n", job.id));
    if let Some(r) = &job.run_id {
        out.push_str(&format!("<uws:runId>{}</uws:runId>\n", esc(r)));
    }
    out.push_str(&owner_xml(job));
    out.push_str(&format!("\n<uws:phase>{}</uws:phase>\n", job.phase.name()));
    out.push_str(&format!(
        "<uws:quote>{}</uws:quote>\n",
        time(&quote_of(job))
    ));
    out.push_str(&format!(
        "<uws:creationTime>{}</uws:creationTime>\n",
        time(&job.created)
    ));
    out.push_str(&nil_or_time("startTime", &job.started));
    out.push_str(&nil_or_time("endTime", &job.ended));
    out.push_str(&format!(
        "\n<uws:executionDuration>{}</uws:executionDuration>\n<uws:destruction>{}</uws:destruction>\n",
        job.execution_duration,
        time(&job.destruction)
    ));
    out.push_str(&parameters_xml(job, false));
    out.push_str(&results_xml(app, job, false));
    if let Some(e) = &job.error {
        out.push_str(&format!(
            "<uws:errorSummary type=\"fatal\" hasDetail=\"true\"><uws:message>{}</uws:message></uws:errorSummary>\n",
            esc(e)
        ));
    }
    if let Some(t) = &job.token {
        out.push_str(&format!(
            "<uws:jobInfo><token>{t}</token><replay>{}/tap/replay/{t}</replay></uws:jobInfo>\n",
            esc(&app.config.base_url)
        ));
    }
    out.push_str("</uws:job>\n");
    out
}

pub(super) fn parameters_xml(job: &Job, alone: bool) -> String {
    let mut out = String::new();
    if alone {
        out.push_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <uws:parameters xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\">\n",
        );
    } else {
        out.push_str("<uws:parameters>\n");
    }
    for (k, v) in &job.parameters {
        out.push_str(&format!(
            "<uws:parameter id=\"{}\">{}</uws:parameter>\n",
            esc(k),
            esc(v)
        ));
    }
    out.push_str("</uws:parameters>\n");
    out
}

pub(super) fn results_xml(app: &Shared, job: &Job, alone: bool) -> String {
    let mut out = String::new();
    if alone {
        out.push_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <uws:results xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" \
             xmlns:xlink=\"http://www.w3.org/1999/xlink\">\n",
        );
    } else {
        out.push_str("<uws:results>\n");
    }
    if job.phase == Phase::Completed {
        out.push_str(&format!(
            "<uws:result id=\"result\" xlink:type=\"simple\" xlink:href=\"{}/results/result\"",
            esc(&job_url(app, &job.id))
        ));
        if let Some(size) = job.size {
            out.push_str(&format!(" size=\"{size}\""));
        }
        if let Some(m) = &job.result_type {
            out.push_str(&format!(" mime-type=\"{}\"", esc(m)));
        }
        out.push_str("/>\n");
    }
    out.push_str("</uws:results>\n");
    out
}
