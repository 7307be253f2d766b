//! Rubin's Felis YAML schema language: tables, columns, types, units, UCDs.
//!
//! Files load unchanged, including `columnRefs` into other files named under
//! `resources` (as `ppdb.yaml` and `ap_extra.yaml` do) with their `overrides`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::error::{Error, Result};

/// A Felis datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datatype {
    /// 8-bit integer.
    Byte,
    /// 16-bit integer.
    Short,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// 32-bit float.
    Float,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// Fixed or bounded length character string.
    Char,
    /// Variable length string.
    String,
    /// Unbounded text.
    Text,
    /// Unicode string.
    Unicode,
    /// Date and time.
    Timestamp,
    /// Bytes.
    Binary,
}

impl Datatype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "byte" => Datatype::Byte,
            "short" => Datatype::Short,
            "int" => Datatype::Int,
            "long" => Datatype::Long,
            "float" => Datatype::Float,
            "double" => Datatype::Double,
            "boolean" => Datatype::Boolean,
            "char" => Datatype::Char,
            "string" => Datatype::String,
            "text" => Datatype::Text,
            "unicode" => Datatype::Unicode,
            "timestamp" => Datatype::Timestamp,
            "binary" => Datatype::Binary,
            _ => return None,
        })
    }

    /// The Felis spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Byte => "byte",
            Datatype::Short => "short",
            Datatype::Int => "int",
            Datatype::Long => "long",
            Datatype::Float => "float",
            Datatype::Double => "double",
            Datatype::Boolean => "boolean",
            Datatype::Char => "char",
            Datatype::String => "string",
            Datatype::Text => "text",
            Datatype::Unicode => "unicode",
            Datatype::Timestamp => "timestamp",
            Datatype::Binary => "binary",
        }
    }
}

/// One column of a Felis table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name, as spelled in the schema.
    pub name: String,
    /// Felis datatype.
    pub datatype: Datatype,
    /// Whether the schema allows NULL (Felis default: true).
    pub nullable: bool,
    /// Human description.
    pub description: String,
    /// Unit (`ivoa:unit`, else `fits:tunit`).
    pub unit: Option<String>,
    /// IVOA UCD.
    pub ucd: Option<String>,
    /// Declared length of a char/string column.
    pub length: Option<u32>,
    /// `votable:arraysize`.
    pub arraysize: Option<String>,
    /// `votable:xtype`.
    pub xtype: Option<String>,
    /// `tap:principal`.
    pub principal: bool,
    /// `tap:column_index`.
    pub column_index: Option<i64>,
}

/// One table of a Felis schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Table name.
    pub name: String,
    /// Human description.
    pub description: String,
    /// Primary key column names (without the `#Table.` prefix).
    pub primary_key: Vec<String>,
    /// Columns, in schema order.
    pub columns: Vec<Column>,
    /// `tap:table_index`.
    pub table_index: Option<i64>,
}

impl Table {
    /// The column with this exact name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A whole Felis schema: one YAML document with its tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Schema name (e.g. `ppdb`).
    pub name: String,
    /// Human description.
    pub description: String,
    /// Schema version, if declared.
    pub version: Option<String>,
    /// Tables, in file order.
    pub tables: Vec<Table>,
}

impl Schema {
    /// The table with this exact name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Loads a Felis file from disk, resolving `resources` relative to it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        parse(&text, &path.display().to_string(), &|uri| {
            let p = dir.join(uri);
            let text = read(&p)?;
            parse(&text, &p.display().to_string(), &|_| {
                Err(Error::Schema {
                    file: p.display().to_string(),
                    message: "nested resources are not supported".into(),
                })
            })
        })
    }

    /// Parses a self-contained Felis document (one with no `resources`).
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        parse(text, name, &|uri| {
            Err(Error::Schema {
                file: name.to_string(),
                message: format!("resource {uri:?} cannot be resolved from an in-memory document"),
            })
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

#[derive(Deserialize)]
struct RawSchema {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    resources: BTreeMap<String, RawResource>,
    tables: Vec<RawTable>,
}

#[derive(Deserialize)]
struct RawResource {
    uri: PathBuf,
}

#[derive(Deserialize)]
struct RawTable {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "primaryKey")]
    primary_key: Option<Value>,
    #[serde(default)]
    columns: Vec<BTreeMap<String, Value>>,
    #[serde(default, rename = "columnRefs")]
    column_refs: BTreeMap<String, BTreeMap<String, BTreeMap<String, Option<RawRef>>>>,
    #[serde(default, rename = "tap:table_index")]
    table_index: Option<i64>,
}

#[derive(Deserialize)]
struct RawRef {
    #[serde(default)]
    overrides: BTreeMap<String, Value>,
}

