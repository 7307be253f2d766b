//! The tables a catalog serves: their Felis description, Arrow types, and the
//! ingest contract of docs/chunks.md (required, non-null and key columns).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};

use crate::felis::{self, Datatype};

/// The Felis schema of the `ppdb` tables, as shipped in `data/schema/ppdb.yaml`.
pub const PPDB_FELIS: &str = include_str!("../../data/schema/ppdb.yaml");
/// The Felis schema of the `src` tables, as shipped in `data/schema/src.yaml`.
pub const SRC_FELIS: &str = include_str!("../../data/schema/src.yaml");

/// Hidden column: the nested HEALPix index at order 29 of the row's position.
pub const HEALPIX_29: &str = "_healpix_29";
/// Hidden column: the snapshot that added the row.
pub const ADDED: &str = "_added";
/// Hidden column: the snapshot that retired the row (NULL while it stands),
/// filled in by compaction; see [`crate::ScanFile`] for retirements not yet folded in.
pub const RETIRED: &str = "_retired";

/// A stored table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum TableId {
    /// `ppdb.DiaObject`: every version of every object (the engine derives the current view).
    DiaObject,
    /// `ppdb.DiaSource`.
    DiaSource,
    /// `ppdb.DiaForcedSource`.
    DiaForcedSource,
    /// `ppdb.DetectorVisitProcessingSummary`.
    DetectorVisitProcessingSummary,
    /// `ppdb.SSObject`.
    SSObject,
    /// `src.PromptSource`.
    PromptSource,
}

impl TableId {
    /// All stored tables.
    pub const ALL: [TableId; 6] = [
        TableId::DiaObject,
        TableId::DiaSource,
        TableId::DiaForcedSource,
        TableId::DetectorVisitProcessingSummary,
        TableId::SSObject,
        TableId::PromptSource,
    ];

    /// The table name, as in the schema and in chunk manifests.
    pub fn name(self) -> &'static str {
        match self {
            TableId::DiaObject => "DiaObject",
            TableId::DiaSource => "DiaSource",
            TableId::DiaForcedSource => "DiaForcedSource",
            TableId::DetectorVisitProcessingSummary => "DetectorVisitProcessingSummary",
            TableId::SSObject => "SSObject",
            TableId::PromptSource => "PromptSource",
        }
    }

    /// The schema the table is served in (`ppdb` or `src`).
    pub fn schema_name(self) -> &'static str {
        match self {
            TableId::PromptSource => "src",
            _ => "ppdb",
        }
    }

    /// Whether rows are placed in HEALPix partitions (else one unpartitioned folder).
    pub fn is_partitioned(self) -> bool {
        !matches!(
            self,
            TableId::DetectorVisitProcessingSummary | TableId::SSObject
        )
    }

    /// Whether rows carry a position (`ra`, `dec`) and so a `_healpix_29` column.
    pub fn has_position(self) -> bool {
        !matches!(self, TableId::SSObject)
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TableId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TableId::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown table {s:?}"))
    }
}

/// One served table: Felis description plus what ingest and storage need.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Which table.
    pub id: TableId,
    /// Its Felis description (columns in schema order).
    pub felis: felis::Table,
    /// The served columns as Arrow fields (all nullable except the `!` columns).
    pub arrow: SchemaRef,
    /// The stored columns: the served ones, then `_healpix_29` (if positioned), `_added`, `_retired`.
    pub physical: SchemaRef,
    /// Columns a chunk file must carry.
    pub required: Vec<&'static str>,
    /// Columns that must not hold NULL (the `!` columns of docs/chunks.md).
    pub not_null: Vec<&'static str>,
    /// Columns whose values are unique over all committed data, together.
    pub key: Vec<&'static str>,
    index: HashMap<String, usize>,
}

impl TableSchema {
    /// The position of a served column in [`TableSchema::arrow`].
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// The served schemas (`ppdb`, `src`) and their tables.
#[derive(Debug, Clone)]
pub struct CatalogSchema {
    /// The `ppdb` Felis schema.
    pub ppdb: felis::Schema,
    /// The `src` Felis schema.
    pub src: felis::Schema,
    tables: Vec<TableSchema>,
}

static BUILTIN: LazyLock<Arc<CatalogSchema>> = LazyLock::new(|| {
    // The shipped schema is compiled in and covered by tests; failing here is a build defect.
    let ppdb = felis::Schema::parse(PPDB_FELIS, "data/schema/ppdb.yaml")
        .expect("shipped data/schema/ppdb.yaml parses");
    let src = felis::Schema::parse(SRC_FELIS, "data/schema/src.yaml")
        .expect("shipped data/schema/src.yaml parses");
    Arc::new(CatalogSchema::new(ppdb, src))
});

impl CatalogSchema {
    /// The schema shipped with this build (`data/schema/*.yaml`).
    pub fn builtin() -> Arc<CatalogSchema> {
        BUILTIN.clone()
    }

    fn new(ppdb: felis::Schema, src: felis::Schema) -> Self {
        let tables = TableId::ALL
            .into_iter()
            .map(|id| {
                let felis_schema = if id.schema_name() == "src" {
                    &src
                } else {
                    &ppdb
                };
                let felis = felis_schema
                    .table(id.name())
                    .unwrap_or_else(|| panic!("shipped schema lacks table {id}"))
                    .clone();
                table_schema(id, felis)
            })
            .collect();
        CatalogSchema { ppdb, src, tables }
    }

