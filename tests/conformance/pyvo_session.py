#!/usr/bin/env python3
"""A pyvo session against `ppdb serve`, as a notebook user would run it.

    python tests/conformance/pyvo_session.py http://127.0.0.1:PORT/tap

Checks, each with pyvo itself (no hand-made HTTP): the tables, a sync query,
an async query with wait, a cone crossmatch against an uploaded target list,
MAXREC overflow, an error query, replay through the result's DataLink
service descriptor, a join's wildcard columns under one name each, and the
IVOA Data Origin items of sync, async and replayed results, and each object's
DataLink links. Prints PASS/FAIL per step and exits 1 if any failed.
"""
import sys

import pyvo
from astropy.table import Table
from pyvo.dal.exceptions import DALQueryError

url = sys.argv[1]
service = pyvo.dal.TAPService(url)
failed = []


def step(name, fn):
    try:
        detail = fn()
        print(f"PASS {name}: {detail}")
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def tables():
    names = [t.name for t in service.tables]
    for want in ("ppdb.DiaObject", "ppdb.DiaSource", "ppdb.DiaForcedSource"):
        assert want in names, names
    ra = service.tables["ppdb.DiaObject"].columns
    assert any(c.name == "ra" and str(c.unit) == "deg" for c in ra)
    return f"{len(names)} tables"


TOP = "SELECT TOP 5 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId"


def sync():
    t = service.search(TOP).to_table()
    assert len(t) == 5 and t.colnames == ["diaObjectId", "ra", "dec"], t
    assert str(t["ra"].unit) == "deg"
    return f"{len(t)} rows"


def run_async():
    job = service.submit_job(TOP)
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert job.phase == "COMPLETED", job.phase
    t = job.fetch_result().to_table()
    same = service.search(TOP).to_table()
    assert list(t["diaObjectId"]) == list(same["diaObjectId"])
    job.delete()
    return f"{len(t)} rows, as sync"


def upload():
    objects = service.search(TOP).to_table()
    targets = Table(
        {"tid": list(range(len(objects))), "ra": objects["ra"], "dec": objects["dec"]}
    )
    q = (
        "SELECT u.tid, o.diaObjectId FROM TAP_UPLOAD.targets AS u "
        "JOIN ppdb.DiaObject AS o ON 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), "
        "CIRCLE('ICRS', u.ra, u.dec, 1.0 / 3600)) ORDER BY u.tid"
    )
    t = service.search(q, uploads={"targets": targets}).to_table()
    assert list(t["diaObjectId"]) == list(objects["diaObjectId"]), t
    return f"{len(t)} of {len(targets)} targets matched"


def overflow():
    r = service.search("SELECT diaSourceId FROM ppdb.DiaSource", maxrec=7)
    assert len(r) == 7, len(r)
    assert r.query_status == "OVERFLOW", r.query_status
    return "7 rows, OVERFLOW"


def error():
    try:
        service.search("SELECT nosuchcolumn FROM ppdb.DiaObject")
    except DALQueryError as e:
        assert "line 1, column 8" in str(e), str(e)
        return str(e)[:60]
    raise AssertionError("no error")


JOIN = (
    "SELECT TOP 3 * FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s "
    "ON s.diaObjectId = o.diaObjectId"
)


def join_wildcard():
    # Every column of a join keeps one name (pyvo renamed repeats itself).
    t = service.search(JOIN).to_table()
    assert len(set(t.colnames)) == len(t.colnames), t.colnames
    assert "ra" in t.colnames and "ra_2" in t.colnames, t.colnames
    return f"{len(t.colnames)} distinct columns"


def replay():
    r = service.search(TOP)
    descriptor = r.get_adhocservice_by_id("replay")
    access = next(p.value for p in descriptor.params if p.name == "accessURL")
    replayed = pyvo.dal.DALResults.from_result_url(access)
    first, again = r.to_table(), replayed.to_table()
    for column in first.colnames:
        assert list(again[column]) == list(first[column]), column
    return f"{len(again)} identical rows from {access}"


def infos(results):
    """The INFOs of a result's RESOURCE, by name."""
    return {i.name: i.value for i in results.votable.resources[0].infos}


