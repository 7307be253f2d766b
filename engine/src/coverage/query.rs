//! The ADQL a coverage runs: which detector-visits (nights, with or without
//! DIA rows) or which table's positions, at which order.

use super::space_time::{MAX_TIME_ORDER, TIME_COLUMNS, TIME_ORDER_COLUMN};
use super::{
    CELL_COLUMN, CORNERS, CoverageError, DETECTORS, MAX_ORDER, ORDER_COLUMN, VISITS_PER_NIGHT,
};

/// The nights of detector-visits a footprint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nights {
    /// Every night.
    All,
    /// The latest night the caller may see.
    Last,
    /// From one `day_obs` to another, both included (`YYYYMMDD`).
    Between(u32, u32),
    /// Visits whose exposure overlaps a window of MJD (TAI), in millionths of
    /// a day, dated by their DIA rows' midpoint (a visit without DIA rows
    /// has no time and is in no window).
    Mjd(i64, i64),
}

impl Nights {
    /// A night as `YYYY-MM-DD` (or `YYYYMMDD`), or `last`.
    pub fn parse(text: &str) -> Result<Nights, CoverageError> {
        if text.eq_ignore_ascii_case("last") {
            return Ok(Nights::Last);
        }
        let day = day_obs(text).ok_or_else(|| CoverageError::Night { text: text.into() })?;
        Ok(Nights::Between(day, day))
    }
}

impl Nights {
    /// The visits a request names: by `night` (to `until`), or by a `time`
    /// window `FROM TO` in MJD (TAI); not both.
    pub fn window(
        night: Option<&str>,
        until: Option<&str>,
        time: Option<&str>,
    ) -> Result<Nights, CoverageError> {
        let Some(time) = time.map(str::trim).filter(|t| !t.is_empty()) else {
            return Nights::range(night, until);
        };
        if night.is_some() || until.is_some() {
            return Err(CoverageError::Range {
                why: "give nights or a time window, not both".into(),
            });
        }
        let bounds: Vec<f64> = time
            .split(|c: char| c.is_whitespace() || c == '/')
            .filter(|w| !w.is_empty())
            .map(|w| w.parse::<f64>())
            .collect::<Result<_, _>>()
            .ok()
            .filter(|b: &Vec<f64>| b.len() == 2 && b.iter().all(|x| (0.0..1.0e6).contains(x)))
            .ok_or_else(|| CoverageError::Range {
                why: format!(
                    "time '{}' is not a window: give two MJDs (TAI), 'FROM TO', e.g. '61000.5 61001'",
                    time.chars().take(40).collect::<String>()
                ),
            })?;
        if bounds[0] > bounds[1] {
            return Err(CoverageError::Range {
                why: format!(
                    "the time window ends ({}) before it starts ({})",
                    bounds[1], bounds[0]
                ),
            });
        }
        let micro = |x: f64| (x * 1e6).round() as i64;
        Ok(Nights::Mjd(micro(bounds[0]), micro(bounds[1])))
    }

    /// The nights from `night` to `until` (both included), as a request names
    /// them: one night, `last`, a range of dates, or every night.
    pub fn range(night: Option<&str>, until: Option<&str>) -> Result<Nights, CoverageError> {
        match (night, until) {
            (None, None) => Ok(Nights::All),
            (Some(n), None) => Nights::parse(n),
            (None, Some(_)) => Err(CoverageError::Range {
                why: "a last night needs a first one: give both".into(),
            }),
            (Some(first), Some(last)) => match (Nights::parse(first)?, Nights::parse(last)?) {
                (Nights::Between(a, _), Nights::Between(_, b)) if a <= b => {
                    Ok(Nights::Between(a, b))
                }
                (Nights::Between(..), Nights::Between(..)) => Err(CoverageError::Range {
                    why: format!("the last night ({last}) is before the first ({first})"),
                }),
                _ => Err(CoverageError::Range {
                    why: "a range of nights is two dates, not 'last'".into(),
                }),
            },
        }
    }
}

/// `YYYY-MM-DD` or `YYYYMMDD` as the number `YYYYMMDD`, if it is a date.
fn day_obs(text: &str) -> Option<u32> {
    let digits: String = text.trim().chars().filter(|c| *c != '-').collect();
    let date = chrono::NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()?;
    digits
        .parse()
        .ok()
        .filter(|_| date.format("%Y%m%d").to_string() == digits)
}

