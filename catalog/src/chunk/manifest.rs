//! The manifest (`chunk.json`, docs/chunks.md §1): read, parsed and checked
//! against the tables its format allows.

use super::*;

/// Reads only the manifest of a chunk folder (to order chunks before loading them).
pub async fn read_manifest(loc: &store::Location) -> Result<Manifest> {
    let src = loc.url.clone();
    let refuse = |loc: Location, m: String| Error::refused(&src, Refusal::Manifest, loc, m);
    let bytes = match loc.store.get(&loc.child(MANIFEST)).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(refuse(
                Location::file(MANIFEST),
                "chunk.json is missing".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            Location::file(MANIFEST),
            format!("chunk.json is not valid JSON: {e}"),
        )
    })?;
    parse_manifest(&v).map_err(|(key, m)| refuse(Location::file(MANIFEST).column(key), m))
}

pub(super) fn parse_manifest(v: &Value) -> std::result::Result<Manifest, (String, String)> {
    let obj = v.as_object().ok_or((
        "".to_string(),
        "chunk.json must be a JSON object".to_string(),
    ))?;
    let get = |k: &str| {
        obj.get(k)
            .ok_or((k.to_string(), format!("chunk.json lacks key {k:?}")))
    };
    let string = |k: &str| {
        get(k)?
            .as_str()
            .map(str::to_string)
            .ok_or((k.to_string(), format!("{k:?} must be a string")))
    };
    let format = string("format")?;
    if format != REPLICA_FORMAT && format != SRC_FORMAT {
        return Err((
            "format".into(),
            format!("unknown format {format:?} (expected {REPLICA_FORMAT:?} or {SRC_FORMAT:?})"),
        ));
    }
    let chunk_id = get("chunk_id")?.as_i64().ok_or((
        "chunk_id".to_string(),
        "\"chunk_id\" must be a 64-bit integer".to_string(),
    ))?;
    let last_update_time = string("last_update_time")?;
    if !last_update_time.ends_with('Z')
        || chrono::DateTime::parse_from_rfc3339(&last_update_time).is_err()
    {
        return Err((
            "last_update_time".into(),
            format!(
                "\"last_update_time\" {last_update_time:?} is not ISO-8601 UTC with a Z suffix"
            ),
        ));
    }
    let unique_id = string("unique_id")?;
    let files_v = get("files")?
        .as_array()
        .ok_or(("files".to_string(), "\"files\" must be a list".to_string()))?;
    let mut files = Vec::new();
    for (i, f) in files_v.iter().enumerate() {
        let at = format!("files[{i}]");
        let o = f
            .as_object()
            .ok_or((at.clone(), format!("{at} must be an object")))?;
        let field = |k: &str| {
            o.get(k)
                .ok_or((at.clone(), format!("{at} lacks key {k:?}")))
        };
        let table = field("table")?
            .as_str()
            .ok_or((at.clone(), format!("{at}.table must be a string")))?
            .to_string();
        let path = field("path")?
            .as_str()
            .ok_or((at.clone(), format!("{at}.path must be a string")))?
            .to_string();
        let rows = field("rows")?.as_u64().ok_or((
            at.clone(),
            format!("{at}.rows must be a non-negative integer"),
        ))?;
        files.push(ManifestFile { table, path, rows });
    }
    Ok(Manifest {
        format,
        chunk_id,
        last_update_time,
        unique_id,
        files,
    })
}

pub(super) fn allowed_tables(format: &str) -> &'static [&'static str] {
    if format == SRC_FORMAT {
        &["PromptSource"]
    } else {
        &[
            "DiaObject",
            "DiaSource",
            "DiaForcedSource",
            "DetectorVisitProcessingSummary",
            "SSObject",
            "updates",
        ]
    }
}
