//! BINARY and BINARY2 rows: base64 streams of big-endian values, BINARY2
//! with a null flag per column ahead of each row.

use super::fields::*;
use super::parse::parse_int;
use super::*;

/// Reads BINARY (no null flags) or BINARY2 rows.
pub(super) fn read_binary(
    name: &str,
    fields: &[FieldDef],
    columns: &mut [Column],
    bytes: &[u8],
    flags: bool,
) -> Result<()> {
    let mut at = 0usize;
    let mut row = 0usize;
    let truncated = |row: usize| {
        bad(
            name,
            format!("the binary stream ends inside row {}", row + 1),
        )
    };
    let take = |at: &mut usize, n: usize, row: usize| -> Result<&[u8]> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| truncated(row))?;
        let s = &bytes[*at..end];
        *at = end;
        Ok(s)
    };
    if fields.is_empty() {
        return Err(bad(name, "the VOTable has no FIELD"));
    }
    let nflags = if flags { fields.len().div_ceil(8) } else { 0 };
    while at < bytes.len() {
        let started = at;
        let mask = take(&mut at, nflags, row)?.to_vec();
        for (i, (f, col)) in fields.iter().zip(columns.iter_mut()).enumerate() {
            let flagged = flags && mask[i / 8] & (0x80 >> (i % 8)) != 0;
            // BINARY has no null flags: an integer equal to VALUES null is missing.
            let sentinel = f.null.as_deref().and_then(parse_int);
            let count = match f.count {
                Some(n) => n,
                None => {
                    let c = take(&mut at, 4, row)?;
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize
                }
            };
            let width = match f.kind {
                // A single bit takes a byte of its own.
                Type::Boolean | Type::Bit | Type::Char | Type::UnsignedByte => 1,
                Type::Short | Type::UnicodeChar => 2,
                Type::Int | Type::Float => 4,
                Type::Long | Type::Double => 8,
            };
            let raw = take(
                &mut at,
                count.checked_mul(width).ok_or_else(|| truncated(row))?,
                row,
            )?;
            let be8 = |b: &[u8]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            let int = match (f.kind, f.array) {
                (Type::UnsignedByte, false) => Some(i64::from(raw[0])),
                (Type::Short, false) => Some(i64::from(i16::from_be_bytes([raw[0], raw[1]]))),
                (Type::Int, false) => Some(i64::from(i32::from_be_bytes([
                    raw[0], raw[1], raw[2], raw[3],
                ]))),
                (Type::Long, false) => Some(i64::from_be_bytes(be8(raw))),
                _ => None,
            };
            let null = flagged || (sentinel.is_some() && int == sentinel);
            match col {
                Column::Boolean(v) => v.push(match raw.first() {
                    _ if null => None,
                    // The bit is the byte's most significant one; astropy 8 sets
                    // 0x08 instead. Either way the other bits are zero.
                    Some(b) if f.kind == Type::Bit => Some(*b != 0),
                    Some(b'T' | b't' | b'1') => Some(true),
                    Some(b'F' | b'f' | b'0') => Some(false),
                    _ => None,
                }),
                Column::Short(v) => v.push((!null).then(|| {
                    if f.kind == Type::Short {
                        i16::from_be_bytes([raw[0], raw[1]])
                    } else {
                        i16::from(raw[0])
                    }
                })),
                Column::Int(v) => {
                    v.push((!null).then(|| i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])))
                }
                Column::Long(v) => v.push((!null).then(|| i64::from_be_bytes(be8(raw)))),
                Column::Float(v) => {
                    v.push((!null).then(|| f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])))
                }
                Column::Double(v) => v.push((!null).then(|| f64::from_be_bytes(be8(raw)))),
                Column::Text(v) => v.push((!null).then(|| {
                    let s = if f.kind == Type::UnicodeChar {
                        let units: Vec<u16> = raw
                            .chunks(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect();
                        String::from_utf16_lossy(&units)
                    } else {
                        String::from_utf8_lossy(raw).into_owned()
                    };
                    // Fixed-width strings end at the first NUL.
                    s.split('\0').next().unwrap_or("").trim_end().to_string()
                })),
                Column::Array(v) => v.push((!null).then(|| {
                    raw.chunks(width)
                        .map(|c| {
                            if width == 4 {
                                f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            } else {
                                f64::from_be_bytes(be8(c))
                            }
                        })
                        .collect()
                })),
            }
        }
        // A row of zero-width fields would be read forever, a row per turn.
        if at == started {
            return Err(bad(
                name,
                "its rows take no bytes in the binary stream (every FIELD has arraysize 0)",
            ));
        }
        row += 1;
    }
    Ok(())
}
