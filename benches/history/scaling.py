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
checked against ours before its time is reported. Then 20 clients (half 5′
cones, half light curves, one connection each) load ours at the longest
history and PostgreSQL, for --load-seconds each. Each delivery of 90 chunks
or more is ingested in three runs, its first 30 chunks, the middle and its
last 30, so the report can compare the ingest rate late in a long history
with the rate early in it.

  python benches/history/scaling.py --bin ~/.cache/ppdb-target/bench-fast/ppdb \\
      [--objects 100000] [--density 60] [--nights 10] [--chunks 30,600] [--runs 15] [--out DIR]

Run with the bench virtualenv (`benches/run` makes it: duckdb, psycopg,
matplotlib). Writes DIR/report.md, DIR/results.json and DIR/history.svg.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
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


def tap_client(queries, seconds, barrier, out):
    """One load client: a keep-alive connection to our TAP service."""
    conn = http.client.HTTPConnection("127.0.0.1", TAP_PORT)
    rng = random.Random(os.getpid())
    latencies, errors = [], 0
    barrier.wait()
    end = time.perf_counter() + seconds
    while (t := time.perf_counter()) < end:
        body = urllib.parse.urlencode({"LANG": "ADQL", "RESPONSEFORMAT": "csv", "QUERY": rng.choice(queries)})
        conn.request("POST", "/tap/sync", body, {"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        r.read()
        errors += r.status != 200
        latencies.append(time.perf_counter() - t)
    out.put((latencies, errors))


def pg_client(queries, seconds, barrier, out):
    """One load client: a connection to PostgreSQL."""
    peers.client(PG_PORT, queries, seconds, barrier, out)


def load(client, queries, clients, seconds):
    """(ops/s, p99 ms, errors) of `clients` processes running `queries` at random."""
    barrier = mp.Barrier(clients + 1)
    out = mp.Queue()
    procs = [mp.Process(target=client, args=(queries, seconds, barrier, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    latencies, errors = [], 0
    for _ in procs:
        got = out.get()
        lat, err = got if isinstance(got, tuple) else (got, 0)
        latencies.extend(lat)
        errors += err
    for p in procs:
        p.join()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3 if latencies else float("nan")
    return round(len(latencies) / seconds, 1), round(p99, 2), errors


def load_mix(ids, centres):
    """Half 5′ cones at objects, half light curves of objects: (ADQL, PostgreSQL)."""
    adql, sql = [], []
    for id_, (ra, dec) in zip(ids, centres):
        r = 5 / 60
        adql.append(f"SELECT diaObjectId, ra, dec FROM ppdb.DiaObject "
                    f"WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1")
        sql.append(f'SELECT "diaObjectId", ra, dec FROM diaobject WHERE q3c_radial_query(ra, dec, {ra}, {dec}, {r})')
        adql.append(f"SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM ppdb.DiaSource WHERE diaObjectId = {id_}")
        sql.append(f'SELECT "diaSourceId", "midpointMjdTai", band, "psfFlux" FROM diasource WHERE "diaObjectId" = {id_}')
    return adql, sql


def ingest(binary, cat, src):
    """Ingests a delivery as `ppdb ingest` does; a long one in three runs (its
    first 30 chunks, the middle, its last 30). Returns (the whole delivery's
    summary line, maintenance lines, wall seconds, rows/s of the first and the
    last 30 chunks or None)."""
    dirs = sorted(os.path.join(src, d) for d in os.listdir(src))
    runs = [dirs] if len(dirs) < 90 else [dirs[:30], dirs[30:-30], dirs[-30:]]
    said, wall = [], 0.0
    for part in runs:
        t = time.perf_counter()
        said.append(run(binary, "ingest", "--catalog", cat, *part).stdout.splitlines())
        wall += time.perf_counter() - t
    rates = [float(s[0].rsplit("(", 1)[1].split()[0]) for s in said]
    chunks = sum(int(s[0].split()[1]) for s in said)
    rows = sum(int(s[0].split(", ")[1].split()[0]) for s in said)
    secs = sum(float(s[0].split(" rows in ")[1].split()[0]) for s in said)
    latest = said[-1][0].rsplit("latest snapshot ", 1)[1]
    summary = f"committed {chunks} chunks, {rows} rows in {secs:.2f} s ({rows / secs:.0f} rows/s); latest snapshot {latest}"
    maintenance = [line for s in said for line in s[1:]]
    return summary, maintenance, wall, (rates[0], rates[-1]) if len(runs) > 1 else None


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
            done = subprocess.run([binary, "query", "--catalog", catalog, "--format", "parquet", "--maxrec",
                                   "1000000000", "--state", f"file://{work}/export-state",
                                   f"SELECT * FROM ppdb.{table}"], stdout=f, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"exporting {table} failed: {done.stderr}")
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
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--load-seconds", type=float, default=10.0)
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
        committed, maintenance, wall, rates = ingest(binary, cat, src)
        # Files replaced by maintenance are never read; count the live ones.
        run(binary, "vacuum", "--catalog", cat, "--grace-seconds", "0")
        files = sum(1 for d, _, fs in os.walk(cat) if "_index" not in d and "_state" not in d
                    for f in fs if f.endswith(".parquet"))
        # The visits are cut into whole chunks: the count may differ a little.
        snapshots[chunks] = int(committed.rsplit("latest snapshot ", 1)[1].split()[0])
        facts[chunks] = {"ingest": committed, "maintenance": maintenance, "ingest_wall_s": round(wall, 2),
                         "live_files": files, "rates_first_last_30": rates}
        print(f"{chunks} chunks: {committed}; {' '.join(maintenance)}; {files} files; first/last 30: {rates}",
              file=sys.stderr)
        tap = Tap(binary, cat, f"file://{a.work}/state-{chunks}")
        if qs is None:
            id_ = int(tap.rows("SELECT TOP 1 diaObjectId FROM ppdb.DiaObject ORDER BY nDiaSources DESC")[0])
            starts = tap.rows("SELECT TOP 1000 validityStartMjdTai FROM ppdb.DiaObject ORDER BY validityStartMjdTai DESC")
            qs = queries(id_, float(starts[-1]))
            picked = tap.rows("SELECT TOP 200 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY nDiaSources DESC")
            picked = [line.split(",") for line in picked]
            mix_adql, mix_sql = load_mix([int(p[0]) for p in picked], [(float(p[1]), float(p[2])) for p in picked])
        ours[chunks] = {name: timed(lambda q=adql: tap.rows(q), a.runs) for name, adql, _, _ in qs}
        if chunks == deliveries[-1]:
            loaded = {"ours": load(tap_client, mix_adql, a.clients, a.load_seconds)}
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
        loaded["PG+q3c"] = load(pg_client, mix_sql, a.clients, a.load_seconds)
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
        f"# History scaling: the same sky ({a.objects} objects at {a.density:g}/deg²) in few and many snapshots",
        "",
        f"`python benches/history/scaling.py --bin {a.bin} --objects {a.objects} --density {a.density} "
        f"--nights {a.nights} "
        f"--visits-per-night {a.visits_per_night} "
        f"--chunks {a.chunks} --runs {a.runs}`, {time.strftime('%Y-%m-%d')}, p50 in ms over {a.runs} runs "
        f"(TAP sync CSV for ours); PostgreSQL {pgv} + q3c, DuckDB {duckdb.__version__}.",
        "",
        *lines,
        "",
        *[f"- {snapshots[c]} chunks: {facts[c]['ingest']}; {' '.join(facts[c]['maintenance'])}; "
          f"{facts[c]['live_files']} live Parquet files" for c in deliveries],
        *[f"- {snapshots[c]} chunks: ingest over the first 30 chunks {r[0]:.0f} rows/s, over the last 30 "
          f"{r[1]:.0f} rows/s ({r[1] / r[0]:.2f}×; maintenance not counted)"
          for c in deliveries if (r := facts[c]["rates_first_last_30"])],
        "",
        f"{a.clients} clients for {a.load_seconds:.0f} s each (half 5′ cones, half light curves of 200 objects; "
        f"ours over TAP sync at {snapshots[last]} snapshots):",
        "",
        "| peer | ops/s | p99 ms | errors |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v[0]:.0f} | {v[1]:.1f} | {v[2]} |" for k, v in loaded.items()],
        *[f"- **answer mismatch**: {m}" for m in mismatches],
    ]
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"ours": ours, "peers": peer, "facts": facts, "snapshots": snapshots, "load": loaded}, f, indent=1)
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
