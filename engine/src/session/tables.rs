//! The served tables: names, columns and their metadata, and `TAP_SCHEMA`
//! (TAP 1.1) built from the same Felis schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use catalog::felis::{Column, Datatype};
use catalog::{CatalogSchema, TableId};

use crate::encode::ColumnInfo;

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

struct Cols {
    names: Vec<&'static str>,
    types: Vec<DataType>,
    values: Vec<Vec<Option<String>>>,
}

impl Cols {
    fn new(spec: &[(&'static str, DataType)]) -> Cols {
        Cols {
            names: spec.iter().map(|s| s.0).collect(),
            types: spec.iter().map(|s| s.1.clone()).collect(),
            values: vec![Vec::new(); spec.len()],
        }
    }

    fn row(&mut self, row: Vec<Option<String>>) {
        for (i, v) in row.into_iter().enumerate() {
            self.values[i].push(v);
        }
    }

    fn batch(self) -> RecordBatch {
        let schema: SchemaRef = Arc::new(Schema::new(
            self.names
                .iter()
                .zip(&self.types)
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = self
            .values
            .into_iter()
            .zip(&self.types)
            .map(|(v, t)| -> ArrayRef {
                match t {
                    DataType::Int32 => Arc::new(Int32Array::from(
                        v.into_iter()
                            .map(|x| x.and_then(|s| s.parse().ok()))
                            .collect::<Vec<Option<i32>>>(),
                    )),
                    _ => Arc::new(StringArray::from(v)),
                }
            })
            .collect();
        // Shapes are fixed above; a mismatch would be a defect in this file.
        RecordBatch::try_new(schema, arrays).expect("TAP_SCHEMA columns line up")
    }
}

fn s(x: impl Into<String>) -> Option<String> {
    Some(x.into())
}

/// What results say of each column of the served tables and of `TAP_SCHEMA`,
/// by `("schema.table", column)`: read from `TAP_SCHEMA.columns` itself, so a
/// result and the service's metadata always agree.
///
/// Text declared `char` is ASCII: ingest refuses anything else in the
/// catalog's `char` columns, and `TAP_SCHEMA`'s own values are checked here.
pub(crate) fn column_infos(
    tap: &[(&'static str, RecordBatch)],
) -> HashMap<(String, String), ColumnInfo> {
    let mut out = HashMap::new();
    let Some((_, columns)) = tap.iter().find(|(name, _)| *name == "columns") else {
        return out;
    };
    let text = |name: &str| {
        columns
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>().cloned())
    };
    let (Some(table), Some(column), Some(ucd), Some(unit), Some(description), Some(datatype)) = (
        text("table_name"),
        text("column_name"),
        text("ucd"),
        text("unit"),
        text("description"),
        text("datatype"),
    ) else {
        return out;
    };
    let value =
        |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    for i in 0..columns.num_rows() {
        let (t, c) = (table.value(i), column.value(i).trim_matches('"'));
        let ascii = datatype.value(i) == "char"
            && match t.strip_prefix("TAP_SCHEMA.") {
                Some(own) => tap
                    .iter()
                    .find(|(name, _)| *name == own)
                    .and_then(|(_, b)| b.column_by_name(c))
                    .and_then(|a| a.as_string_opt::<i32>())
                    .is_some_and(|a| a.iter().flatten().all(str::is_ascii)),
                None => true,
            };
        out.insert(
            (t.to_string(), c.to_string()),
            ColumnInfo {
                unit: value(&unit, i),
                ucd: value(&ucd, i),
                description: value(&description, i),
                geometry: None,
                ascii,
            },
        );
    }
    out
}

/// The five `TAP_SCHEMA` tables, by name.
pub fn tap_schema(schema: &CatalogSchema) -> Vec<(&'static str, RecordBatch)> {
    use DataType::{Int32, Utf8};
    let served = served(schema);
    let mut schemas = Cols::new(&[
        ("schema_name", Utf8),
        ("utype", Utf8),
        ("description", Utf8),
        ("schema_index", Int32),
    ]);
    schemas.row(vec![
        s("ppdb"),
        None,
        s(schema.ppdb.description.clone()),
        s("0"),
    ]);
    schemas.row(vec![
        s("src"),
        None,
        s(schema.src.description.clone()),
        s("1"),
    ]);
    schemas.row(vec![
        s("TAP_SCHEMA"),
        None,
        s("Metadata of the tables and columns this service serves (TAP 1.1)."),
        s("2"),
    ]);

    let mut tables = Cols::new(&[
        ("schema_name", Utf8),
        ("table_name", Utf8),
        ("table_type", Utf8),
        ("utype", Utf8),
        ("description", Utf8),
        ("table_index", Int32),
    ]);
    let mut columns = Cols::new(&[
        ("table_name", Utf8),
        ("column_name", Utf8),
        ("utype", Utf8),
        ("ucd", Utf8),
        ("unit", Utf8),
        ("description", Utf8),
        ("datatype", Utf8),
        ("arraysize", Utf8),
        ("xtype", Utf8),
        ("size", Int32),
        ("principal", Int32),
        ("indexed", Int32),
        ("std", Int32),
        ("column_index", Int32),
    ]);
    for (i, t) in served.iter().enumerate() {
        let full = format!("{}.{}", t.schema, t.name);
        tables.row(vec![
            s(t.schema),
            s(full.clone()),
            s("table"),
            None,
            s(t.description.clone()),
            s(i.to_string()),
        ]);
        let ts = schema.table(t.stored);
        for (j, c) in ts.felis.columns.iter().enumerate() {
            let (datatype, arraysize) = votable_type(c);
            // The deprecated `size` must agree with a fixed or bounded arraysize.
            let size = arraysize.as_deref().and_then(|a| {
                let n = a.trim_end_matches('*');
                n.parse::<u32>().ok().map(|n| n.to_string())
            });
            let indexed = ts.key.contains(&c.name.as_str())
                || matches!(c.name.as_str(), "diaObjectId" | "ra" | "dec");
            columns.row(vec![
                s(full.clone()),
                s(c.name.clone()),
                None,
                c.ucd.clone(),
                c.unit.clone(),
                s(c.description.clone()),
                s(datatype),
                arraysize,
                c.xtype
                    .clone()
                    .or_else(|| (c.datatype == Datatype::Timestamp).then(|| "timestamp".into())),
                size,
                s(if c.principal { "1" } else { "0" }),
                s(if indexed { "1" } else { "0" }),
                s("1"),
                s(j.to_string()),
            ]);
        }
    }
    // (table, description, [(column, datatype, description)])
    type TapTable<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str, &'a str)]);
    let tap_tables: [TapTable; 5] = [
        (
            "schemas",
            "The schemas this service serves.",
            &[
                ("schema_name", "char", "schema name"),
                ("utype", "char", "schema utype"),
                ("description", "char", "what the schema holds"),
                ("schema_index", "int", "order to list schemas in"),
            ],
        ),
        (
            "tables",
            "The tables this service serves.",
            &[
                ("schema_name", "char", "schema the table belongs to"),
                ("table_name", "char", "table name, qualified by its schema"),
                ("table_type", "char", "table or view"),
                ("utype", "char", "table utype"),
                ("description", "char", "what the table holds"),
                ("table_index", "int", "order to list tables in"),
            ],
        ),
        (
            "columns",
            "The columns of every table this service serves.",
            &[
                ("table_name", "char", "table the column belongs to"),
                ("column_name", "char", "column name"),
                ("utype", "char", "column utype"),
                ("ucd", "char", "unified content descriptor"),
                ("unit", "char", "unit, in VOUnit syntax"),
                ("description", "char", "what the column holds"),
                ("datatype", "char", "VOTable datatype"),
                ("arraysize", "char", "VOTable arraysize"),
                ("xtype", "char", "VOTable xtype"),
                ("size", "int", "deprecated: use arraysize"),
                (
                    "principal",
                    "int",
                    "1 if the column is among the most useful",
                ),
                (
                    "indexed",
                    "int",
                    "1 if the service finds values of this column fast",
                ),
                ("std", "int", "1 if the column is defined by a standard"),
                ("column_index", "int", "order to list columns in"),
            ],
        ),
        (
            "keys",
            "Foreign keys between the tables.",
            &[
                ("key_id", "char", "key identifier"),
                ("from_table", "char", "table holding the foreign key"),
                ("target_table", "char", "table the key refers to"),
                ("utype", "char", "key utype"),
                ("description", "char", "what the key means"),
            ],
        ),
        (
            "key_columns",
            "The columns of each foreign key.",
            &[
                ("key_id", "char", "key identifier"),
                ("from_column", "char", "column in the from table"),
                ("target_column", "char", "column in the target table"),
            ],
        ),
    ];
    for (i, (name, desc, cols)) in tap_tables.iter().enumerate() {
        let full = format!("TAP_SCHEMA.{name}");
        tables.row(vec![
            s("TAP_SCHEMA"),
            s(full.clone()),
            s("table"),
            None,
            s(*desc),
            s((served.len() + i).to_string()),
        ]);
        for (j, (c, t, d)) in cols.iter().enumerate() {
            columns.row(vec![
                s(full.clone()),
                // TAP 1.1 names this column with a delimited identifier: SIZE is reserved in ADQL.
                s(if *c == "size" {
                    "\"size\"".to_string()
                } else {
                    c.to_string()
                }),
                None,
                None,
                None,
                s(*d),
                s(*t),
                (*t == "char").then(|| "*".to_string()),
                None,
                None,
                s("1"),
                s("0"),
                s("1"),
                s(j.to_string()),
            ]);
        }
    }

    let mut keys = Cols::new(&[
        ("key_id", Utf8),
        ("from_table", Utf8),
        ("target_table", Utf8),
        ("utype", Utf8),
        ("description", Utf8),
    ]);
    let mut key_columns = Cols::new(&[
        ("key_id", Utf8),
        ("from_column", Utf8),
        ("target_column", Utf8),
    ]);
    for (id, from, to, from_col, to_col, desc) in [
        (
            "tables_schemas",
            "TAP_SCHEMA.tables",
            "TAP_SCHEMA.schemas",
            "schema_name",
            "schema_name",
            "the schema a table belongs to",
        ),
        (
            "columns_tables",
            "TAP_SCHEMA.columns",
            "TAP_SCHEMA.tables",
            "table_name",
            "table_name",
            "the table a column belongs to",
        ),
        (
            "keys_from_tables",
            "TAP_SCHEMA.keys",
            "TAP_SCHEMA.tables",
            "from_table",
            "table_name",
            "the table holding a foreign key",
        ),
        (
            "keys_target_tables",
            "TAP_SCHEMA.keys",
            "TAP_SCHEMA.tables",
            "target_table",
            "table_name",
            "the table a foreign key refers to",
        ),
        (
            "key_columns_keys",
            "TAP_SCHEMA.key_columns",
            "TAP_SCHEMA.keys",
            "key_id",
            "key_id",
            "the key a column pair belongs to",
        ),
        (
            "DiaSource_DiaObject",
            "ppdb.DiaSource",
            "ppdb.DiaObject",
            "diaObjectId",
            "diaObjectId",
            "the object a detection belongs to",
        ),
        (
            "DiaForcedSource_DiaObject",
            "ppdb.DiaForcedSource",
            "ppdb.DiaObject",
            "diaObjectId",
            "diaObjectId",
            "the object a forced measurement belongs to",
        ),
        (
            "DiaSource_SSObject",
            "ppdb.DiaSource",
            "ppdb.SSObject",
            "ssObjectId",
            "ssObjectId",
            "the solar-system object a detection was associated with",
        ),
    ] {
        keys.row(vec![s(id), s(from), s(to), None, s(desc)]);
        key_columns.row(vec![s(id), s(from_col), s(to_col)]);
    }
    vec![
        ("schemas", schemas.batch()),
        ("tables", tables.batch()),
        ("columns", columns.batch()),
        ("keys", keys.batch()),
        ("key_columns", key_columns.batch()),
    ]
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
    for (name, batch) in tap_schema(schema) {
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
