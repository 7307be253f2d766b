//! The served tables: names, columns and their metadata (TAP_SCHEMA, made
//! from the same Felis schema, is in [`crate::session::tap_schema`]).

use catalog::felis::{Column, Datatype};
use catalog::{CatalogSchema, TableId};

/// A table as queries name it.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its schema (`ppdb`, `src`).
    pub schema: &'static str,
    /// Its name.
    pub name: &'static str,
    /// The stored table it reads.
    pub stored: TableId,
    /// Whether it shows only the current version of each object.
    pub current_only: bool,
    /// What it holds.
    pub description: String,
}

/// The tables queries can read, in the order `TAP_SCHEMA.tables` lists them.
pub fn served(schema: &CatalogSchema) -> Vec<Served> {
    let desc = |t: TableId| schema.table(t).felis.description.clone();
    let mut out = vec![
        Served {
            schema: "ppdb",
            name: "DiaObject",
            stored: TableId::DiaObject,
            current_only: true,
            description: "The current version of each object at the pinned snapshot \
                          (validityEndMjdTai is NULL), as the PPDB keeps it."
                .into(),
        },
        Served {
            schema: "ppdb",
            name: "DiaObjectHistory",
            stored: TableId::DiaObject,
            current_only: false,
            description: format!(
                "Every version of each object, with its validity interval as known at the pinned snapshot. {}",
                desc(TableId::DiaObject)
            ),
        },
    ];
    for t in [
        TableId::DiaSource,
        TableId::DiaForcedSource,
        TableId::DetectorVisitProcessingSummary,
        TableId::SSObject,
        TableId::PromptSource,
    ] {
        out.push(Served {
            schema: t.schema_name(),
            name: t.name(),
            stored: t,
            current_only: false,
            description: desc(t),
        });
    }
    out
}

/// The VOTable datatype and arraysize of a Felis column.
pub fn votable_type(c: &Column) -> (&'static str, Option<String>) {
    // A single character has no arraysize; longer text is variable up to its length.
    let text = || match (&c.arraysize, c.length) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(1)) => None,
        (None, Some(n)) => Some(format!("{n}*")),
        (None, None) => Some("*".into()),
    };
    match c.datatype {
        Datatype::Boolean => ("boolean", None),
        Datatype::Byte | Datatype::Short => ("short", None),
        Datatype::Int => ("int", None),
        Datatype::Long => ("long", None),
        Datatype::Float => ("float", None),
        Datatype::Double => ("double", None),
        Datatype::Char | Datatype::String | Datatype::Text => ("char", text()),
        Datatype::Unicode => ("unicodeChar", text()),
        Datatype::Timestamp => ("char", Some("*".into())),
        Datatype::Binary => ("unsignedByte", Some("*".into())),
    }
}

/// What the ADQL parser needs to resolve names: every served table and its columns.
pub fn adql_tables(schema: &CatalogSchema) -> Vec<adql::Table> {
    let mut out: Vec<adql::Table> = served(schema)
        .iter()
        .map(|t| adql::Table {
            schema: t.schema.to_string(),
            name: t.name.to_string(),
            columns: schema
                .table(t.stored)
                .felis
                .columns
                .iter()
                .map(|c| adql::Column {
                    name: c.name.clone(),
                    unit: c.unit.clone(),
                })
                .collect(),
            // The current view shows one version per object; the history, every one.
            key: if t.current_only {
                vec!["diaObjectId".into()]
            } else {
                schema
                    .table(t.stored)
                    .key
                    .iter()
                    .map(|k| k.to_string())
                    .collect()
            },
        })
        .collect();
    out.push(crate::session::obscore::adql_table());
    for (name, batch) in crate::session::tap_schema::batches(schema) {
        out.push(in_memory_table("TAP_SCHEMA", name, &batch.schema()));
    }
    out
}

/// An in-memory table (TAP_SCHEMA, an upload) as the parser sees it: its columns
/// by name, without units.
pub(crate) fn in_memory_table(
    schema: &str,
    name: &str,
    columns: &arrow::datatypes::Schema,
) -> adql::Table {
    adql::Table {
        schema: schema.into(),
        name: name.into(),
        columns: columns
            .fields()
            .iter()
            .map(|f| adql::Column {
                name: f.name().clone(),
                unit: None,
            })
            .collect(),
        key: Vec::new(),
    }
}
