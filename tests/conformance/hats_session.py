#!/usr/bin/env python3
"""HATS exports (`ppdb export --format hats`) opened with hats, LSDB and
DuckDB, and compared with the same ADQL at the same snapshot through pyvo.

    python tests/conformance/hats_session.py http://127.0.0.1:PORT/tap BEARER FULL PUBLIC

FULL is an export of every row, PUBLIC one made with --public under the
embargo the server applies; BEARER is a privileged user's token. Prints one
line per step and exits 1 if any failed.
"""
import logging
import math
import sys

import duckdb
import hats
import lsdb
import numpy as np
import pandas as pd
import pyvo
import requests
from hats.io.validation import is_valid_catalog
from hats.pixel_math.spatial_index import compute_spatial_index
from session import Session

url, bearer, full, public = sys.argv[1:5]
privileged_http = requests.Session()
privileged_http.headers["Authorization"] = f"Bearer {bearer}"
privileged = pyvo.dal.TAPService(url, session=privileged_http)
anonymous = pyvo.dal.TAPService(url)
session = Session("hats-session")
TABLES = ["DiaObject", "DiaSource", "DiaForcedSource"]
logging.getLogger().setLevel(logging.ERROR)


def properties(root, table):
    return hats.read_hats(f"{root}/{table}").catalog_info


def snapshot_of(root):
    return int(properties(root, "DiaObject").model_extra["ppdb_snapshot"])


def adql(service, text):
    return service.search(text, maxrec=10_000_000).to_table()


def value(v):
    """One cell as a plain Python value; every kind of null as None."""
    if v is None or v is np.ma.masked or v is pd.NA:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, bytes):
        v = v.decode()
    # VOTable has no NULL string: an empty one stands for it.
    if v == "":
        return None
    return v


def same_rows(frame, table, key):
    """The rows LSDB read against the rows pyvo read, every column, by key."""
    assert len(frame) == len(table), (len(frame), len(table))
    assert len(table) > 0, "no rows to compare"
    frame = frame.sort_values(key)
    table.sort(key)
    columns = [c for c in table.colnames if c in frame.columns]
    assert len(columns) == len(table.colnames), set(table.colnames) - set(frame.columns)
    for c in columns:
        mine = [value(v) for v in frame[c].tolist()]
        column = table[c]
        mask = np.ma.getmaskarray(column)
        theirs = [None if m else value(v) for v, m in zip(column.data.tolist(), mask)]
        assert mine == theirs, (c, mine[:3], theirs[:3])


@session.step("each export is a valid HATS catalog with a valid margin catalog (hats, strict)")
def valid():
    for root in (full, public):
        for t in TABLES:
            assert is_valid_catalog(f"{root}/{t}", strict=True), f"{root}/{t}"
    for t in TABLES:
        margin = hats.read_hats(f"{full}/{t}_5arcs")
        assert margin.catalog_info.catalog_type == "margin", margin.catalog_info
        assert margin.catalog_info.margin_threshold == 5.0, margin.catalog_info
        assert is_valid_catalog(f"{full}/{t}_5arcs", strict=True), t


@session.step("every table of an export is at one snapshot, its token in the properties")
def one_snapshot():
    for root in (full, public):
        k = snapshot_of(root)
        for t in TABLES:
            extra = properties(root, t).model_extra
            assert int(extra["ppdb_snapshot"]) == k, (t, extra)
            assert len(extra["ppdb_token"]) == 20, extra


@session.step("the rows are those of the same ADQL: all of them, or the public ones")
def counts():
    for root, service in ((full, privileged), (public, anonymous)):
        k = snapshot_of(root)
        for t in TABLES:
            n = adql(service, f"SELECT COUNT(*) AS n FROM ppdb.{t} FOR SYSTEM_TIME AS OF {k}")
            assert properties(root, t).total_rows == int(n["n"][0]), (root, t)
            assert len(lsdb.open_catalog(f"{root}/{t}").compute()) == int(n["n"][0]), (root, t)
    hidden = properties(full, "DiaSource").total_rows - properties(public, "DiaSource").total_rows
    assert hidden > 0, "the embargo hid no DiaSource: the test proves nothing"
    late = lsdb.open_catalog(f"{public}/DiaSource").query("midpointMjdTai > 61001.6").compute()
    assert len(late) == 0, late


