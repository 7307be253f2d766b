//! The TAP service: TAP 1.1 `sync` and `async` (UWS), VOSI, DALI examples,
//! uploads and `replay/{token}`, over the engine, and the router that joins them.

use crate::app::Shared;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
pub mod auth;
pub mod bodies;
pub mod coverage;
pub mod examples;
pub mod failure;
pub mod links;
pub mod origin;
pub mod params;
pub mod stream;
pub mod sync;
pub mod uploads;
pub mod uws;
pub mod vosi;

use sync::{record, replay, sync_get, sync_post};
use vosi::{availability, capabilities, home, landing, one_table, tables};

/// The service's routes.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/tap", get(landing))
        .route("/tap/", get(landing))
        .route("/tap/sync", get(sync_get).post(sync_post))
        .route("/tap/availability", get(availability))
        .route("/tap/capabilities", get(capabilities))
        .route("/tap/tables", get(tables))
        .route("/tap/tables/{name}", get(one_table))
        .route("/tap/replay/{token}", get(replay))
        .route("/tap/replay/{token}/record", get(record))
        .route("/tap/examples", get(crate::tap::examples::page))
        .route(
            "/tap/coverage/footprints",
            get(coverage::footprints).post(coverage::footprints),
        )
        .route(
            "/tap/coverage/space-time",
            get(coverage::space_time).post(coverage::space_time),
        )
        .route(
            "/tap/coverage/tables/{name}",
            get(coverage::table).post(coverage::table),
        )
        .route(
            "/tap/coverage/replay/{token}",
            get(coverage::replay).post(coverage::replay),
        )
        .route(
            "/tap/coverage/growth",
            get(coverage::growth).post(coverage::growth),
        )
        .route("/tap/links", get(links::links_get).post(links::links_post))
        .merge(crate::tap::uws::routes(app.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(app.config.upload_limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1 << 20),
        ))
        // Inside authentication, which says whose body it is.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::tap::bodies::admit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::tap::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::http::connections::bound_bodies,
        ))
        .layer(axum::middleware::map_response(server_header))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::http::access_log::log,
        ))
        .with_state(app)
}

/// Names the software in every response (VOSI clients like to know), and
/// tells browsers to take each response as the type it says it is: text that
/// echoes a request is never run as a page.
pub(crate) async fn server_header(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("ppdb/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
