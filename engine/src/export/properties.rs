//! `hats.properties`: what a HATS catalog is (HATS's own keys) and where its
//! rows came from (`ppdb_*`).

use super::hats::HEALPIX_COLUMN;

/// What a catalog's `hats.properties` says.
pub(super) struct Properties<'a> {
    /// The catalog's name (its folder).
    pub name: &'a str,
    /// The table its rows are of.
    pub table: &'a str,
    /// For a margin catalog, its threshold in arcseconds.
    pub margin_arcsec: Option<f64>,
    pub rows: u64,
    pub snapshot: u64,
    pub token: &'a str,
    pub catalog_id: &'a str,
    pub without_position: u64,
    pub max_rows: u64,
    pub max_order: u8,
    pub bytes: u64,
    pub builder: &'a str,
    pub embargo_applied: bool,
}

/// The Java-properties text of a catalog.
pub(super) fn properties_text(p: &Properties) -> String {
    // An object catalog has one row per object; the rest are sources of them.
    let kind = match (p.margin_arcsec, p.table) {
        (Some(_), _) => "margin",
        (None, "DiaObject" | "SSObject") => "object",
        (None, _) => "source",
    };
    let title = match p.margin_arcsec {
        Some(a) => format!(
            "Rubin Prompt Products {}: rows within {a} arcsec of each partition, at snapshot {}",
            p.table, p.snapshot
        ),
        None => format!(
            "Rubin Prompt Products {} at snapshot {}",
            p.table, p.snapshot
        ),
    };
    let mut lines: Vec<(&str, String)> = vec![
        ("obs_collection", p.name.into()),
        ("dataproduct_type", kind.into()),
        ("obs_title", title),
        ("hats_nrows", p.rows.to_string()),
        ("hats_col_ra", "ra".into()),
        ("hats_col_dec", "dec".into()),
        ("hats_col_healpix", HEALPIX_COLUMN.into()),
        ("hats_col_healpix_order", "29".into()),
        ("hats_npix_suffix", ".parquet".into()),
    ];
    if let Some(a) = p.margin_arcsec {
        lines.push(("hats_primary_table_url", p.table.into()));
        lines.push(("hats_margin_threshold", a.to_string()));
    }
    let now = chrono::Utc::now();
    lines.extend([
        ("hats_max_rows", p.max_rows.to_string()),
        ("hats_order", p.max_order.to_string()),
        ("hats_estsize", p.bytes.div_ceil(1024).to_string()),
        ("hats_builder", p.builder.into()),
        (
            "hats_creation_date",
            now.format("%Y-%m-%dT%H:%MUTC").to_string(),
        ),
        ("hats_version", "v1.0".into()),
        ("ppdb_catalog_id", p.catalog_id.into()),
        ("ppdb_snapshot", p.snapshot.to_string()),
        ("ppdb_token", p.token.into()),
        ("ppdb_replay", format!("ppdb replay {}", p.token)),
        ("ppdb_embargo_applied", p.embargo_applied.to_string()),
        ("ppdb_rows_without_position", p.without_position.to_string()),
    ]);
    let mut text = String::from("#HATS catalog\n");
    for (key, value) in lines {
        text.push_str(key);
        text.push('=');
        text.push_str(&escape(&value));
        text.push('\n');
    }
    text
}

/// A value as Java properties read it back.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_escape_what_would_end_a_line() {
        assert_eq!(escape("a\\b\nc"), "a\\\\b\\nc");
    }
}
