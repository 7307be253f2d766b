//! `ivoa.ObsCore` (ObsCore 1.1): one row per detector image the prompt
//! processing made, a calexp for every processed detector-visit and a
//! difference image for those that made DIA rows (a template existed).
//!
//! It is a view, planned in each snapshot's catalog over that snapshot's
//! `DetectorVisitProcessingSummary`, `DiaSource` and `DiaForcedSource` as
//! the caller may see them, so the pinning, the snapshot and the embargo of
//! every other table apply to it unchanged. Rubin's schema gives a
//! detector-visit no exposure time and no band: both are read from its
//! visit's DIA rows (their `midpointMjdTai` and `band`), the exposure taken
//! as the 30 s around the midpoint and the band as the filter's edges Rubin's
//! own ObsCore services give; a visit without DIA rows has them NULL.
//! `access_url` is the detector-visit's DataLink (`/tap/links?ID=VISIT/DETECTOR`),
//! which lists its images where the operator serves them.

use std::sync::Arc;

use arrow::datatypes::DataType;
use catalog::TableId;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::execution::SessionState;

/// Its schema.
pub const SCHEMA: &str = "ivoa";
/// Its name.
pub const NAME: &str = "ObsCore";
/// What TAP_SCHEMA says it is.
pub const UTYPE: &str = "ivo://ivoa.net/std/ObsCore#core-1.1";
/// The stored tables it reads (for the embargo and tokens).
pub const READS: [TableId; 3] = [
    TableId::DetectorVisitProcessingSummary,
    TableId::DiaSource,
    TableId::DiaForcedSource,
];

/// One ObsCore column: its name, Arrow type, utype (after `obscore:`), UCD,
/// unit, description, and its SQL over the detector-visit `d` (`{links}` is
/// the DataLink endpoint, `{kind}` the image's subtype).
pub struct ObsColumn {
    pub name: &'static str,
    pub datatype: DataType,
    pub utype: &'static str,
    pub ucd: &'static str,
    pub unit: Option<&'static str>,
    pub description: &'static str,
    sql: &'static str,
}

macro_rules! col {
    ($name:literal, $dt:expr, $utype:literal, $ucd:literal, $unit:expr, $desc:literal, $sql:literal) => {
        ObsColumn {
            name: $name,
            datatype: $dt,
            utype: $utype,
            ucd: $ucd,
            unit: $unit,
            description: $desc,
            sql: $sql,
        }
    };
}