/// What a coverage covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Of {
    /// The footprints of processed detector-visits; with `dia`, only those
    /// that gave (`Some(true)`) or did not give (`Some(false)`) DIA rows, which
    /// is where a template existed.
    Footprints {
        /// Which nights.
        nights: Nights,
        /// Only detector-visits with (or without) DiaSources or forced photometry.
        dia: Option<bool>,
    },
    /// Where a table's rows are (`schema.table`, or a table of `ppdb`).
    Table(String),
    /// The footprints night by night (see [`growth`]), of every
    /// detector-visit or, with `dia`, of those with (or without) DIA rows.
    Growth {
        /// Only detector-visits with (or without) DiaSources or forced photometry.
        dia: Option<bool>,
    },
    /// The footprints over the time each was exposed (an ST-MOC; see
    /// [`super::space_time`]), with time cells of `time_order`.
    SpaceTime {
        /// Which nights.
        nights: Nights,
        /// Only detector-visits with (or without) DiaSources or forced photometry.
        dia: Option<bool>,
        /// The order of the time cells, 0 to 61.
        time_order: u8,
    },
}

/// Which nights' visits: a condition on `visit` (`alias.visit`).
fn night_condition(nights: Nights, alias: &str) -> Option<String> {
    let n = VISITS_PER_NIGHT;
    match nights {
        Nights::All => None,
        Nights::Between(a, b) => Some(format!(
            "{alias}.visit >= {} AND {alias}.visit < {}",
            i64::from(a) * n,
            (i64::from(b) + 1) * n
        )),
        Nights::Last => Some(format!(
            "{alias}.visit >= (SELECT MAX(v.visit) - MOD(MAX(v.visit), {n}) FROM {DETECTORS} AS v)"
        )),
        // An exposure overlaps the window when its midpoint is within half
        // an exposure of it.
        Nights::Mjd(a, b) => {
            let half = super::space_time::EXPOSURE_SECONDS / 2.0 / 86_400.0;
            let (lo, hi) = (a as f64 / 1e6 - half, b as f64 / 1e6 + half);
            let dated = ["ppdb.DiaSource", "ppdb.DiaForcedSource"].map(|t| {
                format!(
                    "{alias}.visit IN (SELECT t.visit FROM {t} AS t \
                     WHERE t.midpointMjdTai BETWEEN {lo:.9} AND {hi:.9})"
                )
            });
            Some(format!("({} OR {})", dated[0], dated[1]))
        }
    }
}

