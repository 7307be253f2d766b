"""The web page in a real browser: Debian's chromium, headless, driven by
Playwright (no browser download: it runs /usr/bin/chromium). Every check
reads the DOM, no screenshot.

Usage: page_session.py BASE_URL CHROMIUM FOOTPRINTS_URL
(prints "page-session: N passed, M failed"); FOOTPRINTS_URL serves a catalog
whose detector-visits have corners, with no embargo.
"""

import json
import math
import sys
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

from session import Session

BASE = sys.argv[1].rstrip("/")
CHROMIUM = sys.argv[2]
FOOTPRINTS = sys.argv[3].rstrip("/")
session = Session("page-session")
step = session.step


def query_url(adql, maxrec=None, base=BASE):
    q = {"query": adql}
    if maxrec is not None:
        q["maxrec"] = str(maxrec)
    return f"{base}/?{urllib.parse.urlencode(q)}"


def tap_json(adql, maxrec=100000, base=BASE):
    body = urllib.parse.urlencode(
        {"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": "json", "MAXREC": str(maxrec)}
    ).encode()
    with urllib.request.urlopen(f"{base}/tap/sync", body, timeout=120) as r:
        return json.loads(r.read())


def settled(page):
    """Waits until the page has answered (rows, or an error)."""
    page.wait_for_function(
        "() => { const s = document.getElementById('status').textContent;"
        " return s && !s.startsWith('running') && !s.startsWith('replaying'); }",
        timeout=60000,
    )


def cells(page, row):
    return page.eval_on_selector_all(
        f"#result tbody tr:nth-child({row}) td", "tds => tds.map(t => t.textContent)"
    )


TOP3 = "SELECT TOP 3 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId"

