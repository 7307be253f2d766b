"""History scaling: the same sparse sky delivered as few and as many chunks.

One generated sky (by default 100 000 objects at 60 per deg², ~1 700 deg²,
10 nights) is delivered as replica chunks of many visits and of few, so the
same rows arrive in 30, 600, ... snapshots. Each delivery is ingested exactly
as `ppdb ingest` leaves it (its maintenance included, no manual compaction)
and served by `ppdb serve`; every query is timed over TAP sync (CSV, one
keep-alive connection). The peers hold the rows of the latest snapshot, set
up as their own users would: PostgreSQL 15 + q3c indexed as the PPDB is,
DuckDB on its native tables, and DuckDB on one Parquet file per table sorted
(objects by declination, sources by object). Every answer's row count is
checked against ours before its time is reported.

  python benches/history/scaling.py --bin ~/.cache/ppdb-target/bench-fast/ppdb \\
      [--objects 100000] [--nights 10] [--chunks 30,600] [--runs 15] [--out DIR]

Run with the bench virtualenv (`benches/run` makes it: duckdb, psycopg,
matplotlib). Writes DIR/report.md, DIR/results.json and DIR/history.svg.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import peers  # noqa: E402

CENTRE = (55.0, -30.0)
PG_PORT = 18571
TAP_PORT = 18572


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def haversine(ra, dec, ra0, dec0, r):
    return (
        f"{dec} BETWEEN {dec0} - {r} AND {dec0} + {r} AND 2 * asin(sqrt(pow(sin(radians({dec} - {dec0}) / 2), 2) "
        f"+ cos(radians({dec})) * cos(radians({dec0})) * pow(sin(radians({ra} - {ra0}) / 2), 2))) <= radians({r})"
    )


def queries(id_, since):
    """(name, ADQL, PostgreSQL, DuckDB with tables diaobject, diasource, diaforcedsource)."""
    ra, dec = CENTRE
    out = []
    for r, name in [(5 / 60, "cone 5′ on DiaObject"), (1.0, "cone 1°")]:
        out.append((
            name,
            f"SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1",
            f'SELECT "diaObjectId", ra, dec FROM diaobject WHERE q3c_radial_query(ra, dec, {ra}, {dec}, {r})',
            f"SELECT diaObjectId, ra, dec FROM diaobject WHERE {haversine('ra', 'dec', ra, dec, r)}",
        ))
    out.append((
        "light curve (DiaSource of one object)",
        f"SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM ppdb.DiaSource WHERE diaObjectId = {id_}",
        f'SELECT "diaSourceId", "midpointMjdTai", band, "psfFlux" FROM diasource WHERE "diaObjectId" = {id_}',
        f"SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM diasource WHERE diaObjectId = {id_}",
    ))
    out.append((
        "forced light curve",
        f"SELECT diaForcedSourceId, midpointMjdTai, band, psfFlux FROM ppdb.DiaForcedSource WHERE diaObjectId = {id_}",
        f'SELECT "diaForcedSourceId", "midpointMjdTai", band, "psfFlux" FROM diaforcedsource WHERE "diaObjectId" = {id_}',
        f"SELECT diaForcedSourceId, midpointMjdTai, band, psfFlux FROM diaforcedsource WHERE diaObjectId = {id_}",
    ))
    out.append((
        "DiaObjects updated since T",
        f"SELECT diaObjectId, ra, dec, validityStartMjdTai FROM ppdb.DiaObject WHERE validityStartMjdTai > {since}",
        f'SELECT "diaObjectId", ra, dec, "validityStartMjdTai" FROM diaobject WHERE "validityStartMjdTai" > {since}',
        f"SELECT diaObjectId, ra, dec, validityStartMjdTai FROM diaobject WHERE validityStartMjdTai > {since}",
    ))
    out.append((
        "DiaSource aggregate by band",
        "SELECT band, COUNT(*) AS n, AVG(psfFlux) AS f FROM ppdb.DiaSource GROUP BY band",
        'SELECT band, COUNT(*), AVG("psfFlux") FROM diasource GROUP BY band',
        "SELECT band, COUNT(*), AVG(psfFlux) FROM diasource GROUP BY band",
    ))
    jr = 0.5
    out.append((
        "cone join DiaObject ⋈ DiaSource, 0.5°",
        "SELECT o.diaObjectId, s.diaSourceId, s.psfFlux FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s "
        f"ON s.diaObjectId = o.diaObjectId WHERE CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', {ra}, {dec}, {jr})) = 1",
        'SELECT o."diaObjectId", s."diaSourceId", s."psfFlux" FROM diaobject AS o JOIN diasource AS s '
        f'ON s."diaObjectId" = o."diaObjectId" WHERE q3c_radial_query(o.ra, o.dec, {ra}, {dec}, {jr})',
        "SELECT o.diaObjectId, s.diaSourceId, s.psfFlux FROM diaobject AS o JOIN diasource AS s "
        f"ON s.diaObjectId = o.diaObjectId WHERE {haversine('o.ra', 'o.dec', ra, dec, jr)}",
    ))
    return out


class Tap:
    """`ppdb serve` on a catalog at 127.0.0.1, queried over one keep-alive connection."""

    def __init__(self, binary, catalog, state):
        self.proc = subprocess.Popen(
            [binary, "serve", "--catalog", catalog, "--listen", f"127.0.0.1:{TAP_PORT}", "--state", state,
             "--embargo-hours", "0", "--access-log", os.devnull],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.proc.stdout.readline()
        self.conn = http.client.HTTPConnection("127.0.0.1", TAP_PORT)

    def rows(self, adql):
        body = urllib.parse.urlencode({"LANG": "ADQL", "RESPONSEFORMAT": "csv", "MAXREC": "100000000", "QUERY": adql})
        self.conn.request("POST", "/tap/sync", body, {"Content-Type": "application/x-www-form-urlencoded"})
        r = self.conn.getresponse()
        text = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {text[:500]}")
        return text.splitlines()[1:]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def timed(execute, runs):
    """Rows of the answer, then the p50 of `runs` runs after two warm-ups, in ms."""
    n = len(execute())
    execute()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        execute()
        times.append((time.perf_counter() - t) * 1e3)
    return n, statistics.median(times)


def export(binary, catalog, work):
    """The latest snapshot's rows of the three tables, as our engine answers them, in Parquet."""
    out = {}
    for table in ["DiaObject", "DiaSource", "DiaForcedSource"]:
        path = os.path.join(work, f"{table}.parquet")
        with open(path, "wb") as f:
            subprocess.run([binary, "query", "--catalog", catalog, "--format", "parquet", "--maxrec", "1000000000",
                            "--state", f"file://{work}/export-state", f"SELECT * FROM ppdb.{table}"],
                           check=True, stdout=f, stderr=subprocess.DEVNULL)
        out[table.lower()] = path
    return out


