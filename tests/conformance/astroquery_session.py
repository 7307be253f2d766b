"""An astroquery session against ppdb serve, as a user of astroquery.utils.tap
would run it: sync and async queries, an upload of an astropy table (with a
boolean and an unsigned byte column), JSON output, the table metadata, and
errors whose message (with its line and column) reaches the user.

Usage: astroquery_session.py TAP_URL   (prints "astroquery-session: N passed, M failed")
"""

import sys
import warnings

import numpy as np
from astropy.table import Table
from astroquery.utils.tap import TapPlus

from session import Session

warnings.simplefilter("ignore")
TAP = sys.argv[1].rstrip("/")
tap = TapPlus(url=TAP, verbose=False)
session = Session("astroquery-session")
step = session.step


LIGHT = "SELECT TOP 5 diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject ORDER BY diaObjectId"


@step("sync query")
def _():
    t = tap.launch_job(LIGHT).get_results()
    assert len(t) == 5, t
    assert t["diaObjectId"].dtype == np.int64, t["diaObjectId"].dtype
    assert list(t["diaObjectId"]) == sorted(t["diaObjectId"]), t
    assert str(t["ra"].unit) == "deg", t["ra"].unit


@step("async query")
def _():
    job = tap.launch_job_async(LIGHT)
    t = job.get_results()
    assert job.get_phase() == "COMPLETED", job.get_phase()
    assert len(t) == 5 and int(t["diaObjectId"][0]) > 0, t


@step("upload of an astropy table with bool and uint8 columns, joined")
def _():
    first = tap.launch_job(LIGHT).get_results()
    mine = Table(
        {
            "oid": np.array(first["diaObjectId"][:3], dtype=np.int64),
            "keep": np.array([True, False, True]),
            "rank": np.array([1, 2, 200], dtype=np.uint8),
            "label": ["héllo", "b", "c"],
        }
    )
    t = tap.launch_job(
        "SELECT m.oid, m.keep, m.rank, m.label, o.ra FROM tap_upload.mine AS m "
        "JOIN ppdb.DiaObject AS o ON o.diaObjectId = m.oid ORDER BY m.oid",
        upload_resource=mine,
        upload_table_name="mine",
    ).get_results()
    assert len(t) == 3, t
    assert [bool(x) for x in t["keep"]] == [True, False, True], t["keep"]
    assert [int(x) for x in t["rank"]] == [1, 2, 200], t["rank"]
    assert list(t["label"]) == ["héllo", "b", "c"], t["label"]
    # ADQL has no booleans: a boolean column compares with 1 and 0.
    kept = tap.launch_job(
        "SELECT m.oid FROM tap_upload.mine AS m WHERE m.keep = 1 ORDER BY m.oid",
        upload_resource=mine,
        upload_table_name="mine",
    ).get_results()
    assert len(kept) == 2, kept


@step("async upload")
def _():
    mine = Table({"x": np.array([1.5, 2.5])})
    t = tap.launch_job_async(
        "SELECT x FROM tap_upload.t ORDER BY x", upload_resource=mine, upload_table_name="t"
    ).get_results()
    assert list(t["x"]) == [1.5, 2.5], t


@step("JSON output keeps every column, NULLs and 64-bit ids")
def _():
    t = tap.launch_job(
        "SELECT TOP 3 diaSourceId, diaObjectId, midpointMjdTai, psfFlux, timeWithdrawnMjdTai, band "
        "FROM ppdb.DiaSource ORDER BY diaSourceId",
        output_format="json",
    ).get_results()
    assert t.colnames == [
        "diaSourceId", "diaObjectId", "midpointMjdTai", "psfFlux", "timeWithdrawnMjdTai", "band"
    ], t.colnames
    votable = tap.launch_job(
        "SELECT TOP 3 diaSourceId FROM ppdb.DiaSource ORDER BY diaSourceId"
    ).get_results()
    assert [int(x) for x in t["diaSourceId"]] == [int(x) for x in votable["diaSourceId"]], t


@step("load_tables lists every table with its columns")
def _():
    tables = tap.load_tables()
    names = {t.get_qualified_name() for t in tables}
    assert "ppdb.DiaObject" in names and "TAP_SCHEMA.columns" in names, names
    dia = next(t for t in tables if t.get_qualified_name() == "ppdb.DiaObject")
    assert any(c.name == "ra" for c in dia.columns), [c.name for c in dia.columns]
    only = tap.load_tables(only_names=True)
    assert len(only) == len(tables)


@step("load_table gives the table asked for")
def _():
    t = tap.load_table("ppdb.DiaSource")
    assert t.get_qualified_name() == "ppdb.DiaSource", t.get_qualified_name()
    ra = next(c for c in t.columns if c.name == "ra")
    assert ra.unit == "deg", ra.unit


@step("a sync error shows the ADQL message with its line and column")
def _():
    try:
        tap.launch_job("SELECT raa FROM ppdb.DiaObject")
    except Exception as e:
        text = str(e)
        # astroquery sends "SELECT  TOP 2000 raa ...": raa is at column 18 of that.
        assert "line 1, column 18" in text and "raa" in text, text
        return
    raise AssertionError("no error")


@step("an async error shows the ADQL message")
def _():
    try:
        tap.launch_job_async("SELECT raa FROM ppdb.DiaObject").get_results()
    except Exception as e:
        text = str(e)
        assert "line 1, column 8" in text and "raa" in text, text
        return
    raise AssertionError("no error")


session.finish()