with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )
    page = browser.new_page()
    page.on("pageerror", lambda e: print(f"page error: {e}"))

    @step("a query shows its rows, token, snapshot and pinned ADQL")
    def _():
        page.goto(query_url(TOP3))
        settled(page)
        assert "3 rows" in page.text_content("#status"), page.text_content("#status")
        heads = page.eval_on_selector_all("#result thead th", "ths => ths.map(t => t.firstChild.textContent)")
        assert heads == ["diaObjectId", "ra", "dec"], heads
        assert page.locator("#result tbody tr").count() == 3
        assert cells(page, 1)[0] == "1000000006", cells(page, 1)
        assert len(page.text_content("#token")) == 20
        assert page.is_visible("#token-box")
        snapshot = page.text_content("#snapshot")
        assert snapshot.startswith("snapshot 12 ("), snapshot
        assert "FOR SYSTEM_TIME AS OF 12" in page.text_content("#pinned"), page.text_content("#pinned")

    @step("the 'as VOTable' link gives a VOTable")
    def _():
        href = page.get_attribute("#votable", "href")
        r = page.request.get(BASE + href)
        assert r.ok and r.headers["content-type"].startswith("application/x-votable+xml"), r.headers
        assert "<VOTABLE" in r.text() and "<BINARY2>" in r.text()

    @step("the replay link shows the same rows, checked against the record")
    def _():
        table = page.inner_html("#result")
        href = page.get_attribute("#replay", "href")
        page.goto(BASE + href)
        settled(page)
        page.wait_for_function("() => document.getElementById('snapshot').textContent.includes('checksum')")
        assert page.inner_html("#result") == table
        note = page.text_content("#snapshot")
        assert "snapshot 12" in note and "checked against checksum" in note, note
        assert "FOR SYSTEM_TIME AS OF 12" in page.text_content("#pinned")

    @step("an error clears the previous result and its token")
    def _():
        page.goto(query_url(TOP3))
        settled(page)
        assert page.locator("#result tbody tr").count() == 3
        page.fill("#adql", "SELECT raa FROM ppdb.DiaObject")
        page.click("#run")
        settled(page)
        text = page.text_content("#status")
        assert "line 1, column 8" in text and page.get_attribute("#status", "class") == "error", text
        assert page.locator("#result tr").count() == 0
        assert not page.is_visible("#token-box")
        assert page.text_content("#token") == "" and page.text_content("#pinned") == ""
        assert not page.is_visible("#sky")

    @step("every column shows, NULLs included (103 of DiaSource)")
    def _():
        meta = tap_json("SELECT TOP 1 * FROM ppdb.DiaSource")["metadata"]
        page.goto(query_url("SELECT TOP 5 * FROM ppdb.DiaSource"))
        settled(page)
        heads = page.eval_on_selector_all("#result thead th", "ths => ths.map(t => t.firstChild.textContent)")
        assert heads == [m["name"] for m in meta] and len(heads) == 103, (len(heads), len(meta))
        assert "timeWithdrawnMjdTai" in heads
        assert all(len(cells(page, r)) == 103 for r in range(1, 6))
        unit = page.eval_on_selector_all("#result thead th", "ths => ths.map(t => t.textContent)")
        assert any(h == "ra [deg]" for h in unit), unit[:10]

    @step("64-bit ids show every digit")
    def _():
        page.goto(query_url(
            "SELECT TOP 1 CAST(3068394359484713006 AS BIGINT) AS big, "
            "CAST(-9223372036854775807 AS BIGINT) AS low, 0.1234567890123456789 AS x FROM ppdb.DiaObject"))
        settled(page)
        row = cells(page, 1)
        assert row[0] == "3068394359484713006" and row[1] == "-9223372036854775807", row
        assert float(row[2]) == 0.12345678901234568, row

    @step("a MAXREC cut is said")
    def _():
        page.goto(query_url("SELECT diaObjectId FROM ppdb.DiaObject", maxrec=5))
        settled(page)
        assert page.locator("#result tbody tr").count() == 5
        assert page.is_visible("#overflow"), page.text_content("#status")
        assert "MAXREC cut the result at 5 rows" in page.text_content("#overflow")
        page.goto(query_url("SELECT TOP 5 diaObjectId FROM ppdb.DiaObject", maxrec=100))
        settled(page)
        assert not page.is_visible("#overflow")

    @step("the sky plot has axes, a scale and cos(dec) applied")
    def _():
        page.goto(query_url("SELECT ra, dec FROM ppdb.DiaObject", maxrec=5000))
        settled(page)
        sky = page.locator("#sky")
        assert sky.is_visible()
        n = len(tap_json("SELECT ra, dec FROM ppdb.DiaObject", 5000)["data"])
        assert int(sky.get_attribute("data-points")) == n, sky.get_attribute("data-points")
        # The sample is at Dec -30: a degree of RA is drawn cos(30°) as wide.
        assert abs(float(sky.get_attribute("data-cosdec")) - math.cos(math.radians(30))) < 0.02
        titles = page.eval_on_selector_all("#sky .axis-title", "ts => ts.map(t => t.textContent)")
        assert titles == ["RA [deg]", "Dec [deg]"], titles
        ra_ticks = page.eval_on_selector_all("#sky .axis.x .tick-label", "ts => ts.map(t => +t.textContent)")
        dec_ticks = page.eval_on_selector_all("#sky .axis.y .tick-label", "ts => ts.map(t => +t.textContent)")
        assert len(ra_ticks) >= 2 and len(dec_ticks) >= 2, (ra_ticks, dec_ticks)
        xs = page.eval_on_selector_all("#sky .axis.x line", "ls => ls.map(l => +l.getAttribute('x1'))")
        # RA grows to the left; the sample's RA and Dec are around 55 and -30.
        assert sorted(ra_ticks) == ra_ticks and sorted(xs, reverse=True) == xs, (ra_ticks, xs)
        assert all(54 < r < 56 for r in ra_ticks), ra_ticks
        assert all(-31 < d < -29 for d in dec_ticks), dec_ticks
        # On screen a degree of RA is cos(dec) of a degree of Dec.
        ys = page.eval_on_selector_all("#sky .axis.y line", "ls => ls.map(l => +l.getAttribute('y1'))")
        px_per_ra = abs(xs[1] - xs[0]) / abs(ra_ticks[1] - ra_ticks[0])
        px_per_dec = abs(ys[1] - ys[0]) / abs(dec_ticks[1] - dec_ticks[0])
        assert abs(px_per_ra / px_per_dec - math.cos(math.radians(30))) < 0.02, (px_per_ra, px_per_dec)
        assert page.text_content("#sky .scale-label"), "a scale bar"

    @step("a light curve gets a plot of flux against time, by band")
    def _():
        lc = tap_json(
            "SELECT TOP 1 diaObjectId FROM ppdb.DiaObject ORDER BY nDiaSources DESC, diaObjectId")["data"][0][0]
        adql = (f"SELECT diaSourceId, midpointMjdTai, band, psfFlux, psfFluxErr FROM ppdb.DiaSource "
                f"WHERE diaObjectId = {lc} ORDER BY midpointMjdTai")
        rows = tap_json(adql)["data"]
        page.goto(query_url(adql))
        settled(page)
        plot = page.locator("#lightcurve")
        assert plot.is_visible()
        assert int(plot.get_attribute("data-points")) == len(rows) > 1, rows
        titles = page.eval_on_selector_all("#lightcurve .axis-title", "ts => ts.map(t => t.textContent)")
        assert titles == ["midpointMjdTai [d]", "psfFlux [nJy]"], titles
        bands = sorted(page.eval_on_selector_all("#lightcurve .points", "ps => ps.map(p => p.dataset.band)"))
        assert bands == sorted({r[2] for r in rows}), bands
        # Each band in its own colour, as drawn, and named in the legend.
        colours = page.eval_on_selector_all(
            "#lightcurve .points", "ps => ps.map(p => getComputedStyle(p).stroke)")
        assert len(set(colours)) == len(bands), colours
        legend = sorted(page.eval_on_selector_all("#lightcurve .legend", "ts => ts.map(t => t.textContent)"))
        assert legend == bands, legend
        # Rows of several objects are not one light curve.
        page.goto(query_url("SELECT TOP 50 diaObjectId, midpointMjdTai, psfFlux FROM ppdb.DiaSource"))
        settled(page)
        assert not page.is_visible("#lightcurve")
        assert "several objects" in page.text_content("#lightcurve-note")

    @step("the sky plot draws the table's coverage, a MOC mocpy reads the same")
    def _():
        import numpy as np
        from astropy import units as u
        from mocpy import MOC

        page.goto(query_url("SELECT ra, dec FROM ppdb.DiaObject", maxrec=5000))
        settled(page)
        assert page.is_visible("#coverage-box")
        page.check("#show-coverage")
        page.wait_for_selector("#sky .coverage path")
        g = page.locator("#sky .coverage")
        order, cells = int(g.get_attribute("data-order")), int(g.get_attribute("data-cells"))
        url = f"{BASE}/tap/coverage/tables/ppdb.DiaObject?ORDER={order}&FORMAT=json&AS_OF=12"
        with urllib.request.urlopen(url, timeout=60) as r:
            area = float(r.headers["X-Coverage-Area-Deg2"])
            moc = MOC.from_json(json.loads(r.read()))
        # Every object's position is in a drawn cell's MOC, as mocpy reads it.
        rows = tap_json("SELECT ra, dec FROM ppdb.DiaObject")["data"]
        ra, dec = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        assert moc.contains_lonlat(ra * u.deg, dec * u.deg).all()
        listed = sum(len(v) for v in json.loads(urllib.request.urlopen(url).read()).values())
        assert cells == listed, (cells, listed)
        note = page.text_content("#coverage-note")
        assert f"{cells} cells of order {order}" in note and "deg²" in note, note
        assert abs(float(note.split(", ")[1].split(" deg²")[0]) - area) <= 1e-3 * area, (note, area)
        # The page's HEALPix corners, checked against mocpy: each corner, pulled
        # 1 % towards the cell's centre, lies in the one-cell MOC, in polar,
        # equatorial and boundary faces.
        probes = [(0, 0), (1, 17), (3, 0), (3, 383), (3, 767), (6, 20000), (8, 400000), (10, 12582911)]
        got = page.evaluate(f"() => {json.dumps(probes)}.map(([o, i]) => healpixCorners(o, i))")
        for (o, i), corners in zip(probes, got):
            one = MOC.from_healpix_cells(np.array([i]), np.array([o]), max_depth=o)
            v = np.array([[math.cos(math.radians(d)) * math.cos(math.radians(a)),
                           math.cos(math.radians(d)) * math.sin(math.radians(a)),
                           math.sin(math.radians(d))] for a, d in corners])
            centre = v.mean(axis=0)
            inner = 0.99 * v + 0.01 * centre
            lon = np.degrees(np.arctan2(inner[:, 1], inner[:, 0])) % 360
            lat = np.degrees(np.arcsin(inner[:, 2] / np.linalg.norm(inner, axis=1)))
            assert one.contains_lonlat(lon * u.deg, lat * u.deg).all(), (o, i, corners)
        page.uncheck("#show-coverage")
        assert page.locator("#sky .coverage").count() == 0

    @step("the sky plot draws where detectors looked, the MOC mocpy draws from their corners")
    def _():
        from astropy.coordinates import SkyCoord
        from mocpy import MOC

        page.goto(query_url("SELECT ra, dec FROM ppdb.DiaObject", maxrec=5000, base=FOOTPRINTS))
        settled(page)
        assert page.is_visible("#footprints-box")
        page.check("#show-footprints")
        page.wait_for_selector("#sky .footprints path")
        g = page.locator("#sky .footprints")
        order, cells = int(g.get_attribute("data-order")), int(g.get_attribute("data-cells"))
        assert int(g.get_attribute("data-drawn")) > 0
        corners = "llcra, llcdec, ulcra, ulcdec, urcra, urcdec, lrcra, lrcdec"
        rows = tap_json(f"SELECT {corners} FROM ppdb.DetectorVisitProcessingSummary", base=FOOTPRINTS)["data"]
        polygons = [SkyCoord([r[0], r[2], r[4], r[6]], [r[1], r[3], r[5], r[7]], unit="deg") for r in rows]
        mocs = MOC.from_polygons(polygons, max_depth=order)
        theirs = mocs[0].union(*mocs[1:])
        url = f"{FOOTPRINTS}/tap/coverage/footprints?ORDER={order}&FORMAT=json"
        with urllib.request.urlopen(url, timeout=60) as r:
            served = json.loads(r.read())
        assert MOC.from_json(served) == theirs
        assert cells == sum(len(v) for v in served.values()), cells
        note = page.text_content("#footprints-note")
        assert f"footprints of {len(rows)} detector-visits: {cells} cells of order {order}" in note, note
        page.uncheck("#show-footprints")
        assert page.locator("#sky .footprints").count() == 0

    @step("14 000 rows show at once, a page at a time")
    def _():
        total = len(tap_json("SELECT diaSourceId, ra, dec FROM ppdb.DiaSource", 20000)["data"])
        page.goto(query_url("SELECT diaSourceId, ra, dec FROM ppdb.DiaSource", maxrec=20000))
        settled(page)
        assert f"{total:,} rows" in page.text_content("#status"), page.text_content("#status")
        shown = page.locator("#result tbody tr").count()
        assert shown == 500, shown
        assert page.is_visible("#more") and f"({total - 500} not shown)" in page.text_content("#more")
        page.click("#more")
        assert page.locator("#result tbody tr").count() == 1000
        # Scrolling to the end of the table brings the next page.
        page.eval_on_selector("#scroll", "s => { s.scrollTop = s.scrollHeight; s.dispatchEvent(new Event('scroll')); }")
        page.wait_for_function("() => document.querySelectorAll('#result tbody tr').length === 1500")
        print(f"     ({total} rows: drawn in {page.get_attribute('#status', 'data-render-ms')} ms)")

    browser.close()

session.finish()
