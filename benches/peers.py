"""The peers of ppdb-bench, timed on the same rows as our engine, and its plots.

DuckDB reads the catalog's own Parquet files. PostgreSQL 15 + q3c is a
private server on 127.0.0.1 loaded with the rows our catalog shows at its
latest snapshot, indexed as a PPDB is (q3c on positions, btree on ids).

  peers.py duckdb N BUDGET SQL KEYS [UPLOAD]   row count, then one timing in seconds per run
  peers.py start WORK PORT                     initdb (once) and start Postgres
  peers.py load WORK PORT CATALOG              load the visible rows (once) and index them
  peers.py run PORT N BUDGET SQL KEYS [UPLOAD] row count, then one timing in seconds per run
  peers.py load-test PORT CLIENTS SECONDS MIX  operations, then one latency in seconds each
  peers.py versions PORT                       the peers' versions, one per line
  peers.py stop WORK                           stop Postgres
  peers.py plot RESULTS OUTDIR                 latency.svg and concurrency.svg from results.json

A run stops after N timed runs or once BUDGET seconds are spent (at least 3
runs). KEYS is a file the answer's identity is written to (each row's integer
and text values, sorted) so the caller can check it equals its own. UPLOAD
is a CSV file (id, ra, dec) read as the table `upload` before anything is
timed. MIX is a file of SQL queries, one per line, that the clients pick from
at random.

The rows come from the catalog's own Parquet files through DuckDB (the
catalog is compacted first, so the visible rows are those with `_retired IS
NULL`); the same rows our engine serves.
"""

import os
import shutil
import subprocess
import sys
import time

PG_BIN = "/usr/lib/postgresql/15/bin"

# Tables the queries read: (name, Parquet folder, filter selecting the visible rows).
TABLES = [
    ("diaobject", "DiaObject", "_retired IS NULL AND validityEndMjdTai IS NULL"),
    ("diasource", "DiaSource", "_retired IS NULL"),
    ("diaforcedsource", "DiaForcedSource", "_retired IS NULL"),
]

PG_TYPES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "TINYINT": "smallint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "DATE": "date",
}


def as_postgres(args):
    """Runs a command as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + args
    return args


def start(work, port):
    data = os.path.join(work, "pgdata")
    if not os.path.isdir(data):
        os.makedirs(work, exist_ok=True)
        os.makedirs(data)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            as_postgres([f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "--no-sync", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    sock = os.path.join(work, "pgsock")
    os.makedirs(sock, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} "
        "-c shared_buffers=4GB -c work_mem=256MB -c maintenance_work_mem=1GB "
        "-c max_parallel_workers_per_gather=2 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c jit=off"
    )
    subprocess.run(
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(data, "log"), "-w", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def connect(port):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True)


def load(work, port, catalog):
    import duckdb

    con = connect(port)
    have = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    if all(t in have for t, _, _ in TABLES):
        return
    con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
    duck = duckdb.connect()
    for name, folder, visible in TABLES:
        src = f"read_parquet('{catalog}/{folder}/**/*.parquet', union_by_name=true)"
        cols = [
            (c[0], c[1])
            for c in duck.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
            if not c[0].startswith("_")
        ]
        ddl = ", ".join(f'"{n}" {PG_TYPES.get(t, "text")}' for n, t in cols)
        con.execute(f"DROP TABLE IF EXISTS {name}")
        con.execute(f"CREATE UNLOGGED TABLE {name} ({ddl})")
        csv = os.path.join(work, f"{name}.csv")
        names = ", ".join(f'"{n}"' for n, _ in cols)
        duck.execute(f"COPY (SELECT {names} FROM {src} WHERE {visible}) TO '{csv}' (HEADER false)")
        t = time.perf_counter()
        with con.cursor() as cur, open(csv, "rb") as f:
            with cur.copy(f"COPY {name} ({names}) FROM STDIN (FORMAT csv)") as copy:
                while block := f.read(1 << 20):
                    copy.write(block)
        os.remove(csv)
        n = con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
        print(f"postgres: loaded {n} rows into {name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    index_as_ppdb(con)


def index_as_ppdb(con):
    """The indexes of a PPDB: q3c on positions (clustered), btree on ids."""
    con.execute("CREATE INDEX ON diaobject (q3c_ang2ipix(ra, dec))")
    con.execute('CLUSTER diaobject USING "diaobject_q3c_ang2ipix_idx"')
    con.execute('CREATE UNIQUE INDEX ON diaobject ("diaObjectId")')
    con.execute('CREATE INDEX ON diaobject ("validityStartMjdTai")')
    con.execute('CREATE INDEX ON diasource ("diaObjectId")')
    con.execute('CLUSTER diasource USING "diasource_diaObjectId_idx"')
    con.execute("CREATE INDEX ON diasource (q3c_ang2ipix(ra, dec))")
    con.execute('CREATE UNIQUE INDEX ON diasource ("diaSourceId")')
    con.execute('CREATE INDEX ON diaforcedsource ("diaObjectId")')
    con.execute('CLUSTER diaforcedsource USING "diaforcedsource_diaObjectId_idx"')
    con.execute('CREATE UNIQUE INDEX ON diaforcedsource ("diaForcedSourceId")')
    con.execute("VACUUM ANALYZE")


def keys(rows):
    """Each row's integer and text values (what must agree exactly), sorted."""
    out = []
    for row in rows:
        out.append("|".join(str(v) for v in row if isinstance(v, (int, str)) and not isinstance(v, bool)))
    return sorted(out)