/// The columns, in ObsCore 1.1's order.
pub fn columns() -> Vec<ObsColumn> {
    use DataType::{Float64, Int16, Int64, Utf8};
    vec![
        col!(
            "dataproduct_type",
            Utf8,
            "ObsDataset.dataProductType",
            "meta.code.class",
            None,
            "Data product type: image",
            "'image'"
        ),
        col!(
            "dataproduct_subtype",
            Utf8,
            "ObsDataset.dataProductSubtype",
            "meta.code.class",
            None,
            "lsst.calexp (calibrated exposure) or lsst.difference_image",
            "'{kind}'"
        ),
        col!(
            "calib_level",
            Int16,
            "ObsDataset.calibLevel",
            "meta.code;obs.calib",
            None,
            "Calibration level: 2 for a calexp, 3 for a difference image",
            "CAST({level} AS SMALLINT)"
        ),
        col!(
            "obs_collection",
            Utf8,
            "DataID.Collection",
            "meta.id",
            None,
            "The collection: Rubin prompt processing",
            "'LSST.Prompt'"
        ),
        col!(
            "obs_id",
            Utf8,
            "DataID.observationID",
            "meta.id",
            None,
            "The detector-visit: VISIT/DETECTOR (a DataLink ID)",
            "CAST(d.\"visit\" AS VARCHAR) || '/' || CAST(d.\"detector\" AS VARCHAR)"
        ),
        col!(
            "obs_publisher_did",
            Utf8,
            "Curation.publisherDID",
            "meta.ref.ivoid",
            None,
            "Identifier of the image",
            "'ivo://org.rubinobs/ppdb?' || '{kind}/' || CAST(d.\"visit\" AS VARCHAR) || '/' || CAST(d.\"detector\" AS VARCHAR)"
        ),
        col!(
            "access_url",
            Utf8,
            "Access.reference",
            "meta.ref.url",
            None,
            "The detector-visit's DataLink links (its images, where served; its DIA rows)",
            "{access}"
        ),
        col!(
            "access_format",
            Utf8,
            "Access.format",
            "meta.code.mime",
            None,
            "Format of what access_url gives",
            "'application/x-votable+xml;content=datalink'"
        ),
        col!(
            "access_estsize",
            Int64,
            "Access.size",
            "phys.size;meta.file",
            Some("kbyte"),
            "Estimated size (unknown)",
            "CAST(NULL AS BIGINT)"
        ),
        col!(
            "target_name",
            Utf8,
            "Target.name",
            "meta.id;src",
            None,
            "Target name (none: a survey)",
            "CAST(NULL AS VARCHAR)"
        ),
        col!(
            "s_ra",
            Float64,
            "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
            "pos.eq.ra",
            Some("deg"),
            "Right ascension of the detector's centre",
            "d.\"ra\""
        ),
        col!(
            "s_dec",
            Float64,
            "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
            "pos.eq.dec",
            Some("deg"),
            "Declination of the detector's centre",
            "d.\"dec\""
        ),
        col!(
            "s_fov",
            Float64,
            "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
            "phys.angSize;instr.fov",
            Some("deg"),
            "Field of view (not computed)",
            "CAST(NULL AS DOUBLE)"
        ),
        col!(
            "s_region",
            Utf8,
            "Char.SpatialAxis.Coverage.Support.Area",
            "pos.outline;obs.field",
            None,
            "The detector's footprint from its corners, as STC-S",
            "'Polygon ICRS ' || CAST(d.\"llcra\" AS VARCHAR) || ' ' || CAST(d.\"llcdec\" AS VARCHAR) || ' ' || CAST(d.\"ulcra\" AS VARCHAR) || ' ' || CAST(d.\"ulcdec\" AS VARCHAR) || ' ' || CAST(d.\"urcra\" AS VARCHAR) || ' ' || CAST(d.\"urcdec\" AS VARCHAR) || ' ' || CAST(d.\"lrcra\" AS VARCHAR) || ' ' || CAST(d.\"lrcdec\" AS VARCHAR)"
        ),
        col!(
            "s_resolution",
            Float64,
            "Char.SpatialAxis.Resolution.Refval.value",
            "pos.angResolution",
            Some("arcsec"),
            "Seeing (PSF FWHM)",
            "CAST(d.\"seeing\" AS DOUBLE)"
        ),
        col!(
            "s_xel1",
            Int64,
            "Char.SpatialAxis.numBins1",
            "meta.number",
            None,
            "Pixels along the first axis",
            "CAST(d.\"xSize\" AS BIGINT)"
        ),
        col!(
            "s_xel2",
            Int64,
            "Char.SpatialAxis.numBins2",
            "meta.number",
            None,
            "Pixels along the second axis",
            "CAST(d.\"ySize\" AS BIGINT)"
        ),
        col!(
            "t_min",
            Float64,
            "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
            "time.start;obs.exposure",
            Some("d"),
            "Exposure start, MJD (TAI): 15 s before the visit's DIA midpoint; NULL for a visit without DIA rows",
            "v.\"t0\" - 15.0 / 86400.0"
        ),
        col!(
            "t_max",
            Float64,
            "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
            "time.end;obs.exposure",
            Some("d"),
            "Exposure end, MJD (TAI): 15 s after the visit's DIA midpoint; NULL for a visit without DIA rows",
            "v.\"t1\" + 15.0 / 86400.0"
        ),
        col!(
            "t_exptime",
            Float64,
            "Char.TimeAxis.Coverage.Support.Extent",
            "time.duration;obs.exposure",
            Some("s"),
            "Exposure time: Rubin's 30 s visits (not in the PPDB); NULL for a visit without DIA rows",
            "CASE WHEN v.\"t0\" IS NULL THEN CAST(NULL AS DOUBLE) ELSE 30.0 END"
        ),
        col!(
            "t_resolution",
            Float64,
            "Char.TimeAxis.Resolution.Refval.value",
            "time.resolution",
            Some("s"),
            "Time resolution",
            "CAST(NULL AS DOUBLE)"
        ),
        col!(
            "t_xel",
            Int64,
            "Char.TimeAxis.numBins",
            "meta.number",
            None,
            "Time bins",
            "CAST(1 AS BIGINT)"
        ),
        col!(
            "em_min",
            Float64,
            "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
            "em.wl;stat.min",
            Some("m"),
            "Shortest wavelength of the visit's band (from its DIA rows); NULL for a visit without DIA rows",
            "{em_min}"
        ),
        col!(
            "em_max",
            Float64,
            "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
            "em.wl;stat.max",
            Some("m"),
            "Longest wavelength of the visit's band (from its DIA rows); NULL for a visit without DIA rows",
            "{em_max}"
        ),
        col!(
            "em_res_power",
            Float64,
            "Char.SpectralAxis.Resolution.ResolPower.refVal",
            "spect.resolution",
            None,
            "Spectral resolving power",
            "CAST(NULL AS DOUBLE)"
        ),
        col!(
            "em_xel",
            Int64,
            "Char.SpectralAxis.numBins",
            "meta.number",
            None,
            "Spectral bins",
            "CAST(1 AS BIGINT)"
        ),
        col!(
            "o_ucd",
            Utf8,
            "Char.ObservableAxis.ucd",
            "meta.ucd",
            None,
            "What the pixels measure",
            "'phot.count'"
        ),
        col!(
            "pol_states",
            Utf8,
            "Char.PolarizationAxis.stateList",
            "meta.code;phys.polarization",
            None,
            "Polarisation states (none)",
            "CAST(NULL AS VARCHAR)"
        ),
        col!(
            "pol_xel",
            Int64,
            "Char.PolarizationAxis.numBins",
            "meta.number",
            None,
            "Polarisation bins",
            "CAST(NULL AS BIGINT)"
        ),
        col!(
            "facility_name",
            Utf8,
            "Provenance.ObsConfig.Facility.name",
            "meta.id;instr.tel",
            None,
            "The telescope",
            "'Rubin:Simonyi'"
        ),
        col!(
            "instrument_name",
            Utf8,
            "Provenance.ObsConfig.Instrument.name",
            "meta.id;instr",
            None,
            "The camera",
            "'LSSTCam'"
        ),
    ]
}

