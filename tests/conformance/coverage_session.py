#!/usr/bin/env python3
"""Coverage MOCs read back with mocpy and checked against footprints and
positions computed here, from rows fetched with pyvo.

    python tests/conformance/coverage_session.py http://127.0.0.1:PORT/tap BEARER

The server must serve a catalog whose detector-visits have corners, with an
embargo that hides some of them from anonymous callers; BEARER is a token of
a privileged user. Prints one line per step and exits 1 if any failed.
"""
import io
import sys
import tempfile

import numpy as np
import pyvo
import requests
from astropy.coordinates import SkyCoord
from astropy.time import Time
from mocpy import MOC, STMOC
from session import Session

url, bearer = sys.argv[1], sys.argv[2]
service = pyvo.dal.TAPService(url)
privileged = requests.Session()
privileged.headers["Authorization"] = f"Bearer {bearer}"
anonymous = requests.Session()
session = Session("coverage-session")
ORDER = 8
CORNERS = "llcra, llcdec, ulcra, ulcdec, urcra, urcdec, lrcra, lrcdec"


def fetch(session, path, **params):
    r = session.get(f"{url}/coverage/{path}", params=params, timeout=120)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r


def read_fits(body):
    with tempfile.NamedTemporaryFile(suffix=".fits") as f:
        f.write(body)
        f.flush()
        return MOC.from_fits(f.name)


def footprints_of(rows):
    """The union of the detectors' polygons, drawn by mocpy."""
    polygons = [
        SkyCoord([r[0], r[2], r[4], r[6]], [r[1], r[3], r[5], r[7]], unit="deg") for r in rows
    ]
    mocs = MOC.from_polygons(polygons, max_depth=ORDER)
    return mocs[0].union(*mocs[1:])


def corners(session_service, where=""):
    t = session_service.search(
        f"SELECT {CORNERS} FROM ppdb.DetectorVisitProcessingSummary {where}", maxrec=10_000_000
    ).to_table()
    return [tuple(float(row[c]) for c in t.colnames) for row in t]


def footprints():
    # What an anonymous caller is shown: only the detector-visits it may see.
    r = fetch(anonymous, "footprints", ORDER=ORDER)
    ours = read_fits(r.content)
    rows = corners(service)
    theirs = footprints_of(rows)
    assert ours == theirs, (ours.sky_fraction, theirs.sky_fraction)
    assert int(r.headers["X-Coverage-Rows"]) == len(rows), r.headers
    area = ours.sky_fraction * 4 * np.pi * (180 / np.pi) ** 2
    assert abs(float(r.headers["X-Coverage-Area-Deg2"]) - area) < 1e-3 * area, (r.headers, area)
    return f"{len(rows)} detector-visits, {area:.2f} deg² at order {ORDER}, as mocpy draws them"


def embargo():
    # A privileged caller sees the embargoed visits too: a larger footprint,
    # and the anonymous one is inside it.
    mine = fetch(privileged, "footprints", ORDER=ORDER)
    theirs = fetch(anonymous, "footprints", ORDER=ORDER)
    full, shown = read_fits(mine.content), read_fits(theirs.content)
    assert int(mine.headers["X-Coverage-Rows"]) > int(theirs.headers["X-Coverage-Rows"]), (
        mine.headers,
        theirs.headers,
    )
    assert shown.intersection(full) == shown and full != shown
    # The privileged coverage's token replays for its owner, never for others.
    token = mine.headers["X-Query-Token"]
    # Without ORDER, a replay draws at the order the coverage was drawn at.
    again = fetch(privileged, f"replay/{token}")
    assert read_fits(again.content) == full
    refused = anonymous.get(f"{url}/coverage/replay/{token}", params={"ORDER": ORDER}, timeout=60)
    assert refused.status_code in (403, 404), refused.status_code
    assert "llcra" not in refused.text and "visit" not in refused.text, refused.text
    # The embargo's nights are not news either: 'last' is the last night shown.
    last = fetch(anonymous, "footprints", ORDER=ORDER, NIGHT="last")
    last_rows = int(last.headers["X-Coverage-Rows"])
    assert 0 < last_rows < int(theirs.headers["X-Coverage-Rows"]), last.headers
    return f"{mine.headers['X-Coverage-Rows']} visible to the owner, {theirs.headers['X-Coverage-Rows']} to others"


