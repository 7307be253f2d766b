//! DALI examples (`/tap/examples`, and the web page's list): runnable PPDB
//! queries written for the catalog being served. The object, the position, the
//! time and the snapshot they name are looked up when the service starts, as
//! an anonymous caller would see them, so every example returns rows on any
//! catalog, not only on the bundled sample.

use engine::{Engine, QueryOptions};
use serde::Serialize;

/// One runnable example.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// Its fragment id.
    pub id: &'static str,
    /// Its title.
    pub name: &'static str,
    /// What it shows.
    pub what: &'static str,
    /// The ADQL.
    pub query: String,
}

/// What the examples name, read off the catalog.
struct Picks {
    /// The object with the most detections, and its position.
    object: i64,
    ra: f64,
    dec: f64,
    /// An object with forced photometry.
    forced: i64,
    /// An object with the most versions.
    versions: i64,
    /// A time (MJD, TAI) some current versions started after.
    since: f64,
    /// An earlier snapshot.
    snapshot: u64,
}

impl Picks {
    /// The bundled sample's, for a catalog too empty to pick from.
    fn sample() -> Picks {
        Picks {
            object: 1_000_000_014,
            ra: 55.0,
            dec: -30.0,
            forced: 1_000_000_014,
            versions: 1_000_000_014,
            since: 60_999.0,
            snapshot: 3,
        }
    }
}

/// One value of the first row of an anonymous, unpinned query.
async fn first(engine: &Engine, adql: &str) -> Option<Vec<String>> {
    let (batches, _) = engine
        .query_unpinned(adql, &QueryOptions::default())
        .await
        .ok()?
        .collect()
        .await
        .ok()?;
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let opts = arrow::util::display::FormatOptions::default();
    batch
        .columns()
        .iter()
        .map(|c| {
            let f = arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts).ok()?;
            (!c.is_null(0)).then(|| f.value(0).to_string())
        })
        .collect()
}

async fn picks(engine: &Engine) -> Option<Picks> {
    let top = first(
        engine,
        "SELECT TOP 1 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY nDiaSources DESC, diaObjectId",
    )
    .await?;
    let forced = first(
        engine,
        "SELECT TOP 1 diaObjectId, COUNT(*) AS n FROM ppdb.DiaForcedSource \
         GROUP BY diaObjectId ORDER BY n DESC, diaObjectId",
    )
    .await;
    let versions = first(
        engine,
        "SELECT TOP 1 diaObjectId, COUNT(*) AS n FROM ppdb.DiaObjectHistory \
         GROUP BY diaObjectId ORDER BY n DESC, diaObjectId",
    )
    .await;
    let span = first(
        engine,
        "SELECT MIN(validityStartMjdTai) AS lo, MAX(validityStartMjdTai) AS hi FROM ppdb.DiaObject",
    )
    .await?;
    let object: i64 = top[0].parse().ok()?;
    let (lo, hi): (f64, f64) = (span[0].parse().ok()?, span[1].parse().ok()?);
    // Three decimals (about 90 s) that still fall before the newest start.
    let since = ((lo + hi) / 2.0 * 1000.0).floor() / 1000.0;
    // Anyone reads the examples: the snapshots made after the embargo cutoff
    // (even how many) are not theirs to see.
    let latest = engine.latest_shown(false).await.ok()?.snapshot;
    Some(Picks {
        object,
        ra: top[1].parse().ok()?,
        dec: top[2].parse().ok()?,
        forced: forced.and_then(|f| f[0].parse().ok()).unwrap_or(object),
        versions: versions.and_then(|v| v[0].parse().ok()).unwrap_or(object),
        since: if since < hi { since } else { lo },
        snapshot: (latest / 2).max(1),
    })
}