/// LSSTCam's bands and their edges in metres, as Rubin's ObsCore services
/// (obsloctap) give them.
pub const BANDS: [(&str, f64, f64); 6] = [
    ("u", 3.3e-7, 4.0e-7),
    ("g", 4.02e-7, 5.52e-7),
    ("r", 5.52e-7, 6.91e-7),
    ("i", 6.91e-7, 8.18e-7),
    ("z", 8.18e-7, 9.22e-7),
    ("y", 9.22e-7, 1.06e-6),
];

/// The time and band of each visit, from its DIA rows: `visit`, `t0` and
/// `t1` (first and last midpoint) and `band`.
fn per_visit() -> String {
    let one = |t: &str| {
        format!(
            "SELECT \"visit\", MIN(\"midpointMjdTai\") AS \"t0\", MAX(\"midpointMjdTai\") AS \"t1\", \
             MIN(\"band\") AS \"band\" FROM \"ppdb\".\"{t}\" GROUP BY \"visit\""
        )
    };
    format!(
        "SELECT u.\"visit\", MIN(u.\"t0\") AS \"t0\", MAX(u.\"t1\") AS \"t1\", MIN(u.\"band\") AS \"band\" \
         FROM ({} UNION ALL {}) AS u GROUP BY u.\"visit\"",
        one("DiaSource"),
        one("DiaForcedSource")
    )
}

/// A `CASE` giving each band's lower (`edge` 0) or upper (1) wavelength.
fn band_edge(edge: usize) -> String {
    let arms: Vec<String> = BANDS
        .iter()
        .map(|(b, lo, hi)| format!("WHEN '{b}' THEN {:e}", [lo, hi][edge]))
        .collect();
    format!(
        "CAST(CASE v.\"band\" {} ELSE NULL END AS DOUBLE)",
        arms.join(" ")
    )
}

/// The view's SQL: calexps of every detector-visit, and difference images of
/// those with DIA rows; `links` is the DataLink endpoint's URL, if served.
pub fn sql(links: Option<&str>) -> String {
    let access = match links {
        Some(url) => format!(
            "'{}?ID=' || CAST(d.\"visit\" AS VARCHAR) || '%2F' || CAST(d.\"detector\" AS VARCHAR)",
            url.replace('\'', "''")
        ),
        None => "CAST(NULL AS VARCHAR)".into(),
    };
    let select = |kind: &str, level: u8| {
        let items: Vec<String> = columns()
            .iter()
            .map(|c| {
                let e = c
                    .sql
                    .replace("{kind}", kind)
                    .replace("{level}", &level.to_string())
                    .replace("{access}", &access)
                    .replace("{em_min}", &band_edge(0))
                    .replace("{em_max}", &band_edge(1));
                format!("{e} AS \"{}\"", c.name)
            })
            .collect();
        format!(
            "SELECT {} FROM \"ppdb\".\"DetectorVisitProcessingSummary\" AS d \
             LEFT JOIN ({}) AS v ON v.\"visit\" = d.\"visit\"",
            items.join(", "),
            per_visit()
        )
    };
    let made = |t: &str| {
        format!(
            "EXISTS (SELECT 1 FROM \"ppdb\".\"{t}\" AS s WHERE s.\"visit\" = d.\"visit\" AND s.\"detector\" = d.\"detector\")"
        )
    };
    format!(
        "{} UNION ALL {} WHERE {} OR {}",
        select("lsst.calexp", 2),
        select("lsst.difference_image", 3),
        made("DiaSource"),
        made("DiaForcedSource")
    )
}

/// What the ADQL parser knows of it.
pub fn adql_table() -> adql::Table {
    adql::Table {
        schema: SCHEMA.into(),
        name: NAME.into(),
        columns: columns()
            .iter()
            .map(|c| adql::Column {
                name: c.name.into(),
                unit: c.unit.map(str::to_string),
            })
            .collect(),
        key: vec!["obs_id".into(), "dataproduct_subtype".into()],
    }
}

/// Registers the view in `catalog`, planned in `state` (whose catalog it
/// is, with the snapshot's tables already in it).
pub async fn register(
    catalog: &dyn CatalogProvider,
    state: &SessionState,
    links: Option<&str>,
) -> datafusion::error::Result<()> {
    let sql = sql(links);
    let plan = state.create_logical_plan(&sql).await?;
    let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(sql)));
    let schema = Arc::new(MemorySchemaProvider::new());
    schema.register_table(NAME.into(), view)?;
    catalog.register_schema(SCHEMA, schema)?;
    Ok(())
}
