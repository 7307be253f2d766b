"""Every value right in every client: each format of the same results, decoded
by a reader we did not write, gives identical values.

Readers: astropy's VOTable parser through pyvo (BINARY2 and TABLEDATA),
pyarrow (VOParquet), Python's csv (CSV, TSV) and json (JSON), and STILTS
(BINARY2, written back out as CSV). The results: `SELECT TOP n *` of every
table, and one row of every kind of value a query can compute (geometry,
UDFs, CASTs to each ADQL type, NULLs of each type, text outside ASCII, ids
near 2^63). The computed row is also checked against values written here by
hand, so a mistake that every format shared would still be seen.

Usage: values_roundtrip.py TAP_URL   (prints "values-roundtrip: N passed, M failed")
"""

import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyvo

from session import Session

TAP = sys.argv[1].rstrip("/")
service = pyvo.dal.TAPService(TAP)
session = Session("values-roundtrip")
check = session.check


def fetch(adql, fmt):
    query = urllib.parse.urlencode(
        {"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": fmt, "MAXREC": "1000"}
    )
    with urllib.request.urlopen(f"{TAP}/sync?{query}", timeout=120) as r:
        return r.read()


# --- Decoders: each gives (names, rows), rows as lists of plain Python values.

def plain(v):
    """A numpy/astropy value as a plain Python one (None for masked)."""
    if v is None or v is np.ma.masked:
        return None
    if isinstance(v, np.ndarray):
        if np.ma.isMaskedArray(v) and v.mask.all():
            return None
        return tuple(float(x) for x in np.asarray(v))
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


def from_astropy(table):
    names = table.colnames
    rows = []
    for r in range(len(table)):
        rows.append([plain(table[c][r]) for c in names])
    return names, rows


