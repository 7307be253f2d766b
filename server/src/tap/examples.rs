//! The DALI examples page (`/tap/examples`): XHTML with RDFa.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::Shared;
use crate::tap::failure::esc;

/// DALI examples: XHTML with RDFa, one block per runnable query.
pub async fn page(State(app): State<Shared>) -> Response {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE html>\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" vocab=\"http://www.ivoa.net/rdf/examples#\">\n\
         <head><title>ppdb TAP examples</title></head>\n<body>\n<h1>Example queries</h1>\n",
    );
    for e in &app.examples {
        out.push_str(&format!(
            "<div typeof=\"example\" id=\"{}\" resource=\"#{}\">\n\
             <h2 property=\"name\">{}</h2>\n<p>{}</p>\n\
             <pre property=\"query\">{}</pre>\n</div>\n",
            e.id,
            e.id,
            esc(e.name),
            esc(e.what),
            esc(&e.query)
        ));
    }
    out.push_str("</body>\n</html>\n");
    (
        [(header::CONTENT_TYPE, "application/xhtml+xml; charset=utf-8")],
        out,
    )
        .into_response()
}