    /// The schema of one table.
    pub fn table(&self, id: TableId) -> &TableSchema {
        &self.tables[TableId::ALL.iter().position(|t| *t == id).unwrap_or(0)]
    }

    /// A short fingerprint of the served schema, recorded in the log and in tokens.
    pub fn version(&self) -> String {
        format!(
            "ppdb {} / src {}",
            self.ppdb.version.as_deref().unwrap_or("?"),
            self.src.version.as_deref().unwrap_or("?")
        )
    }
}

/// The Arrow type a Felis datatype is stored as (docs/chunks.md §2).
pub fn arrow_type(dt: Datatype) -> DataType {
    match dt {
        Datatype::Byte => DataType::Int8,
        Datatype::Short => DataType::Int16,
        Datatype::Int => DataType::Int32,
        Datatype::Long => DataType::Int64,
        Datatype::Float => DataType::Float32,
        Datatype::Double => DataType::Float64,
        Datatype::Boolean => DataType::Boolean,
        Datatype::Char | Datatype::String | Datatype::Text | Datatype::Unicode => DataType::Utf8,
        Datatype::Timestamp => {
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
        }
        Datatype::Binary => DataType::Binary,
    }
}

fn contract(id: TableId) -> (&'static str, &'static [&'static str]) {
    // (required columns with `!` for non-null, key) straight from docs/chunks.md §2.
    match id {
        TableId::DiaObject => (
            "diaObjectId! validityStartMjdTai! ra! dec! raErr decErr nDiaSources! \
             firstDiaSourceMjdTai lastDiaSourceMjdTai \
             u_psfFluxMean u_psfFluxMeanErr u_psfFluxSigma u_psfFluxNdata! \
             g_psfFluxMean g_psfFluxMeanErr g_psfFluxSigma g_psfFluxNdata! \
             r_psfFluxMean r_psfFluxMeanErr r_psfFluxSigma r_psfFluxNdata! \
             i_psfFluxMean i_psfFluxMeanErr i_psfFluxSigma i_psfFluxNdata! \
             z_psfFluxMean z_psfFluxMeanErr z_psfFluxSigma z_psfFluxNdata! \
             y_psfFluxMean y_psfFluxMeanErr y_psfFluxSigma y_psfFluxNdata!",
            &["diaObjectId", "validityStartMjdTai"],
        ),
        TableId::DiaSource => (
            "diaSourceId! visit! detector! diaObjectId ssObjectId midpointMjdTai! ra! dec! \
             raErr decErr x! y! psfFlux psfFluxErr snr band! timeProcessedMjdTai!",
            &["diaSourceId"],
        ),
        TableId::DiaForcedSource => (
            "diaForcedSourceId! diaObjectId! visit! detector! ra! dec! midpointMjdTai! \
             psfFlux psfFluxErr band! timeProcessedMjdTai!",
            &["diaObjectId", "visit", "detector"],
        ),
        TableId::DetectorVisitProcessingSummary => {
            ("visit! detector! ra dec", &["visit", "detector"])
        }
        TableId::SSObject => ("ssObjectId!", &["ssObjectId"]),
        TableId::PromptSource => (
            "sourceId! visit! detector! band! ra! dec! psfFlux psfFluxErr calibFlux \
             calibFluxErr extendedness",
            &["sourceId"],
        ),
    }
}

fn table_schema(id: TableId, felis: felis::Table) -> TableSchema {
    let (spec, key) = contract(id);
    let mut required = Vec::new();
    let mut not_null = Vec::new();
    for word in spec.split_whitespace() {
        let name = word.trim_end_matches('!');
        required.push(name);
        if word.ends_with('!') {
            not_null.push(name);
        }
    }
    let fields: Vec<Field> = felis
        .columns
        .iter()
        .map(|c| {
            Field::new(
                &c.name,
                arrow_type(c.datatype),
                !not_null.contains(&c.name.as_str()),
            )
        })
        .collect();
    let mut physical = fields.clone();
    if id.has_position() {
        physical.push(Field::new(HEALPIX_29, DataType::Int64, true));
    }
    physical.push(Field::new(ADDED, DataType::Int64, false));
    physical.push(Field::new(RETIRED, DataType::Int64, true));
    let index = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().clone(), i))
        .collect();
    TableSchema {
        id,
        felis,
        arrow: Arc::new(ArrowSchema::new(fields)),
        physical: Arc::new(ArrowSchema::new(physical)),
        required,
        not_null,
        key: key.to_vec(),
        index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schema_has_every_contract_column_with_the_right_type() {
        let s = CatalogSchema::builtin();
        for id in TableId::ALL {
            let t = s.table(id);
            for c in t.required.iter().chain(&t.key) {
                assert!(
                    t.column_index(c).is_some(),
                    "{id}.{c} missing from the shipped schema"
                );
            }
        }
        let src = s.table(TableId::DiaSource);
        let f = src.arrow.field(src.column_index("detector").unwrap());
        assert_eq!(f.data_type(), &DataType::Int16);
        assert!(!f.is_nullable());
        let obj = s.table(TableId::DiaObject);
        assert!(
            obj.arrow
                .field(obj.column_index("validityEndMjdTai").unwrap())
                .is_nullable()
        );
    }
}
