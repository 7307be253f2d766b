//! The first table of an upload's VOTable document: its FIELDs, then its
//! rows in TABLEDATA (as XML) or BINARY/BINARY2 (base64, read in `binary`).

use super::binary::read_binary;
use super::fields::*;
use super::*;

pub(super) struct Parsed {
    pub(super) fields: Vec<FieldDef>,
    pub(super) columns: Vec<Column>,
}

#[derive(PartialEq)]
pub(super) enum Data {
    None,
    /// TABLEDATA: rows as XML.
    Xml,
    Binary {
        flags: bool,
    },
}

pub(super) fn parse(name: &str, doc: &[u8]) -> Result<Parsed> {
    let mut reader = quick_xml::Reader::from_reader(doc);
    let mut buf = Vec::new();
    let mut fields: Vec<FieldDef> = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    let mut tables = 0;
    let mut in_field = false;
    let mut data = Data::None;
    let mut stream = String::new();
    let mut in_stream = false;
    let mut in_td = false;
    let mut td = String::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut saw_votable = false;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(name, format!("not well-formed XML at byte {position}: {e}")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name();
                match local.as_ref() {
                    b"VOTABLE" => saw_votable = true,
                    b"TABLE" => {
                        tables += 1;
                    }
                    _ if tables != 1 => {}
                    b"FIELD" if data == Data::None => {
                        if fields.len() == MAX_COLUMNS {
                            return Err(bad(
                                name,
                                format!("the table has more than {MAX_COLUMNS} columns"),
                            ));
                        }
                        fields.push(field_def(name, e, fields.len())?);
                        in_field = !empty;
                    }
                    b"VALUES" if in_field => {
                        if let (Some(f), Some(n)) = (fields.last_mut(), attr(e, "null")) {
                            f.null = Some(n);
                        }
                    }
                    b"TABLEDATA" => {
                        data = Data::Xml;
                        columns = fields.iter().map(Column::new).collect();
                    }
                    b"BINARY" | b"BINARY2" => {
                        data = Data::Binary {
                            flags: local.as_ref() == b"BINARY2",
                        };
                        columns = fields.iter().map(Column::new).collect();
                    }
                    b"FITS" => {
                        return Err(bad(
                            name,
                            "FITS data in a VOTable is not taken: send TABLEDATA or BINARY2",
                        ));
                    }
                    b"STREAM" => {
                        if let Some(href) = attr(e, "href") {
                            return Err(bad(
                                name,
                                format!("the data is a remote stream ({href}): send it inline"),
                            ));
                        }
                        match attr(e, "encoding").as_deref() {
                            Some("base64") => {}
                            other => {
                                let what = match other {
                                    Some(e) => format!("STREAM encoding \"{e}\" is not taken"),
                                    None => "a STREAM without encoding=\"base64\" is not taken"
                                        .to_string(),
                                };
                                return Err(bad(name, format!("{what}: use base64")));
                            }
                        }
                        in_stream = !empty;
                    }
                    b"TR" if data == Data::Xml => row.clear(),
                    b"TD" if data == Data::Xml => {
                        td.clear();
                        if empty {
                            row.push(None);
                        } else {
                            in_td = true;
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_td || in_stream => {
                let text = t
                    .decode()
                    .map_err(|e| bad(name, format!("undecodable text: {e}")))?;
                if in_td { &mut td } else { &mut stream }.push_str(&text);
            }
            Event::CData(t) if in_td => {
                td.push_str(&String::from_utf8_lossy(&t.into_inner()));
            }
            Event::GeneralRef(r) if in_td => {
                let entity = r
                    .decode()
                    .map_err(|e| bad(name, format!("undecodable entity: {e}")))?;
                let text = quick_xml::escape::unescape(&format!("&{entity};"))
                    .map_err(|e| bad(name, format!("unknown entity &{entity};: {e}")))?
                    .into_owned();
                td.push_str(&text);
            }
            Event::End(ref e) => match e.local_name().as_ref() {
                b"TABLE" if tables == 1 => break,
                b"FIELD" => in_field = false,
                b"TD" if in_td => {
                    in_td = false;
                    row.push(Some(std::mem::take(&mut td)));
                }
                b"TR" if data == Data::Xml => {
                    let n = rows_of(&columns);
                    if row.len() != fields.len() {
                        return Err(bad(
                            name,
                            format!(
                                "row {} has {} cells; the table has {} columns",
                                n + 1,
                                row.len(),
                                fields.len()
                            ),
                        ));
                    }
                    for (i, cell) in row.drain(..).enumerate() {
                        push_text(name, &fields[i], &mut columns[i], cell, n)?;
                    }
                }
                b"STREAM" if in_stream => {
                    in_stream = false;
                    let compact: String = stream.split_whitespace().collect();
                    let bytes = BASE64
                        .decode(compact.as_bytes())
                        .map_err(|e| bad(name, format!("the base64 stream is damaged: {e}")))?;
                    let flags = matches!(data, Data::Binary { flags: true });
                    read_binary(name, &fields, &mut columns, &bytes, flags)?;
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_votable {
        return Err(bad(name, "this is not a VOTable (no VOTABLE element)"));
    }
    if tables == 0 {
        return Err(bad(name, "the VOTable has no TABLE"));
    }
    if columns.is_empty() {
        // A table with FIELDs and no DATA has no rows.
        columns = fields.iter().map(Column::new).collect();
    }
    Ok(Parsed { fields, columns })
}

pub(super) fn rows_of(columns: &[Column]) -> usize {
    match columns.first() {
        Some(Column::Boolean(v)) => v.len(),
        Some(Column::Short(v)) => v.len(),
        Some(Column::Int(v)) => v.len(),
        Some(Column::Long(v)) => v.len(),
        Some(Column::Float(v)) => v.len(),
        Some(Column::Double(v)) => v.len(),
        Some(Column::Text(v)) => v.len(),
        Some(Column::Array(v)) => v.len(),
        None => 0,
    }
}

pub(super) fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    s.parse().ok()
}

pub(super) fn parse_float(s: &str) -> Option<f64> {
    let s = s.trim();
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "Infinity" => Some(f64::INFINITY),
        "-Inf" | "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Adds one TABLEDATA cell; `row` counts from 0.
pub(super) fn push_text(
    name: &str,
    f: &FieldDef,
    col: &mut Column,
    cell: Option<String>,
    row: usize,
) -> Result<()> {
    let text = cell.filter(|c| {
        let t = c.trim();
        // An empty cell is a missing value, except for strings.
        (matches!(col, Column::Text(_)) || !t.is_empty()) && f.null.as_deref() != Some(t)
    });
    let fail = || {
        bad(
            name,
            format!(
                "row {}, column '{}': '{}' is not a {:?}",
                row + 1,
                f.name,
                text.as_deref().unwrap_or(""),
                f.kind
            ),
        )
    };
    match col {
        Column::Boolean(v) => v.push(match text.as_deref().map(str::trim) {
            None | Some("?" | "") => None,
            Some("T" | "t" | "true" | "TRUE" | "1") => Some(true),
            Some("F" | "f" | "false" | "FALSE" | "0") => Some(false),
            Some(_) => return Err(fail()),
        }),
        Column::Short(v) => v.push(match &text {
            None => None,
            Some(t) => Some(
                parse_int(t)
                    .and_then(|x| i16::try_from(x).ok())
                    .ok_or_else(fail)?,
            ),
        }),
        Column::Int(v) => v.push(match &text {
            None => None,
            Some(t) => Some(
                parse_int(t)
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(fail)?,
            ),
        }),
        Column::Long(v) => v.push(match &text {
            None => None,
            Some(t) => Some(parse_int(t).ok_or_else(fail)?),
        }),
        Column::Float(v) => v.push(match &text {
            None => None,
            Some(t) => Some(parse_float(t).ok_or_else(fail)? as f32),
        }),
        Column::Double(v) => v.push(match &text {
            None => None,
            Some(t) => Some(parse_float(t).ok_or_else(fail)?),
        }),
        Column::Text(v) => v.push(text),
        Column::Array(v) => v.push(match &text {
            None => None,
            Some(t) => Some(
                t.split_whitespace()
                    .map(parse_float)
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(fail)?,
            ),
        }),
    }
    Ok(())
}