/// The ADQL of detector footprints: their corners (after their visit, with
/// `with_visit`), of the `nights`, with or without DIA rows.
fn footprints_adql(nights: Nights, dia: Option<bool>, with_visit: bool, order: u8) -> String {
    let mut columns: Vec<String> = with_visit
        .then(|| "d.visit".to_string())
        .into_iter()
        .collect();
    columns.extend(
        CORNERS
            .iter()
            .flat_map(|(r, d)| [format!("d.{r}"), format!("d.{d}")]),
    );
    let mut conditions: Vec<String> = night_condition(nights, "d").into_iter().collect();
    if let Some(with) = dia {
        let made = ["ppdb.DiaSource", "ppdb.DiaForcedSource"].map(|t| {
            format!(
                "EXISTS (SELECT 1 FROM {t} AS s WHERE s.visit = d.visit \
                 AND s.detector = d.detector)"
            )
        });
        let any = format!("({} OR {})", made[0], made[1]);
        conditions.push(if with { any } else { format!("NOT {any}") });
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    // The order is named in the last column, so that a replay draws at it.
    columns.push(format!("{order} AS {ORDER_COLUMN}{order}"));
    format!(
        "SELECT {} FROM {DETECTORS} AS d{filter}",
        columns.join(", ")
    )
}

/// The ADQL of footprints in time: each detector-visit's corners after its
/// visit's first and last DIA midpoint (NULL for a visit with no DIA row).
fn space_time_adql(nights: Nights, dia: Option<bool>, order: u8, time_order: u8) -> String {
    let footprints = footprints_adql(nights, dia, false, order);
    let (columns, rest) = footprints
        .strip_prefix("SELECT ")
        .and_then(|s| s.split_once(&format!(" FROM {DETECTORS} AS d")))
        .unwrap_or_default();
    let [lo, hi] = TIME_COLUMNS;
    let per_table = ["ppdb.DiaSource", "ppdb.DiaForcedSource"].map(|t| {
        format!("SELECT visit, MIN(midpointMjdTai) AS t0, MAX(midpointMjdTai) AS t1 FROM {t} GROUP BY visit")
    });
    format!(
        "SELECT m.{lo}, m.{hi}, {columns}, {time_order} AS {TIME_ORDER_COLUMN}{time_order} \
         FROM {DETECTORS} AS d LEFT JOIN (SELECT u.visit, MIN(u.t0) AS {lo}, MAX(u.t1) AS {hi} \
         FROM ({} UNION ALL {}) AS u GROUP BY u.visit) AS m ON m.visit = d.visit{rest}",
        per_table[0], per_table[1]
    )
}

impl Of {
    /// The ADQL whose rows are this coverage at `order`; `tables` are those
    /// the engine serves (a table's must have `ra` and `dec`).
    pub fn adql(&self, order: u8, tables: &[adql::Table]) -> Result<String, CoverageError> {
        if order > MAX_ORDER {
            return Err(CoverageError::Order {
                order: order.into(),
            });
        }
        match self {
            Of::Footprints { nights, dia } => Ok(footprints_adql(*nights, *dia, false, order)),
            Of::Growth { dia } => Ok(footprints_adql(Nights::All, *dia, true, order)),
            Of::SpaceTime {
                nights,
                dia,
                time_order,
            } => {
                if *time_order > MAX_TIME_ORDER {
                    return Err(CoverageError::TimeOrder {
                        order: (*time_order).into(),
                    });
                }
                Ok(space_time_adql(*nights, *dia, order, *time_order))
            }
            Of::Table(name) => {
                let table = placed_table(name, tables).map_err(|why| CoverageError::Table {
                    table: name.chars().take(100).collect(),
                    why,
                })?;
                Ok(format!(
                    "SELECT DISTINCT ivo_healpix_index({order}, ra, dec) AS {CELL_COLUMN}{order} \
                     FROM {}.{} WHERE ra IS NOT NULL AND dec IS NOT NULL",
                    table.schema, table.name
                ))
            }
        }
    }
}

/// The table `name` names (`schema.table`, or a table's own name where one
/// schema has it, `ppdb` first, as ADQL resolves it), if its rows have `ra`
/// and `dec` to place them on the sky; else why not.
pub(crate) fn placed_table<'a>(
    name: &str,
    tables: &'a [adql::Table],
) -> Result<&'a adql::Table, String> {
    let named = |t: &&adql::Table| match name.split_once('.') {
        Some((schema, table)) => {
            t.schema.eq_ignore_ascii_case(schema) && t.name.eq_ignore_ascii_case(table)
        }
        None => t.name.eq_ignore_ascii_case(name),
    };
    let mut found: Vec<&adql::Table> = tables.iter().filter(named).collect();
    found.sort_by_key(|t| t.schema != "ppdb");
    let table = found
        .first()
        .ok_or_else(|| "no such table (see /tap/tables)".to_string())?;
    for c in ["ra", "dec"] {
        if !table.columns.iter().any(|col| col.name == c) {
            return Err("has no ra and dec to place its rows on the sky".into());
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nights_are_dates_or_last() {
        assert_eq!(
            Nights::parse("2025-11-26").unwrap(),
            Nights::Between(20251126, 20251126)
        );
        assert_eq!(
            Nights::parse("20251126").unwrap(),
            Nights::Between(20251126, 20251126)
        );
        assert_eq!(Nights::parse("LAST").unwrap(), Nights::Last);
        assert_eq!(
            Nights::window(None, None, Some("61000.5 61001")).unwrap(),
            Nights::Mjd(61_000_500_000, 61_001_000_000)
        );
        for (night, time) in [
            (None, "61001 61000"),
            (None, "61000"),
            (None, "a b"),
            (None, "1e300 1e301"),
            (Some("last"), "61000 61001"),
        ] {
            assert!(Nights::window(night, None, Some(time)).is_err(), "{time}");
        }
        for bad in [
            "2025-13-01",
            "2025-02-30",
            "yesterday",
            "",
            "2025-11-26; DROP",
        ] {
            assert!(Nights::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_night_is_its_visits_by_day_obs() {
        let q = Of::Footprints {
            nights: Nights::Between(20251126, 20251127),
            dia: None,
        }
        .adql(10, &[])
        .unwrap();
        assert!(
            q.ends_with("WHERE d.visit >= 2025112600000 AND d.visit < 2025112800000"),
            "{q}"
        );
        assert!(matches!(
            Of::Table("DiaObject".into()).adql(14, &[]),
            Err(CoverageError::Order { order: 14 })
        ));
        assert!(matches!(
            Of::Table("Nothing".into()).adql(10, &[]),
            Err(CoverageError::Table { .. })
        ));
    }
}