def votable(adql, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = service.search(adql, maxrec=1000, responseformat=fmt)
    return from_astropy(result.to_table()), result.votable.get_first_table()


def parquet(adql):
    table = pq.read_table(io.BytesIO(fetch(adql, "parquet")))
    rows = []
    for rec in table.to_pylist():
        rows.append([tuple(v) if isinstance(v, list) else v for v in rec.values()])
    return (table.column_names, rows), table.schema


def from_json(adql):
    doc = json.loads(fetch(adql, "json"))
    names = [m["name"] for m in doc["metadata"]]
    rows = [[tuple(v) if isinstance(v, list) else v for v in row] for row in doc["data"]]
    return (names, rows), doc


def delimited(text, delimiter):
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    names = next(reader)
    return names, [row for row in reader]


def stilts_csv(adql):
    """The BINARY2 document as STILTS reads it, written back out as CSV."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.vot")
        with open(path, "wb") as f:
            f.write(fetch(adql, "votable"))
        out = subprocess.run(
            ["stilts", "tpipe", f"in={path}", "ifmt=votable", "ofmt=csv"],
            capture_output=True,
            check=True,
        )
        return delimited(out.stdout.decode("utf-8"), ",")


# --- Normalising: the truth is the Parquet schema's types.

def kind_of(t):
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_float32(t):
        return "float32"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_list(t):
        return "array"
    if pa.types.is_timestamp(t):
        return "time"
    return "text"


def from_text(kind, s, array_style):
    """A CSV cell read as a value of `kind` (empty is NULL)."""
    if s == "":
        return None
    if kind == "bool":
        return {"true": True, "false": False}[s.lower()]
    if kind == "int":
        return int(s)
    if kind in ("float", "float32"):
        return float(s)
    if kind == "array":
        inner = s.strip("()[] ") if array_style == "stilts" else s
        parts = inner.replace(",", " ").split()
        return tuple(float(x) for x in parts)
    return s


def norm(kind, v, fmt):
    """A value as every format can agree on it."""
    if kind == "float32" and v is not None:
        v = float(np.float32(v))
    if kind in ("float", "float32"):
        # VOTable writes a NULL float as NaN; JSON cannot carry NaN or infinities.
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if fmt == "json" and math.isinf(v):
            return None
        return float(v)
    if kind == "array" and v is not None:
        return tuple(None if (x is None or math.isnan(x)) else x for x in v)
    if kind in ("text", "time") and v == "" and fmt != "json":
        # Text formats have no NULL text, and astropy reads a NULL string as "".
        return None
    if kind == "time" and v is not None:
        if isinstance(v, dt.datetime):
            return v.replace(tzinfo=None)
        return dt.datetime.fromisoformat(str(v).replace("Z", ""))
    return v


def compare(label, adql):
    (names, truth), schema = parquet(adql)
    kinds = [kind_of(f.type) for f in schema]
    decoded = {}
    for fmt in ("binary2", "tabledata"):
        (n, rows), _ = votable(adql, "votable" if fmt == "binary2" else "votable/td")
        decoded[fmt] = (n, rows)
    (n, rows), _ = from_json(adql)
    decoded["json"] = (n, rows)
    for fmt, delim in (("csv", ","), ("tsv", "\t")):
        n, cells = delimited(fetch(adql, fmt).decode("utf-8"), delim)
        decoded[fmt] = (n, [[from_text(k, c, "dali") for k, c in zip(kinds, row)] for row in cells])
    n, cells = stilts_csv(adql)
    decoded["stilts"] = (n, [[from_text(k, c, "stilts") for k, c in zip(kinds, row)] for row in cells])
    for fmt, (n, rows) in decoded.items():
        if n != names:
            check(f"{label} [{fmt}] column names", False, f"{n} != {names}")
            continue
        if len(rows) != len(truth):
            check(f"{label} [{fmt}] row count", False, f"{len(rows)} != {len(truth)}")
            continue
        bad = []
        for r, (got, want) in enumerate(zip(rows, truth)):
            for c, (k, g, w) in enumerate(zip(kinds, got, want)):
                if norm(k, g, fmt) != norm(k, w, fmt):
                    bad.append(f"row {r} {names[c]}: {g!r} != {w!r}")
        check(f"{label} [{fmt}] {len(truth)} rows x {len(names)} columns", not bad, "; ".join(bad[:5]))
    return names, truth


# Every table, as a client first looks at it.
tables = [
    "ppdb.DiaObject", "ppdb.DiaObjectHistory", "ppdb.DiaSource", "ppdb.DiaForcedSource",
    "ppdb.DetectorVisitProcessingSummary", "ppdb.SSObject", "src.PromptSource",
    "TAP_SCHEMA.schemas", "TAP_SCHEMA.tables", "TAP_SCHEMA.columns", "TAP_SCHEMA.keys",
    "TAP_SCHEMA.key_columns",
]
for t in tables:
    compare(t, f"SELECT TOP 40 * FROM {t}")

# Every kind of value a query computes, with what each must be.
computed = [
    ("pt", "POINT('ICRS', 10.5, -30.25)", (10.5, -30.25)),
    ("circ", "CIRCLE('ICRS', 10.5, -30.25, 0.5)", (10.5, -30.25, 0.5)),
    ("cen", "CENTROID(CIRCLE('ICRS', 10.5, -30.25, 0.5))", (10.5, -30.25)),
    ("hpc", "ivo_healpix_center(0, 4)", (0.0, 0.0)),
    ("hpi", "ivo_healpix_index(10, 10.5, -30.25)", None),
    ("poly", "POLYGON('ICRS', 10.0, 0.0, 11.0, 0.0, 11.0, 1.0)", (10.0, 0.0, 11.0, 0.0, 11.0, 1.0)),
    ("dist", "DISTANCE(POINT('ICRS', 0.0, 0.0), POINT('ICRS', 0.0, 1.0))", 1.0),
    ("c1", "COORD1(POINT('ICRS', 10.5, -30.25))", 10.5),
    ("c2", "COORD2(POINT('ICRS', 10.5, -30.25))", -30.25),
    ("i16", "CAST(-32768 AS SMALLINT)", -32768),
    ("i32", "CAST(2147483647 AS INTEGER)", 2147483647),
    ("i64max", "CAST(9223372036854775807 AS BIGINT)", 9223372036854775807),
    ("i64min", "CAST(-9223372036854775807 AS BIGINT) - 1", -9223372036854775808),
    ("id60", "CAST(1152921504606846977 AS BIGINT)", 1152921504606846977),
    ("f32", "CAST(0.1 AS REAL)", float(np.float32(0.1))),
    ("f64", "CAST(0.1 AS DOUBLE PRECISION)", 0.1),
    ("tiny", "CAST(1.0E-300 AS DOUBLE PRECISION)", 1e-300),
    ("txt", "CAST(123 AS VARCHAR)", "123"),
    ("chr", "CAST('ab' AS CHAR(2))", "ab"),
    ("ts", "CAST('2025-06-01T12:34:56.5' AS TIMESTAMP)", dt.datetime(2025, 6, 1, 12, 34, 56, 500000)),
    ("accents", "'héllo, wörld'", "héllo, wörld"),
    ("cjk", "'観測所'", "観測所"),
    ("astral", "'𝄞 clef'", "𝄞 clef"),
    ("quotes", "'say \"hi\", it''s <ok> & fine'", "say \"hi\", it's <ok> & fine"),
    ("upper", "UPPER('gri')", "GRI"),
    ("n_i16", "CAST(NULL AS SMALLINT)", None),
    ("n_i32", "CAST(NULL AS INTEGER)", None),
    ("n_i64", "CAST(NULL AS BIGINT)", None),
    ("n_f32", "CAST(NULL AS REAL)", None),
    ("n_f64", "CAST(NULL AS DOUBLE PRECISION)", None),
    ("n_txt", "CAST(NULL AS VARCHAR)", None),
    ("n_ts", "CAST(NULL AS TIMESTAMP)", None),
]
select = ", ".join(f"{expr} AS {name}" for name, expr, _ in computed)
names, truth = compare("computed values", f"SELECT TOP 1 {select} FROM ppdb.DiaObject")
row = dict(zip(names, truth[0])) if truth else {}
for name, _, want in computed:
    if want is None and not name.startswith("n_"):
        continue
    got = row.get(name)
    if isinstance(got, dt.datetime):
        got = got.replace(tzinfo=None)
    if name == "f32":
        got = float(np.float32(got))
    if name in ("dist", "cen"):
        ok = got is not None and np.allclose(got, want, rtol=0, atol=1e-12)
    else:
        ok = got == want
    check(f"computed {name} is {want!r}", ok, f"got {got!r}")

# VOParquet: pyarrow shows the VOTable header as the schema's metadata, and
# astropy reads its FIELDs (units, UCDs) out of it.
meta = pq.read_table(io.BytesIO(fetch("SELECT TOP 1 diaObjectId, ra FROM ppdb.DiaObject", "parquet"))).schema.metadata or {}
content = meta.get(b"IVOA.VOTable-Parquet.content", b"")
ok = False
if content:
    from astropy.io.votable import parse_single_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fields = {f.name: f for f in parse_single_table(io.BytesIO(content)).fields}
    ok = str(fields["ra"].unit) == "deg" and (fields["diaObjectId"].ucd or "").startswith("meta.id")
check("VOParquet's VOTable header is in pyarrow's schema metadata, with units and UCDs", ok,
      f"metadata keys {list(meta)}")

# A join's wildcards give each column one name: pyarrow refuses a Parquet
# file with two columns of one name, and its values match the VOTable's.
JOIN = ("SELECT TOP 3 * FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s "
        "ON s.diaObjectId = o.diaObjectId ORDER BY s.diaSourceId")
try:
    joined = pq.read_table(io.BytesIO(fetch(JOIN, "parquet")))
    names = joined.column_names
    (vnames, vrows), _ = votable(JOIN, "votable")
    ok = (len(set(names)) == len(names) and "ra_2" in names and names == vnames
          and joined.column("ra_2").to_pylist() == [r[vnames.index("ra_2")] for r in vrows])
    detail = f"{len(names)} columns"
except Exception as e:  # noqa: BLE001 - reported as a failed check
    ok, detail = False, f"{type(e).__name__}: {e}"
check("a join's wildcard columns have one name each in pyarrow and astropy", ok, detail)

# How the columns are declared: what a reader needs to lay the bytes out.
(_, _), vot = votable(f"SELECT TOP 1 {select} FROM ppdb.DiaObject", "votable")
fields = {f.name: f for f in vot.fields}
for name, datatype, arraysize, xtype in [
    ("pt", "double", "2", "point"),
    ("circ", "double", "3", "circle"),
    ("cen", "double", "2", "point"),
    ("hpc", "double", "2", "point"),
    ("poly", "double", "*", "polygon"),
    ("accents", "unicodeChar", "*", None),
    ("txt", "char", "*", None),
    ("i64max", "long", None, None),
    ("ts", "char", "*", "timestamp"),
]:
    f = fields.get(name)
    got = (f.datatype, f.arraysize, f.xtype) if f is not None else None
    check(f"FIELD {name} is {datatype}[{arraysize}] {xtype}", got == (datatype, arraysize, xtype), f"got {got}")
    if xtype in ("point", "circle", "polygon"):
        check(f"FIELD {name} is in degrees", f is not None and str(f.unit) == "deg", f"got {f and f.unit}")

# A plain column keeps its unit, UCD and description under any name.
(_, _), vot = votable(
    "SELECT TOP 1 o.dec AS odec, o.ra, o.ra, s.psfFlux AS flux FROM ppdb.DiaObject AS o "
    "JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId",
    "votable",
)
fields = {f.name: f for f in vot.fields}
for name, unit, ucd in [("odec", "deg", "pos.eq.dec"), ("ra", "deg", "pos.eq.ra"),
                        ("ra_2", "deg", "pos.eq.ra"), ("flux", "nJy", None)]:
    f = fields.get(name)
    ok = f is not None and str(f.unit) == unit and (ucd is None or (f.ucd or "").startswith(ucd)) \
        and bool(f.description)
    check(f"{name} keeps unit {unit} and its description", ok,
          f"{f and (f.unit, f.ucd, f.description)}")

session.finish()