/// The examples for the catalog an engine serves.
pub async fn for_catalog(engine: &Engine) -> Vec<Example> {
    let p = match picks(engine).await {
        Some(p) => p,
        None => Picks::sample(),
    };
    let Picks {
        object,
        ra,
        dec,
        forced,
        versions,
        since,
        snapshot,
    } = p;
    vec![
        Example {
            id: "cone",
            name: "Cone search on current objects",
            what: "DiaObjects within 0.1 degree of a position. The cone is turned into HEALPix ranges, so only the files near it are read.",
            query: format!(
                "SELECT diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra:.6}, {dec:.6}, 0.1)) = 1"
            ),
        },
        Example {
            id: "lightcurve",
            name: "Light curve of one object",
            what: "Every detection of one DiaObject, in time order. The id index sends the query straight to the one partition that holds the object.",
            query: format!(
                "SELECT diaSourceId, midpointMjdTai, band, psfFlux, psfFluxErr FROM ppdb.DiaSource WHERE diaObjectId = {object} ORDER BY midpointMjdTai"
            ),
        },
        Example {
            id: "forced",
            name: "Forced photometry of one object",
            what: "Forced measurements at the object's position on every visit, including those without a detection.",
            query: format!(
                "SELECT visit, band, midpointMjdTai, psfFlux, psfFluxErr FROM ppdb.DiaForcedSource WHERE diaObjectId = {forced} ORDER BY midpointMjdTai"
            ),
        },
        Example {
            id: "updated",
            name: "Objects updated since a time",
            what: "Current DiaObject versions whose validity started after an MJD (TAI): the objects that changed since then.",
            query: format!(
                "SELECT diaObjectId, validityStartMjdTai, nDiaSources, ra, dec FROM ppdb.DiaObject WHERE validityStartMjdTai > {since:.3}"
            ),
        },
        Example {
            id: "history",
            name: "Every version of an object",
            what: "DiaObjectHistory keeps the versions the PPDB overwrites, each with its validity interval as known at the snapshot read.",
            query: format!(
                "SELECT validityStartMjdTai, validityEndMjdTai, nDiaSources, ra, dec FROM ppdb.DiaObjectHistory WHERE diaObjectId = {versions} ORDER BY validityStartMjdTai"
            ),
        },
        Example {
            id: "timetravel",
            name: "Time travel: the catalog as it was",
            what: "FOR SYSTEM_TIME AS OF reads an earlier snapshot (a number, or an ISO-8601 UTC time); the AS_OF request parameter does the same for clients that cannot edit the ADQL.",
            query: format!(
                "SELECT COUNT(*) AS n FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {snapshot}"
            ),
        },
        Example {
            id: "replay",
            name: "Repeat a result exactly",
            what: "Every result carries a query token and a service descriptor whose access URL, /tap/replay/{token}, returns the same rows in the same order, checked against a recorded checksum, whatever arrived since. TOP without ORDER BY is made deterministic by a total order: the table key where the query shows it, else every output column.",
            query: "SELECT TOP 10 diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject ORDER BY nDiaSources DESC".into(),
        },
        Example {
            id: "bands",
            name: "Detections per band",
            what: "An aggregate over the whole DiaSource table.",
            query: "SELECT band, COUNT(*) AS n, AVG(psfFlux) AS mean_flux FROM ppdb.DiaSource GROUP BY band ORDER BY band".into(),
        },
        Example {
            id: "withdrawn",
            name: "Withdrawn detections",
            what: "Withdrawn DiaSources stay in the table with timeWithdrawnMjdTai set, as in Rubin's PPDB; filter them out with timeWithdrawnMjdTai IS NULL.",
            query: "SELECT diaSourceId, diaObjectId, timeWithdrawnMjdTai FROM ppdb.DiaSource WHERE timeWithdrawnMjdTai IS NOT NULL".into(),
        },
        Example {
            id: "prompt",
            name: "Detections beside the visit's sources",
            what: "A DiaSource joined with its DiaObject and the Prompt Processing sources of the same visit and detector within 2 arcseconds.",
            query: "SELECT TOP 20 o.diaObjectId, s.diaSourceId, p.sourceId, DISTANCE(POINT('ICRS', s.ra, s.dec), POINT('ICRS', p.ra, p.dec)) AS sep FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId JOIN src.PromptSource AS p ON p.visit = s.visit AND p.detector = s.detector WHERE DISTANCE(POINT('ICRS', s.ra, s.dec), POINT('ICRS', p.ra, p.dec)) < 2.0 / 3600".into(),
        },
    ]
}