def load_postgres(work, files):
    import duckdb

    peers.start(os.path.join(work, "pg"), PG_PORT)
    con = peers.connect(PG_PORT)
    con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
    duck = duckdb.connect()
    for name, path in files.items():
        cols = duck.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()
        ddl = ", ".join(f'"{c[0]}" {peers.PG_TYPES.get(c[1], "text")}' for c in cols)
        con.execute(f"DROP TABLE IF EXISTS {name}")
        con.execute(f"CREATE UNLOGGED TABLE {name} ({ddl})")
        csv = os.path.join(work, f"{name}.csv")
        duck.execute(f"COPY (SELECT * FROM '{path}') TO '{csv}' (HEADER false)")
        names = ", ".join(f'"{c[0]}"' for c in cols)
        with con.cursor() as cur, open(csv, "rb") as f:
            with cur.copy(f"COPY {name} ({names}) FROM STDIN (FORMAT csv)") as copy:
                while block := f.read(1 << 20):
                    copy.write(block)
        os.remove(csv)
    peers.index_as_ppdb(con)
    return con


def duckdb_peers(work, files):
    """DuckDB on native tables, and on one sorted Parquet file per table."""
    import duckdb

    native = duckdb.connect(os.path.join(work, "native.duckdb"))
    parquet = duckdb.connect()
    order = {"diaobject": "dec", "diasource": "diaObjectId", "diaforcedsource": "diaObjectId"}
    for name, path in files.items():
        native.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM '{path}'")
        sorted_path = os.path.join(work, f"{name}-sorted.parquet")
        native.execute(f"COPY (SELECT * FROM '{path}' ORDER BY {order[name]}) TO '{sorted_path}' (FORMAT parquet)")
        parquet.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{sorted_path}')")
    return native, parquet


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--objects", type=int, default=100_000)
    p.add_argument("--density", type=float, default=60.0)
    p.add_argument("--nights", type=int, default=10)
    p.add_argument("--visits-per-night", type=int, default=60)
    p.add_argument("--chunks", default="30,600", help="deliveries, in chunks (each must divide the visits)")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--out", default="benches/history/report")
    p.add_argument("--work", default="/tmp/ppdb-history-scaling")
    a = p.parse_args()
    binary = os.path.abspath(a.bin)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    os.makedirs(a.out, exist_ok=True)
    visits = a.nights * a.visits_per_night
    deliveries = [int(c) for c in a.chunks.split(",")]
    ours = {}
    facts = {}
    snapshots = {}
    qs = None
    for chunks in deliveries:
        per = max(1, visits // chunks)
        src = os.path.join(a.work, f"chunks-{chunks}")
        run(binary, "sample", "--out", src, "--objects", a.objects, "--density", a.density, "--nights", a.nights,
            "--visits-per-night", a.visits_per_night, "--visits-per-chunk", per, "--no-src")
        cat = os.path.join(a.work, f"cat-{chunks}")
        t = time.perf_counter()
        said = run(binary, "ingest", "--catalog", cat, src).stdout
        wall = time.perf_counter() - t
        # Files replaced by maintenance are never read; count the live ones.
        run(binary, "vacuum", "--catalog", cat, "--grace-seconds", "0")
        files = sum(1 for d, _, fs in os.walk(cat) if "_index" not in d and "_state" not in d
                    for f in fs if f.endswith(".parquet"))
        committed = said.splitlines()[0]
        # The visits are cut into whole chunks: the count may differ a little.
        snapshots[chunks] = int(committed.rsplit("latest snapshot ", 1)[1].split()[0])
        facts[chunks] = {"ingest": committed, "maintenance": said.splitlines()[1:], "ingest_wall_s": round(wall, 2),
                         "live_files": files}
        print(f"{chunks} chunks: {committed}; {' '.join(said.splitlines()[1:])}; {files} files", file=sys.stderr)
        tap = Tap(binary, cat, f"file://{a.work}/state-{chunks}")
        if qs is None:
            id_ = int(tap.rows("SELECT TOP 1 diaObjectId FROM ppdb.DiaObject ORDER BY nDiaSources DESC")[0])
            starts = tap.rows("SELECT TOP 1000 validityStartMjdTai FROM ppdb.DiaObject ORDER BY validityStartMjdTai DESC")
            qs = queries(id_, float(starts[-1]))
        ours[chunks] = {name: timed(lambda q=adql: tap.rows(q), a.runs) for name, adql, _, _ in qs}
        tap.stop()
        if chunks == deliveries[0]:
            exported = export(binary, cat, a.work)
    try:
        pg = load_postgres(a.work, exported)
        native, parquet = duckdb_peers(a.work, exported)
        peer = {
            "PG+q3c": {name: timed(lambda q=sql: pg.execute(q).fetchall(), a.runs) for name, _, sql, _ in qs},
            "DuckDB native": {name: timed(lambda q=sql: native.execute(q).fetchall(), a.runs)
                              for name, _, _, sql in qs},
            "DuckDB on Parquet": {name: timed(lambda q=sql: parquet.execute(q).fetchall(), a.runs)
                                  for name, _, _, sql in qs},
        }
        pgv = pg.execute("SHOW server_version").fetchone()[0].split()[0]
    finally:
        peers.stop(os.path.join(a.work, "pg"))
    import duckdb

    head = ["query"] + list(peer) + [f"ours, {snapshots[c]} snapshots" for c in deliveries]
    first, last = deliveries[0], deliveries[-1]
    a_, z_ = snapshots[first], snapshots[last]
    head += [f"ours@{z_} / PG", f"ours@{z_} / DuckDB Parquet", f"ours@{z_} / ours@{a_}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    mismatches = []
    for name, *_ in qs:
        n = ours[first][name][0]
        # The peers hold the first delivery's rows (later deliveries may
        # differ in object versions: a chunk gives one per object it names).
        for label, res in peer.items():
            if res[name][0] != n:
                mismatches.append(f"{name}: {label} gave {res[name][0]} rows, ours@{first} {n}")
        cells = [f"{peer[k][name][1]:.2f}" for k in peer] + [f"{ours[c][name][1]:.2f}" for c in deliveries]
        o = ours[last][name][1]
        cells += [f"{o / peer['PG+q3c'][name][1]:.1f}×", f"{o / peer['DuckDB on Parquet'][name][1]:.1f}×",
                  f"{o / ours[first][name][1]:.2f}×"]
        rows = "/".join(str(ours[c][name][0]) for c in deliveries)
        lines.append(f"| {name} ({rows} rows) | " + " | ".join(cells) + " |")
    report = [
        "# History scaling: the same sparse sky in few and many snapshots",
        "",
        f"`python benches/history/scaling.py --bin {a.bin} --objects {a.objects} --nights {a.nights} "
        f"--visits-per-night {a.visits_per_night} "
        f"--chunks {a.chunks} --runs {a.runs}`, {time.strftime('%Y-%m-%d')}, p50 in ms over {a.runs} runs "
        f"(TAP sync CSV for ours); PostgreSQL {pgv} + q3c, DuckDB {duckdb.__version__}.",
        "",
        *lines,
        "",
        *[f"- {snapshots[c]} chunks: {facts[c]['ingest']}; {' '.join(facts[c]['maintenance'])}; "
          f"{facts[c]['live_files']} live Parquet files" for c in deliveries],
        *[f"- **answer mismatch**: {m}" for m in mismatches],
    ]
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"ours": ours, "peers": peer, "facts": facts, "snapshots": snapshots}, f, indent=1)
    plot(qs, ours, deliveries, snapshots, os.path.join(a.out, "history.svg"))
    print("\n".join(report))


def plot(qs, ours, deliveries, snapshots, path):
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, *_ in qs:
        ax.plot([snapshots[c] for c in deliveries], [ours[c][name][1] for c in deliveries], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("snapshots (the same rows)")
    ax.set_ylabel("p50 latency over TAP (ms)")
    ax.set_title("Latency against history")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