def timed(execute, n, budget, keys_file):
    """Prints the row count, then the seconds of each run after 3 warm-ups."""
    rows = execute()
    with open(keys_file, "w") as f:
        f.write("\n".join(keys(rows)))
    for _ in range(3):
        execute()
    times = []
    start = time.perf_counter()
    while len(times) < n and (len(times) < 3 or time.perf_counter() - start < budget):
        t = time.perf_counter()
        execute()
        times.append(time.perf_counter() - t)
    print(len(rows), *times)


def read_upload(path):
    import csv

    with open(path) as f:
        return [(int(r[0]), float(r[1]), float(r[2])) for r in csv.reader(f)]


def run(port, n, budget, sql, keys_file, upload=None):
    con = connect(port)
    if upload:
        con.execute("CREATE TEMPORARY TABLE upload (id bigint, ra double precision, dec double precision)")
        with con.cursor() as cur:
            cur.executemany("INSERT INTO upload VALUES (%s, %s, %s)", read_upload(upload))
        con.execute("ANALYZE upload")
    timed(lambda: con.execute(sql).fetchall(), n, budget, keys_file)


def run_duckdb(n, budget, sql, keys_file, upload=None):
    import duckdb

    con = duckdb.connect()
    if upload:
        con.execute(f"CREATE TABLE upload AS SELECT * FROM read_csv('{upload}', header=false, names=['id', 'ra', 'dec'])")
    timed(lambda: con.execute(sql).fetchall(), n, budget, keys_file)


def client(port, queries, seconds, barrier, out):
    import random

    con = connect(port)
    rng = random.Random(os.getpid())
    latencies = []
    barrier.wait()
    end = time.perf_counter() + seconds
    while (t := time.perf_counter()) < end:
        con.execute(rng.choice(queries)).fetchall()
        latencies.append(time.perf_counter() - t)
    out.put(latencies)


def load_test(port, clients, seconds, mix):
    """CLIENTS processes, one connection each, run queries from MIX for SECONDS."""
    import multiprocessing as mp

    with open(mix) as f:
        queries = [q for q in f.read().splitlines() if q.strip()]
    barrier = mp.Barrier(clients + 1)
    out = mp.Queue()
    procs = [mp.Process(target=client, args=(port, queries, seconds, barrier, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    latencies = []
    for _ in procs:
        latencies.extend(out.get())
    for p in procs:
        p.join()
    print(len(latencies), *latencies)


def versions(port):
    import duckdb

    print("DuckDB " + duckdb.__version__)
    if port:
        con = connect(port)
        pg = con.execute("SHOW server_version").fetchone()[0]
        q3c = con.execute("SELECT extversion FROM pg_extension WHERE extname = 'q3c'").fetchone()
        print(f"PostgreSQL {pg.split()[0]} + q3c {q3c[0] if q3c else '?'}")


def plot(results, outdir):
    """Latency by query (log scale) and throughput by concurrency, as SVG."""
    import json

    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    with open(results) as f:
        r = json.load(f)
    queries = r["queries"]
    series = [("ours", "ours (unpinned)"), ("pinned", "ours (pinned, with token)"), ("duckdb", "DuckDB"), ("postgres", "PostgreSQL + q3c")]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        xs, ys = [], []
        for j, q in enumerate(queries):
            if q.get(key):
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(q[key]["p50_ms"])
        if xs:
            ax.bar(xs, ys, width, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency (ms, log scale)")
    ax.set_xticks(range(len(queries)))
    ax.set_xticklabels([q["name"] for q in queries], rotation=25, ha="right", fontsize=8)
    ax.set_title(f"Query latency, scale {r['scale']} ({r['catalog']['objects']} current DiaObjects)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "latency.svg"))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    paths = sorted({l["path"] for l in r["load"]})
    for path in paths:
        pts = sorted((l["clients"], l["ops_per_s"], l["p99_ms"]) for l in r["load"] if l["path"] == path)
        a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=path)
        a2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=path)
    a1.set_xlabel("concurrent clients")
    a1.set_ylabel("operations per second")
    a1.set_title("Cone + light-curve mix: throughput")
    a2.set_xlabel("concurrent clients")
    a2.set_ylabel("p99 latency (ms, log scale)")
    a2.set_yscale("log")
    a2.set_title("Cone + light-curve mix: p99 latency")
    for a in (a1, a2):
        a.set_xscale("log")
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "concurrency.svg"))


def stop(work):
    data = os.path.join(work, "pgdata")
    subprocess.run(
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]),
        check=False,
        stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "duckdb":
        run_duckdb(int(args[0]), float(args[1]), args[2], args[3], *args[4:])
    elif cmd == "start":
        start(args[0], int(args[1]))
    elif cmd == "load":
        load(args[0], int(args[1]), args[2])
    elif cmd == "run":
        run(int(args[0]), int(args[1]), float(args[2]), args[3], args[4], *args[5:])
    elif cmd == "load-test":
        load_test(int(args[0]), int(args[1]), float(args[2]), args[3])
    elif cmd == "versions":
        versions(int(args[0]) if args else None)
    elif cmd == "stop":
        stop(args[0])
    elif cmd == "plot":
        plot(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")