def nights_and_templates():
    # One night is its visits by day_obs; with and without DIA rows split it.
    t = service.search(
        "SELECT MIN(visit) AS v FROM ppdb.DetectorVisitProcessingSummary", maxrec=10
    ).to_table()
    visit = int(t["v"][0])
    day = str(visit // 100000)
    night = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    lo, hi = int(day) * 100000, (int(day) + 1) * 100000
    rows = corners(service, f"WHERE visit >= {lo} AND visit < {hi}")
    ours = read_fits(fetch(anonymous, "footprints", ORDER=ORDER, NIGHT=night).content)
    assert ours == footprints_of(rows)
    dia = (
        "EXISTS (SELECT 1 FROM ppdb.DiaSource AS s WHERE s.visit = d.visit AND s.detector = d.detector) "
        "OR EXISTS (SELECT 1 FROM ppdb.DiaForcedSource AS f WHERE f.visit = d.visit AND f.detector = d.detector)"
    )
    with_rows = service.search(
        f"SELECT {', '.join('d.' + c.strip() for c in CORNERS.split(','))} "
        f"FROM ppdb.DetectorVisitProcessingSummary AS d WHERE {dia}",
        maxrec=10_000_000,
    ).to_table()
    with_dia = read_fits(fetch(anonymous, "footprints", ORDER=ORDER, DIA="with").content)
    assert with_dia == footprints_of([tuple(float(x) for x in r) for r in with_rows])
    without = fetch(anonymous, "footprints", ORDER=ORDER, DIA="without")
    total = len(corners(service))
    assert int(without.headers["X-Coverage-Rows"]) + len(with_rows) == total
    return f"night {night}: {len(rows)} detector-visits; {len(with_rows)} of {total} made DIA rows"


def table_coverage():
    # A table's coverage is the cells of its positions, as mocpy computes them.
    t = service.search("SELECT ra, dec FROM ppdb.DiaObject", maxrec=10_000_000).to_table()
    theirs = MOC.from_lonlat(
        np.asarray(t["ra"]) * 1.0 * MOC_DEG, np.asarray(t["dec"]) * 1.0 * MOC_DEG, max_norder=ORDER
    )
    fits = fetch(anonymous, "tables/DiaObject", ORDER=ORDER)
    ours = read_fits(fits.content)
    assert ours == theirs, (ours.sky_fraction, theirs.sky_fraction)
    # The same MOC in every serialisation mocpy reads.
    as_json = MOC.from_json(fetch(anonymous, "tables/DiaObject", ORDER=ORDER, FORMAT="json").json())
    as_text = MOC.from_str(fetch(anonymous, "tables/DiaObject", ORDER=ORDER, FORMAT="ascii").text)
    assert as_json == ours and as_text == ours
    # As TAP takes parameters: a form POST gives the same MOC.
    posted = anonymous.post(f"{url}/coverage/tables/DiaObject", data={"ORDER": ORDER}, timeout=60)
    assert posted.status_code == 200 and read_fits(posted.content) == ours, posted.status_code
    return f"{len(t)} objects in {int(fits.headers['X-Coverage-Cells'])} cells, FITS = JSON = ASCII"


def growth():
    # Night by night: the areas of each night, the new and the cumulative
    # ones, against MOCs of the same nights read with mocpy.
    r = anonymous.get(f"{url}/coverage/growth", params={"ORDER": ORDER}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    nights = body["nights"]
    assert len(nights) >= 2, body
    so_far = None
    for n in nights:
        one = read_fits(fetch(anonymous, "footprints", ORDER=ORDER, NIGHT=n["night"]).content)
        so_far = one if so_far is None else so_far.union(one)
        deg2 = 4 * np.pi * (180 / np.pi) ** 2
        assert abs(one.sky_fraction * deg2 - n["area_deg2"]) < 1e-6 * deg2, n
        assert abs(so_far.sky_fraction * deg2 - n["cumulative_area_deg2"]) < 1e-6 * deg2, n
    # Its token gives the same nights again.
    again = anonymous.get(body["replay"], timeout=120).json()
    assert again["nights"] == nights and again["snapshot"] == body["snapshot"]
    return f"{len(nights)} nights, {nights[-1]['cumulative_area_deg2']:.2f} deg² in all"


def space_time():
    # The ST-MOC: each detector-visit's footprint over its exposure, 30 s
    # around its visit's DIA midpoint (TAI), as mocpy builds it from rows
    # fetched here, with astropy converting the times to TCB.
    dv = service.search(
        f"SELECT visit, {CORNERS} FROM ppdb.DetectorVisitProcessingSummary", maxrec=10_000_000
    ).to_table()
    mid = {}
    for table in ("DiaSource", "DiaForcedSource"):
        t = service.search(
            f"SELECT visit, MIN(midpointMjdTai) AS a, MAX(midpointMjdTai) AS b FROM ppdb.{table} GROUP BY visit",
            maxrec=10_000_000,
        ).to_table()
        for row in t:
            v, a, b = int(row["visit"]), float(row["a"]), float(row["b"])
            lo, hi = mid.get(v, (a, b))
            mid[v] = (min(a, lo), max(b, hi))
    timed = [r for r in dv if int(r["visit"]) in mid]
    assert timed, "no detector-visit has a time"
    names = CORNERS.split(", ")
    rows = [tuple(float(r[c]) for c in names) for r in timed]
    polygons = [SkyCoord([r[0], r[2], r[4], r[6]], [r[1], r[3], r[5], r[7]], unit="deg") for r in rows]
    starts = Time([mid[int(r["visit"])][0] for r in timed], format="mjd", scale="tai") - 15 * u.s
    ends = Time([mid[int(r["visit"])][1] for r in timed], format="mjd", scale="tai") + 15 * u.s
    theirs = STMOC.from_spatial_coverages(
        starts.tcb, ends.tcb, MOC.from_polygons(polygons, max_depth=ORDER), time_depth=40
    )
    r = fetch(anonymous, "space-time", ORDER=ORDER)
    assert r.headers["X-Coverage-Time-Order"] == "40", r.headers
    assert int(r.headers["X-Coverage-Rows"]) == len(dv), r.headers
    assert int(r.headers["X-Coverage-Without-Time"]) == len(dv) - len(timed), r.headers
    with tempfile.NamedTemporaryFile(suffix=".fits") as f:
        f.write(r.content)
        f.flush()
        assert STMOC.load(f.name, "fits") == theirs
    for fmt in ("json", "ascii"):
        text = fetch(anonymous, "space-time", ORDER=ORDER, FORMAT=fmt).text
        assert STMOC.from_string(text, fmt) == theirs, fmt
    # Seen from the privileged side, the embargoed visits are there too; the
    # anonymous ST-MOC ends before the privileged one.
    full = read_stmoc(fetch(privileged, "space-time", ORDER=ORDER).content)
    assert full.max_time > theirs.max_time, (full.max_time.iso, theirs.max_time.iso)
    # Its token draws it again.
    again = read_stmoc(anonymous.get(r.links["cite-as"]["url"], timeout=120).content)
    assert again == theirs
    # A time window (MJD, TAI) takes the visits whose exposure overlaps it:
    # here, the second visit's alone.
    second = sorted(mid)[1]
    t0, t1 = mid[second]
    window = fetch(anonymous, "footprints", ORDER=ORDER, TIME=f"{t0 - 10 / 86400} {t1 + 10 / 86400}")
    rows = [tuple(float(r[c]) for c in names) for r in timed if int(r["visit"]) == second]
    assert read_fits(window.content) == footprints_of(rows)
    assert int(window.headers["X-Coverage-Rows"]) == len(rows), window.headers
    return f"{len(timed)} detector-visits in time, equal to mocpy's in FITS, JSON and ASCII"


def read_stmoc(body):
    with tempfile.NamedTemporaryFile(suffix=".fits") as f:
        f.write(body)
        f.flush()
        return STMOC.load(f.name, "fits")


def refusals():
    for path, params, status in [
        ("footprints", {"ORDER": 30}, 400),
        ("footprints", {"NIGHT": "2025-02-30"}, 400),
        ("footprints", {"DIA": "maybe"}, 400),
        ("tables/SSObject", {}, 400),
        ("tables/NoSuchTable", {}, 400),
        ("footprints", {"FORMAT": "png"}, 400),
        ("replay/aaaaaaaaaaaaaaaaaaaa", {}, 404),
        ("footprints", {"UNTIL": "2025-11-27"}, 400),
        ("footprints", {"NIGHT": "2025-11-28", "UNTIL": "2025-11-26"}, 400),
        ("space-time", {"TIME_ORDER": 62}, 400),
        ("footprints", {"TIME": "61001"}, 400),
        ("footprints", {"TIME": "61002 61001"}, 400),
        ("space-time", {"TIME": "61000 61001", "NIGHT": "last"}, 400),
    ]:
        r = anonymous.get(f"{url}/coverage/{path}", params=params, timeout=60)
        assert r.status_code == status, (path, params, r.status_code, r.text)
        assert r.text.strip(), (path, params)
    return "13 bad requests, each told why"


def obscore():
    # ivoa.ObsCore, as an ObsTAP client reads it: the calexps are the
    # detector-visits the caller may see, s_region is their corners as STC-S,
    # and access_url is each one's DataLink.
    mine = pyvo.dal.TAPService(url, session=privileged)
    counts = {}
    for who, svc in (("anonymous", service), ("privileged", mine)):
        t = svc.search(
            "SELECT obs_id, s_region, access_url FROM ivoa.ObsCore WHERE dataproduct_subtype = 'lsst.calexp'",
            maxrec=10_000_000,
        ).to_table()
        dv = svc.search(
            f"SELECT visit, detector, {CORNERS} FROM ppdb.DetectorVisitProcessingSummary", maxrec=10_000_000
        ).to_table()
        assert len(t) == len(dv) > 0, (who, len(t), len(dv))
        by_id = {f"{r['visit']}/{r['detector']}": r for r in dv}
        assert set(str(i) for i in t["obs_id"]) == set(by_id), who
        row = t[0]
        words = str(row["s_region"]).split()
        assert words[:2] == ["Polygon", "ICRS"], words
        d = by_id[str(row["obs_id"])]
        assert [float(w) for w in words[2:]] == [float(d[c]) for c in CORNERS.split(", ")], words
        counts[who] = len(t)
    assert counts["privileged"] > counts["anonymous"], counts
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(str(row["access_url"]), session=privileged)
    derivations = [l for l in links if l.semantics == "#derivation"]
    assert len(derivations) == 2, [l.semantics for l in links]
    # Difference images only where DIA rows were made.
    diff = service.search(
        "SELECT COUNT(*) AS n FROM ivoa.ObsCore WHERE dataproduct_subtype = 'lsst.difference_image'"
    ).to_table()
    made = service.search(
        "SELECT COUNT(*) AS n FROM ppdb.DetectorVisitProcessingSummary AS d WHERE EXISTS "
        "(SELECT 1 FROM ppdb.DiaSource AS s WHERE s.visit = d.visit AND s.detector = d.detector) OR EXISTS "
        "(SELECT 1 FROM ppdb.DiaForcedSource AS f WHERE f.visit = d.visit AND f.detector = d.detector)"
    ).to_table()
    assert int(diff["n"][0]) == int(made["n"][0]) > 0
    # Times and bands: the visit's DIA midpoint +-15 s and its filter's edges.
    edges = {"u": (3.3e-7, 4.0e-7), "g": (4.02e-7, 5.52e-7), "r": (5.52e-7, 6.91e-7),
             "i": (6.91e-7, 8.18e-7), "z": (8.18e-7, 9.22e-7), "y": (9.22e-7, 1.06e-6)}
    dia = {}
    for table in ("DiaSource", "DiaForcedSource"):
        for row in service.search(
            f"SELECT DISTINCT visit, midpointMjdTai, band FROM ppdb.{table}", maxrec=10_000_000
        ).to_table():
            dia.setdefault(int(row["visit"]), set()).add((float(row["midpointMjdTai"]), str(row["band"])))
    found = service.search(
        "SELECT obs_id, t_min, t_max, t_exptime, em_min, em_max FROM ivoa.ObsCore", maxrec=10_000_000
    )
    # Their time scale is in the VOTable: t_min and t_max refer to a TIMESYS of TAI MJDs.
    systems = {t.ID: t for t in found.votable.resources[0].time_systems}
    for f in found.votable.get_first_table().fields:
        if f.name in ("t_min", "t_max"):
            assert systems[f.ref].timescale == "TAI" and systems[f.ref].timeorigin in (2400000.5, "MJD-origin"), (f, systems[f.ref].timeorigin)
    oc = found.to_table()
    timed = 0
    for row in oc:
        seen = dia.get(int(str(row["obs_id"]).split("/")[0]))
        if not seen:
            assert np.ma.is_masked(row["t_min"]) and np.ma.is_masked(row["em_min"]), row
            continue
        assert len(seen) == 1, seen  # one exposure, one band per visit
        (mid, band), = seen
        assert abs(float(row["t_min"]) - (mid - 15 / 86400)) < 1e-9, (row, mid)
        assert abs(float(row["t_max"]) - (mid + 15 / 86400)) < 1e-9, (row, mid)
        assert float(row["t_exptime"]) == 30.0, row
        assert (float(row["em_min"]), float(row["em_max"])) == edges[band], (row, band)
        timed += 1
    assert timed > 0
    # The ObsTAP spatial searches on s_region (STC-S text): every detector's
    # centre is inside its own region, and a small circle there finds it.
    inside = service.search(
        "SELECT COUNT(*) AS n FROM ivoa.ObsCore WHERE dataproduct_subtype = 'lsst.calexp' "
        "AND CONTAINS(POINT('ICRS', s_ra, s_dec), s_region) = 1"
    ).to_table()
    assert int(inside["n"][0]) == counts["anonymous"], (inside, counts)
    d = service.search(
        f"SELECT TOP 1 visit, detector, {CORNERS} FROM ppdb.DetectorVisitProcessingSummary"
    ).to_table()[0]
    hit = service.search(
        "SELECT obs_id FROM ivoa.ObsCore WHERE dataproduct_subtype = 'lsst.calexp' AND "
        f"INTERSECTS(s_region, CIRCLE('ICRS', {float(d['llcra'])}, {float(d['llcdec'])}, 0.0001)) = 1",
        maxrec=100_000,
    ).to_table()
    assert f"{d['visit']}/{d['detector']}" in {str(i) for i in hit["obs_id"]}, hit
    return (f"{counts['anonymous']} calexps shown to others, {counts['privileged']} to the owner; "
            f"{timed} images dated and banded by their visit's DIA rows")


from astropy import units as u  # noqa: E402

MOC_DEG = u.deg

for name, fn in [
    ("footprints as mocpy draws them", footprints),
    ("the embargo holds", embargo),
    ("a night, and detector-visits with and without DIA rows", nights_and_templates),
    ("a table's coverage in FITS, JSON and ASCII", table_coverage),
    ("growth night by night", growth),
    ("where and when: the space-time MOC", space_time),
    ("refusals", refusals),
    ("ivoa.ObsCore of the detector-visits, under the embargo", obscore),
]:
    session.step(name)(fn)
session.finish()
