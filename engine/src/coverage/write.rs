//! A coverage in the MOC 2.0 serialisations: FITS, ASCII, and the JSON that
//! Aladin and mocpy read.

use std::io::Write;

use moc::deser::fits::keywords::MocType;
use moc::moc::{
    CellMOCIterator, CellOrCellRangeMOCIterator, RangeMOCIntoIterator, RangeMOCIterator,
};

use super::Coverage;

/// How a MOC is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MocFormat {
    /// MOC 2.0 FITS (a binary table of NUNIQ-free RANGE values, as the standard writes).
    Fits,
    /// MOC 2.0 ASCII (`order/cells ...`).
    Ascii,
    /// The JSON of Aladin and mocpy (`{"order": [cells]}`).
    Json,
}

impl MocFormat {
    /// The media type of a MOC in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            MocFormat::Fits => "application/fits",
            MocFormat::Ascii => "text/plain; charset=utf-8",
            MocFormat::Json => "application/json",
        }
    }

    /// The file extension of this format.
    pub fn extension(self) -> &'static str {
        match self {
            MocFormat::Fits => "fits",
            MocFormat::Ascii => "txt",
            MocFormat::Json => "json",
        }
    }
}

impl std::str::FromStr for MocFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<MocFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fits" | "application/fits" => Ok(MocFormat::Fits),
            "ascii" | "text" | "txt" | "text/plain" => Ok(MocFormat::Ascii),
            "json" | "application/json" => Ok(MocFormat::Json),
            other => Err(format!(
                "unknown MOC format '{other}': use fits (the default), ascii or json"
            )),
        }
    }
}

/// The longest `MOCID` written: what fits a FITS card after its keyword and quotes.
const MOCID_CHARS: usize = 60;

impl Coverage {
    /// Writes the MOC in `format`; `id` names it in FITS (`MOCID`).
    pub fn write(
        &self,
        format: MocFormat,
        id: Option<String>,
        mut out: impl Write,
    ) -> std::io::Result<()> {
        if let Some(st) = &self.space_time {
            return st.write(
                format,
                id.filter(|i| i.len() <= MOCID_CHARS && i.is_ascii()),
                out,
            );
        }
        let ranges = (&self.moc).into_range_moc_iter();
        match format {
            // A FITS card holds 80 characters: a longer MOCID would not fit
            // (the writer panics on one), so it is left out.
            MocFormat::Fits => ranges
                .to_fits_ivoa(
                    id.filter(|i| i.len() <= MOCID_CHARS && i.is_ascii()),
                    Some(if self.footprints {
                        MocType::Image
                    } else {
                        MocType::Catalog
                    }),
                    out,
                )
                .map_err(std::io::Error::other),
            MocFormat::Ascii => {
                ranges
                    .cells()
                    .cellranges()
                    .to_ascii_ivoa(Some(80), false, &mut out)
            }
            MocFormat::Json => {
                ranges.cells().to_json_aladin(Some(80), &mut out)?;
                out.write_all(b"\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moc::moc::range::RangeMOC;
    use moc::qty::Hpx;

    fn two_cells() -> Coverage {
        let shift = 2 * (29 - 3);
        let ranges = std::iter::once((5u64 << shift)..(7u64 << shift)).collect();
        Coverage {
            moc: RangeMOC::<u64, Hpx<u64>>::new(
                3,
                moc::elemset::range::MocRanges::new_unchecked(ranges),
            ),
            rows: 2,
            footprints: false,
            without_corners: 0,
            space_time: None,
        }
    }

    #[test]
    fn each_format_writes_the_cells() {
        let c = two_cells();
        let mut ascii = Vec::new();
        c.write(MocFormat::Ascii, None, &mut ascii).unwrap();
        assert_eq!(String::from_utf8(ascii).unwrap().trim(), "3/5-6");
        let mut json = Vec::new();
        c.write(MocFormat::Json, None, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["3"], serde_json::json!([5, 6]));
        let mut fits = Vec::new();
        c.write(MocFormat::Fits, Some("x".repeat(200)), &mut fits)
            .unwrap();
        assert!(fits.starts_with(b"SIMPLE  ="), "a FITS file");
        assert!(fits.len().is_multiple_of(2880), "whole FITS blocks");
        assert!((c.area_deg2() - 2.0 * 41_252.96 / 768.0).abs() < 0.01);
    }
}
