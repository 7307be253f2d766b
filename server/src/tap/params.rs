//! Request parameters: the query string, then a form or multipart body,
//! bounded before anything is kept.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::tap::failure::Failure;

/// Request parameters (TAP parameter names ignore case) and uploaded parts.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
    map: HashMap<String, String>,
    /// File parts of a multipart request: (part name, bytes).
    pub parts: Vec<(String, Bytes)>,
}

impl Params {
    /// Parameters from name/value pairs; the first of a repeated name wins.
    pub fn new(pairs: Vec<(String, String)>) -> Params {
        let mut map = HashMap::new();
        for (k, v) in &pairs {
            map.entry(k.to_ascii_uppercase()).or_insert(v.clone());
        }
        Params {
            pairs,
            map,
            parts: Vec::new(),
        }
    }

    /// A parameter's value, by its upper-case name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Every pair, names as sent.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.pairs.clone()
    }
}

/// The parameters of a POST (query string, then form or multipart body); a
/// body that cannot be read is refused with a 400 error VOTable.
pub(crate) struct Posted(pub Params);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, _: &S) -> Result<Posted, Response> {
        params_of(request)
            .await
            .map(Posted)
            .map_err(|e| e.response())
    }
}

/// The most bytes of parameters a request may carry (the query string, a form
/// body, the multipart parts that are not files): an ADQL query with a long
/// `IN` list of 100 000 ids fits; a table belongs in an upload. Checked before anything is
/// kept, so a request cannot fill memory or a job's record with them.
pub(crate) const PARAMETERS_LIMIT: usize = 4 << 20;

fn too_many_parameters() -> Failure {
    Failure {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "the request's parameters are larger than {} KiB: send long lists of values \
             as an upload",
            PARAMETERS_LIMIT >> 10
        ),
    }
}

/// The parameters of a POST: the query string, then the body (form or multipart).
async fn params_of(request: axum::extract::Request) -> Result<Params, Failure> {
    let unreadable = |what: String| Failure::refused(what);
    let mut pairs: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let mut parts = Vec::new();
    if multipart {
        use axum::extract::FromRequest;
        let mut request = request;
        quote_boundary(request.headers_mut());
        let mut form = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|e| unreadable(format!("unreadable multipart body: {e}")))?;
        let mut text = pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| unreadable(format!("unreadable multipart body: {}", e.body_text())))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let is_file = field.file_name().is_some();
            let bytes = field.bytes().await.map_err(|e| {
                unreadable(format!(
                    "unreadable multipart part '{name}': {}",
                    e.body_text()
                ))
            })?;
            // Any part may be what an UPLOAD names; those without a file name are
            // parameters as well.
            if !is_file {
                text += name.len() + bytes.len();
                if text > PARAMETERS_LIMIT {
                    return Err(too_many_parameters());
                }
                pairs.push((name.clone(), String::from_utf8_lossy(&bytes).into_owned()));
            }
            parts.push((name, bytes));
        }
    } else {
        let body = read_form(request.into_body()).await?;
        pairs.extend(
            url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    let mut params = Params::new(pairs);
    params.parts = parts;
    Ok(params)
}

/// How much of a body past [`PARAMETERS_LIMIT`] is read and dropped before
/// the refusal is sent: a client still sending when the connection closes
/// sees a reset instead of the 413 (curl and reqwest did).
const DRAINED: usize = 16 << 20;

/// A form body of at most [`PARAMETERS_LIMIT`] bytes; a larger one is read on
/// (and dropped) up to [`DRAINED`] more, then refused.
async fn read_form(body: Body) -> Result<Bytes, Failure> {
    use futures::StreamExt as _;
    let mut frames = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = frames.next().await {
        let frame = frame
            .map_err(|e| Failure::refused(format!("the request body could not be read: {e}")))?;
        seen += frame.len();
        if seen <= PARAMETERS_LIMIT {
            kept.extend_from_slice(&frame);
        } else if seen > PARAMETERS_LIMIT + DRAINED {
            break;
        }
    }
    if seen > PARAMETERS_LIMIT {
        return Err(too_many_parameters());
    }
    Ok(Bytes::from(kept))
}

/// Quotes a bare multipart boundary. astroquery sends `boundary====1733…===`,
/// which the MIME grammar allows only quoted (`=` is a separator), so the
/// multipart parser refuses it; quoting leaves the boundary itself unchanged.
fn quote_boundary(headers: &mut axum::http::HeaderMap) {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let lower = value.to_ascii_lowercase();
    let Some(at) = lower.find("boundary=") else {
        return;
    };
    let start = at + "boundary=".len();
    if value[start..].starts_with('"') {
        return;
    }
    let end = value[start..].find(';').map_or(value.len(), |i| start + i);
    let boundary = value[start..end].trim();
    let fixed = format!("{}\"{boundary}\"{}", &value[..start], &value[end..]);
    if let Ok(v) = HeaderValue::from_str(&fixed) {
        headers.insert(header::CONTENT_TYPE, v);
    }
}