def data_origin():
    # The IVOA Data Origin items, in a sync result, an async one and a replay.
    import io
    from datetime import datetime, timezone

    import pyarrow.parquet as pq
    from astropy.io.votable import parse

    before = datetime.now(timezone.utc)
    r = service.search(TOP)
    got = infos(r)
    assert got["publisher"], got
    assert got["service_protocol"] == "ivo://ivoa.net/std/TAP", got
    assert got["query"] == TOP, got
    assert got["resource_version"] == got["snapshot"], got
    assert got["request"].startswith(url + "/sync?") and "QUERY=SELECT+TOP+5" in got["request"], got
    asked = datetime.fromisoformat(got["request_date"].replace("Z", "+00:00"))
    assert abs((asked - before).total_seconds()) < 60, (asked, before)
    assert got["citation"] == f"{url}/replay/{got['query_token']}", got
    assert got["server_software"].startswith("ppdb "), got
    # A query's line breaks survive the INFO attribute (a parser reads raw
    # ones as spaces, which would comment out what follows a `--` note).
    noted = "SELECT TOP 1 diaObjectId -- a note\nFROM ppdb.DiaObject\tORDER BY diaObjectId"
    assert infos(service.search(noted))["query"] == noted
    # The citation gives the same rows again.
    again = pyvo.dal.DALResults.from_result_url(got["citation"])
    assert list(again.to_table()["diaObjectId"]) == list(r.to_table()["diaObjectId"])
    assert infos(again)["query"] == TOP and infos(again)["resource_version"] == got["snapshot"]
    job = service.submit_job(TOP)
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    done = infos(job.fetch_result())
    job.delete()
    # An async job's request is its parameters at /sync: the same rows when pasted.
    assert done["request"].startswith(url + "/sync?") and done["query"] == TOP, done
    pasted = pyvo.dal.DALResults.from_result_url(done["request"]).to_table()
    assert list(pasted["diaObjectId"]) == list(r.to_table()["diaObjectId"])
    # CSV has no place for them but its headers; Parquet keeps the VOTable header.
    session = service._session
    csv = session.get(f"{url}/sync", params={"LANG": "ADQL", "QUERY": TOP, "RESPONSEFORMAT": "csv"})
    csv.raise_for_status()
    assert csv.headers["X-Data-Origin-Publisher"] == got["publisher"], csv.headers
    token = csv.headers["X-Query-Token"]
    assert csv.headers["Link"] == f'<{url}/replay/{token}>; rel="cite-as"', csv.headers
    assert csv.headers["X-Data-Origin-Resource-Version"] == got["snapshot"], csv.headers
    pq_bytes = session.get(f"{url}/sync", params={"LANG": "ADQL", "QUERY": TOP, "RESPONSEFORMAT": "parquet"})
    meta = pq.read_metadata(io.BytesIO(pq_bytes.content)).metadata
    header = parse(io.BytesIO(meta[b"IVOA.VOTable-Parquet.content"]))
    inside = {i.name: i.value for i in header.resources[0].infos}
    assert inside["query"] == TOP and inside["publisher"] == got["publisher"], inside
    return f"{len(got)} INFOs, citation {got['citation']}"


def datalinks():
    # Each object's links (DataLink 1.1, found by pyvo through the result's
    # service descriptor) give its light curve at the result's snapshot.
    r = service.search(TOP)
    snapshot = infos(r)["snapshot"]
    seen = 0
    for row, links in zip(r, r.iter_datalinks()):
        by = {link.description.split(":")[0]: link for link in links}
        assert set(by) == {"the object", "light curve", "forced photometry"}, list(by)
        assert f"AS_OF={snapshot}" in by["light curve"].access_url, by["light curve"].access_url
        object_id = row["diaObjectId"]
        curve = pyvo.dal.DALResults.from_result_url(by["light curve"].access_url).to_table()
        direct = service.search(
            f"SELECT diaSourceId FROM ppdb.DiaSource WHERE diaObjectId = {object_id}"
        ).to_table()
        assert sorted(curve["diaSourceId"]) == sorted(direct["diaSourceId"]), object_id
        assert list(curve["midpointMjdTai"]) == sorted(curve["midpointMjdTai"])
        this = pyvo.dal.DALResults.from_result_url(by["the object"].access_url).to_table()
        assert list(this["diaObjectId"]) == [object_id], this
        seen += 1
    assert seen == 5, seen
    return f"{seen} objects, each with its light curve and forced photometry"


def visit_links():
    # A detector-visit's links: its images by the operator's template (see
    # server/tests/conformance.rs), its DiaSources as the same ADQL.
    first = service.search("SELECT TOP 1 visit, detector FROM ppdb.DiaSource ORDER BY diaSourceId").to_table()
    visit, detector = int(first["visit"][0]), int(first["detector"][0])
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(f"{url}/links?ID={visit}/{detector}")
    rows = list(links)
    assert [r.semantics for r in rows] == ["#this", "#derivation", "#auxiliary", "#derivation", "#derivation"], rows
    this = [r for r in rows if r.semantics == "#this"][0]
    assert this.access_url == f"https://images.example.org/calexp/{visit}/{detector}", this.access_url
    assert this.content_type == "image/fits", this.content_type
    sources = [r for r in rows if r.description.startswith("DiaSources")][0]
    got = pyvo.dal.DALResults.from_result_url(sources.access_url).to_table()
    direct = service.search(
        f"SELECT diaSourceId FROM ppdb.DiaSource WHERE visit = {visit} AND detector = {detector}"
    ).to_table()
    assert len(got) > 0 and sorted(got["diaSourceId"]) == sorted(direct["diaSourceId"])
    bad = pyvo.dal.adhoc.DatalinkResults.from_result_url(f"{url}/links?ID=abc")
    assert "neither a diaObjectId" in list(bad)[0].error_message
    return f"visit {visit} detector {detector}: {len(got)} DiaSources"


for name, fn in [
    ("tables", tables),
    ("sync", sync),
    ("async with wait", run_async),
    ("upload crossmatch", upload),
    ("MAXREC overflow", overflow),
    ("error query", error),
    ("replay through the service descriptor", replay),
    ("a join's wildcard columns keep one name each", join_wildcard),
    ("Data Origin in VOTable, CSV headers and Parquet", data_origin),
    ("DataLink links of each object", datalinks),
    ("DataLink links of a detector-visit", visit_links),
]:
    step(name, fn)
print(f"pyvo-session: {11 - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
