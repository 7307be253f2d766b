//! What a result's columns are, from the plan's lineage and the catalog's metadata.

use crate::Engine;
use crate::result::QueryResult;
use std::collections::HashMap;

use arrow::array::AsArray;

use crate::encode::ColumnInfo;
use crate::plan::crossmatch::UPLOAD_SCHEMA;
use crate::upload::Upload;
impl Engine {
    /// What a result's columns are (units, UCDs, descriptions, shapes) and the
    /// `INFO`s that say where it came from, for the formats that carry them.
    pub fn describe(&self, result: &QueryResult) -> crate::encode::Describe {
        let mut infos = vec![
            ("snapshot".into(), result.snapshot.snapshot.to_string()),
            (
                "snapshot_time".into(),
                result.snapshot.committed_at.to_rfc3339(),
            ),
            // The IVOA Data Origin items the engine knows: the snapshot is the
            // version of the data the rows come from.
            (
                "resource_version".into(),
                result.snapshot.snapshot.to_string(),
            ),
            (
                "server_software".into(),
                format!("ppdb {}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        if let Some(t) = &result.token {
            infos.push(("query_token".into(), t.clone()));
        }
        if let Some(p) = &result.pinned_adql {
            infos.push(("pinned_adql".into(), p.clone()));
        }
        if let Some(cutoff) = result.embargo_cutoff {
            // Say so: a caller should know its result is not the whole catalog.
            infos.push(("embargo_cutoff_mjd_tai".into(), format!("{cutoff:.6}")));
            infos.push((
                "embargo".into(),
                format!(
                    "rows observed after MJD {cutoff:.6} (TAI) are embargoed: they, and \
                     changes made to rows after then, are left out of this result"
                ),
            ));
        }
        crate::encode::Describe {
            columns: result.columns.clone(),
            infos,
            replay_url: None,
            links: None,
        }
    }
}

/// What the lineage of a result starts from: the columns of the served tables
/// and `TAP_SCHEMA`, and the uploads of this query.
pub(crate) struct Known<'a> {
    pub(crate) columns: &'a HashMap<(String, String), ColumnInfo>,
    pub(crate) uploads: &'a [Upload],
}

impl crate::encode::lineage::Sources for Known<'_> {
    fn column(&self, schema: &str, table: &str, column: &str) -> Option<ColumnInfo> {
        if schema != UPLOAD_SCHEMA {
            return self
                .columns
                .get(&(format!("{schema}.{table}"), column.to_string()))
                .cloned();
        }
        let upload = self.uploads.iter().find(|u| u.name == table)?;
        let batch = &upload.batch;
        let i = batch.schema().index_of(column).ok()?;
        let field = batch.schema().field(i).clone();
        let meta = field.metadata();
        // Shown as sent: `unicodeChar` stays so, and `char` text must be ASCII to stay `char`.
        let ascii = !meta.contains_key(crate::upload::UNICODE)
            && batch
                .column(i)
                .as_string_opt::<i32>()
                .is_none_or(|a| a.values().is_ascii());
        Some(ColumnInfo {
            unit: meta.get(crate::upload::UNIT).cloned(),
            ucd: meta.get(crate::upload::UCD).cloned(),
            utype: None,
            description: None,
            geometry: None,
            ascii,
            // An upload's times are in whatever scale its sender used.
            tai: false,
        })
    }
}