@session.step("_healpix_29 is the index hats computes from ra and dec")
def healpix():
    for t in TABLES:
        frame = lsdb.open_catalog(f"{full}/{t}").compute()
        expected = compute_spatial_index(frame["ra"].to_numpy(float), frame["dec"].to_numpy(float))
        assert np.array_equal(frame.index.to_numpy(), expected), t


@session.step("an LSDB cone gives the rows and values of the same ADQL cone")
def cone():
    k = snapshot_of(full)
    one = adql(privileged, f"SELECT TOP 1 ra, dec FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF {k} ORDER BY diaObjectId")
    ra, dec = float(one["ra"][0]), float(one["dec"][0])
    for radius_deg in (0.05, 1.0):
        frame = lsdb.open_catalog(f"{full}/DiaObject").cone_search(ra, dec, radius_deg * 3600).compute()
        table = adql(
            privileged,
            f"SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF {k} WHERE "
            f"1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra!r}, {dec!r}, {radius_deg}))",
        )
        same_rows(frame, table, "diaObjectId")


@session.step("an LSDB light curve gives the rows and values of the same ADQL")
def light_curve():
    k = snapshot_of(full)
    busiest = adql(
        privileged,
        f"SELECT TOP 1 diaObjectId, COUNT(*) AS n FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {k} "
        "GROUP BY diaObjectId ORDER BY n DESC, diaObjectId",
    )
    obj = int(busiest["diaObjectId"][0])
    for t, key in (("DiaSource", "diaSourceId"), ("DiaForcedSource", "diaForcedSourceId")):
        frame = lsdb.open_catalog(f"{full}/{t}").query(f"diaObjectId == {obj}").compute()
        table = adql(privileged, f"SELECT * FROM ppdb.{t} FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {obj}")
        same_rows(frame, table, key)


@session.step("LSDB nests each object's DiaSources, across partition borders, as the ADQL join")
def nested():
    k = snapshot_of(full)
    joined = adql(
        privileged,
        f"SELECT s.diaSourceId FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {k} AS s "
        f"JOIN ppdb.DiaObject FOR SYSTEM_TIME AS OF {k} AS o ON s.diaObjectId = o.diaObjectId",
    )
    objects = lsdb.open_catalog(f"{full}/DiaObject")
    sources = lsdb.open_catalog(f"{full}/DiaSource", margin_cache=f"{full}/DiaSource_5arcs")
    sources = sources.query("diaObjectId.notna()")
    frame = objects.join_nested(
        sources, left_on="diaObjectId", right_on="diaObjectId", nested_column_name="sources"
    ).compute()
    flat = frame["sources"].nest.to_flat()
    assert sorted(flat["diaSourceId"].tolist()) == sorted(int(i) for i in joined["diaSourceId"])


@session.step("DuckDB reads the Parquet files directly")
def with_duckdb():
    for t in TABLES:
        files = f"{full}/{t}/dataset/Norder=*/Dir=*/Npix=*.parquet"
        first = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{files}')").fetchall()[0]
        assert first[0] == "_healpix_29" and first[1] == "BIGINT", first
        n = duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{files}')").fetchall()[0][0]
        assert n == properties(full, t).total_rows, (t, n)
    ids = duckdb.sql(
        f"SELECT COUNT(DISTINCT diaObjectId) FROM read_parquet('{full}/DiaSource/dataset/**/*.parquet')"
    ).fetchall()[0][0]
    assert ids > 0


@session.step("the token in the properties replays to the rows the files hold")
def replay():
    token = properties(full, "DiaObject").model_extra["ppdb_token"]
    r = privileged_http.get(f"{url}/replay/{token}", params={"RESPONSEFORMAT": "csv"}, timeout=120)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    rows = r.text.strip().splitlines()[1:]
    assert len(rows) == properties(full, "DiaObject").total_rows, len(rows)


session.finish()
