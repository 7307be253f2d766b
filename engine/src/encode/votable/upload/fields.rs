//! An upload's FIELDs: the VOTable types we read, what each column holds
//! as its rows are read, and the FIELD element read into a definition.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Type {
    Boolean,
    /// A single bit, read as a boolean (astropy writes boolean columns so).
    Bit,
    UnsignedByte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Char,
    UnicodeChar,
}

#[derive(Debug, Clone)]
pub(super) struct FieldDef {
    pub(super) name: String,
    pub(super) kind: Type,
    /// Fixed element count, or `None` for variable (`*`); strings count characters.
    pub(super) count: Option<usize>,
    /// Whether the field holds an array of numbers (not a scalar, not a string).
    pub(super) array: bool,
    /// The text `<VALUES null="...">` uses for a missing value.
    pub(super) null: Option<String>,
    /// Whether the strings are ISO-8601 times (`xtype="timestamp"`).
    pub(super) timestamp: bool,
    /// The FIELD's unit and UCD, kept for results that show the column.
    pub(super) unit: Option<String>,
    pub(super) ucd: Option<String>,
}

pub(super) enum Column {
    Boolean(Vec<Option<bool>>),
    Short(Vec<Option<i16>>),
    Int(Vec<Option<i32>>),
    Long(Vec<Option<i64>>),
    Float(Vec<Option<f32>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Array(Vec<Option<Vec<f64>>>),
}

impl Column {
    pub(super) fn new(f: &FieldDef) -> Column {
        if f.array {
            return Column::Array(Vec::new());
        }
        match f.kind {
            Type::Boolean | Type::Bit => Column::Boolean(Vec::new()),
            Type::UnsignedByte | Type::Short => Column::Short(Vec::new()),
            Type::Int => Column::Int(Vec::new()),
            Type::Long => Column::Long(Vec::new()),
            Type::Float => Column::Float(Vec::new()),
            Type::Double => Column::Double(Vec::new()),
            Type::Char | Type::UnicodeChar => Column::Text(Vec::new()),
        }
    }

    pub(super) fn finish(self) -> ArrayRef {
        match self {
            Column::Boolean(v) => Arc::new(BooleanArray::from(v)),
            Column::Short(v) => Arc::new(Int16Array::from(v)),
            Column::Int(v) => Arc::new(Int32Array::from(v)),
            Column::Long(v) => Arc::new(Int64Array::from(v)),
            Column::Float(v) => Arc::new(Float32Array::from(v)),
            Column::Double(v) => Arc::new(Float64Array::from(v)),
            Column::Text(v) => Arc::new(StringArray::from(v)),
            Column::Array(v) => {
                let mut b = ListBuilder::new(Float64Builder::new());
                for x in v {
                    match x {
                        Some(xs) => {
                            b.values().append_slice(&xs);
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        }
    }
}

pub(super) fn attr(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.try_get_attribute(key)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(Cow::into_owned))
}

pub(super) fn field_def(name: &str, e: &BytesStart<'_>, position: usize) -> Result<FieldDef> {
    let field = attr(e, "name")
        .or_else(|| attr(e, "ID"))
        .unwrap_or_else(|| format!("col{}", position + 1));
    let datatype = attr(e, "datatype").unwrap_or_default();
    let kind = match datatype.as_str() {
        "boolean" => Type::Boolean,
        "bit" => Type::Bit,
        "unsignedByte" => Type::UnsignedByte,
        "short" => Type::Short,
        "int" => Type::Int,
        "long" => Type::Long,
        "float" => Type::Float,
        "double" => Type::Double,
        "char" => Type::Char,
        "unicodeChar" => Type::UnicodeChar,
        other => {
            return Err(bad(
                name,
                format!(
                    "column '{field}' has datatype '{other}', which uploads do not take \
                     (use boolean, bit, unsignedByte, short, int, long, float, double, char \
                     or unicodeChar)"
                ),
            ));
        }
    };
    let arraysize = attr(e, "arraysize");
    let (count, sized) = match arraysize.as_deref() {
        None => (Some(1), false),
        Some(a) => {
            let a = a.trim();
            if a.contains('x') {
                return Err(bad(
                    name,
                    format!("column '{field}' is a multi-dimensional array ({a})"),
                ));
            }
            if a.ends_with('*') {
                (None, true)
            } else {
                let n = a
                    .parse::<usize>()
                    .map_err(|_| bad(name, format!("column '{field}' has arraysize '{a}'")))?;
                (Some(n), true)
            }
        }
    };
    let text = matches!(kind, Type::Char | Type::UnicodeChar);
    let array = sized && !text && count != Some(1);
    if array && kind == Type::Bit {
        return Err(bad(
            name,
            format!("column '{field}' is an array of bits; only a single bit (a boolean) is taken"),
        ));
    }
    if array && !matches!(kind, Type::Float | Type::Double) {
        return Err(bad(
            name,
            format!(
                "column '{field}' is an array of {datatype}; only arrays of float or double are taken"
            ),
        ));
    }
    let timestamp = text && attr(e, "xtype").is_some_and(|x| x.eq_ignore_ascii_case("timestamp"));
    Ok(FieldDef {
        name: field,
        kind,
        count,
        array,
        null: None,
        timestamp,
        unit: attr(e, "unit").filter(|u| !u.is_empty()),
        ucd: attr(e, "ucd").filter(|u| !u.is_empty()),
    })
}
