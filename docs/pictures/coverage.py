#!/usr/bin/env python3
"""Draws docs/pictures/coverage.png: the coverage requests of docs/coverage.md
as mocpy reads them from a running `ppdb serve`.

    ppdb sample --out /tmp/chunks --objects 3000 --nights 3 --visits-per-night 6 --visits-per-chunk 2
    ppdb ingest --catalog /tmp/cat /tmp/chunks
    ppdb serve --catalog /tmp/cat --listen 127.0.0.1:8080 &
    python docs/pictures/coverage.py http://127.0.0.1:8080/tap docs/pictures/coverage.png

Needs mocpy, matplotlib and requests.
"""
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import requests  # noqa: E402
from astropy import units as u  # noqa: E402
from astropy.coordinates import Angle, SkyCoord  # noqa: E402
from mocpy import MOC, WCS  # noqa: E402

url, out = sys.argv[1], sys.argv[2]


def moc(path, **params):
    r = requests.get(f"{url}/coverage/{path}", params=params, timeout=120)
    r.raise_for_status()
    with tempfile.NamedTemporaryFile(suffix=".fits") as f:
        f.write(r.content)
        f.flush()
        return MOC.from_fits(f.name), r.headers


layers = [
    ("footprints", {"ORDER": 9, "DIA": "without"}, "detectors without a template (no DIA rows)", "tab:red"),
    ("footprints", {"ORDER": 9, "DIA": "with"}, "detectors with a template (DIA rows)", "tab:blue"),
    ("tables/DiaObject", {"ORDER": 9}, "where DiaObjects are", "tab:green"),
]
fig = plt.figure(figsize=(9, 7))
drawn = [(moc(p, **q), label, colour) for p, q, label, colour in layers]
centre = drawn[0][0][0].barycenter()
with WCS(fig, fov=9 * u.deg, center=SkyCoord(centre.ra, centre.dec), coordsys="icrs",
         rotation=Angle(0, u.degree), projection="TAN") as wcs:
    ax = fig.add_subplot(1, 1, 1, projection=wcs)
    for (m, headers), label, colour in drawn:
        area = float(headers["X-Coverage-Area-Deg2"])
        m.fill(ax=ax, wcs=wcs, alpha=0.35, fill=True, color=colour, label=f"{label}: {area:.1f} deg²")
        m.border(ax=ax, wcs=wcs, color=colour, linewidth=0.6)
    ax.set_xlabel("RA")
    ax.set_ylabel("Dec")
    ax.grid(color="grey", linestyle="dotted")
    ax.legend(loc="lower left")
    ax.set_title(f"/tap/coverage at snapshot {drawn[0][0][1]['X-Data-Origin-Resource-Version']}, cells of order 9")
fig.savefig(out, dpi=90, bbox_inches="tight")
print(out)