fn parse(text: &str, file: &str, resolve: &dyn Fn(&Path) -> Result<Schema>) -> Result<Schema> {
    let raw: RawSchema = serde_norway::from_str(text).map_err(|source| Error::SchemaYaml {
        file: file.to_string(),
        source,
    })?;
    let mut resolved: BTreeMap<String, Schema> = BTreeMap::new();
    let mut tables = Vec::with_capacity(raw.tables.len());
    for t in raw.tables {
        let mut columns = Vec::new();
        for c in &t.columns {
            columns.push(column(c, file, &t.name)?);
        }
        for (resource, refs) in &t.column_refs {
            if !resolved.contains_key(resource) {
                let res = raw.resources.get(resource).ok_or_else(|| Error::Schema {
                    file: file.to_string(),
                    message: format!(
                        "table {}: columnRefs name unknown resource {resource:?}",
                        t.name
                    ),
                })?;
                resolved.insert(resource.clone(), resolve(&res.uri)?);
            }
            let base = &resolved[resource];
            for (ref_table, cols) in refs {
                let src = base.table(ref_table).ok_or_else(|| Error::Schema {
                    file: file.to_string(),
                    message: format!(
                        "table {}: resource {resource} has no table {ref_table}",
                        t.name
                    ),
                })?;
                for (col, over) in cols {
                    let mut c = src.column(col).cloned().ok_or_else(|| Error::Schema {
                        file: file.to_string(),
                        message: format!(
                            "table {}: {resource}.{ref_table} has no column {col}",
                            t.name
                        ),
                    })?;
                    if let Some(over) = over {
                        apply_overrides(&mut c, &over.overrides, file, &t.name)?;
                    }
                    columns.push(c);
                }
            }
        }
        let primary_key = match &t.primary_key {
            None => Vec::new(),
            Some(Value::String(s)) => vec![strip_ref(s)],
            Some(Value::Sequence(v)) => v.iter().filter_map(Value::as_str).map(strip_ref).collect(),
            Some(_) => {
                return Err(Error::Schema {
                    file: file.to_string(),
                    message: format!("table {}: primaryKey must be a string or a list", t.name),
                });
            }
        };
        tables.push(Table {
            name: t.name,
            description: t.description.unwrap_or_default().trim().to_string(),
            primary_key,
            columns,
            table_index: t.table_index,
        });
    }
    Ok(Schema {
        name: raw.name,
        description: raw.description.unwrap_or_default().trim().to_string(),
        version: raw.version.map(|v| match v {
            Value::String(s) => s,
            other => serde_norway::to_string(&other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }),
        tables,
    })
}

fn strip_ref(s: &str) -> String {
    // "#Table.column" names a column of this schema.
    s.trim_start_matches('#')
        .rsplit('.')
        .next()
        .unwrap_or(s)
        .to_string()
}

fn column(map: &BTreeMap<String, Value>, file: &str, table: &str) -> Result<Column> {
    let bad = |message: String| Error::Schema {
        file: file.to_string(),
        message,
    };
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("table {table}: a column has no name")))?
        .to_string();
    let dt = map
        .get("datatype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("table {table}: column {name} has no datatype")))?;
    let datatype = Datatype::parse(dt).ok_or_else(|| {
        bad(format!(
            "table {table}: column {name} has unknown datatype {dt:?}"
        ))
    })?;
    let text = |k: &str| map.get(k).and_then(value_text);
    Ok(Column {
        datatype,
        nullable: map.get("nullable").and_then(Value::as_bool).unwrap_or(true),
        description: text("description").unwrap_or_default().trim().to_string(),
        unit: text("ivoa:unit")
            .or_else(|| text("fits:tunit"))
            .filter(|u| !u.is_empty()),
        ucd: text("ivoa:ucd"),
        length: map.get("length").and_then(Value::as_u64).map(|l| l as u32),
        arraysize: text("votable:arraysize"),
        xtype: text("votable:xtype"),
        principal: map
            .get("tap:principal")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            != 0,
        column_index: map.get("tap:column_index").and_then(Value::as_i64),
        name,
    })
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn apply_overrides(
    c: &mut Column,
    overrides: &BTreeMap<String, Value>,
    file: &str,
    table: &str,
) -> Result<()> {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    map.insert("name".into(), Value::String(c.name.clone()));
    map.insert("datatype".into(), Value::String(c.datatype.as_str().into()));
    for (k, v) in overrides {
        map.insert(k.clone(), v.clone());
    }
    let o = column(&map, file, table)?;
    c.datatype = o.datatype;
    if overrides.contains_key("nullable") {
        c.nullable = o.nullable;
    }
    if overrides.contains_key("description") {
        c.description = o.description;
    }
    if overrides.contains_key("ivoa:unit") || overrides.contains_key("fits:tunit") {
        c.unit = o.unit;
    }
    if overrides.contains_key("ivoa:ucd") {
        c.ucd = o.ucd;
    }
    if overrides.contains_key("length") {
        c.length = o.length;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_columns_units_and_keys() {
        let s = Schema::parse(
            r##"
name: demo
tables:
- name: T
  primaryKey: ["#T.a", "#T.b"]
  columns:
  - name: a
    datatype: long
    nullable: false
    description: first
    ivoa:ucd: meta.id
  - name: b
    datatype: double
    fits:tunit: deg
"##,
            "demo.yaml",
        )
        .unwrap();
        let t = s.table("T").unwrap();
        assert_eq!(t.primary_key, vec!["a", "b"]);
        assert!(!t.columns[0].nullable);
        assert!(t.columns[1].nullable);
        assert_eq!(t.columns[1].unit.as_deref(), Some("deg"));
        assert_eq!(t.columns[0].ucd.as_deref(), Some("meta.id"));
    }

    #[test]
    fn unknown_datatype_is_an_error_naming_the_column() {
        let e = Schema::parse(
            "name: d\ntables:\n- name: T\n  columns:\n  - name: x\n    datatype: quux\n",
            "d.yaml",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("column x has unknown datatype"),
            "{e}"
        );
    }
}
