"""The peers of query-bench, timed on the same rows as our engine.

DuckDB reads the catalog's own Parquet files. PostgreSQL 15 + q3c is a
private server on 127.0.0.1 loaded with the rows our catalog shows at its
latest snapshot, indexed as a PPDB is (q3c on positions, btree on ids).

  peers.py duckdb N SQL                      row count, then N timings in seconds
  peers.py start WORK PORT                   initdb (once) and start Postgres
  peers.py load WORK PORT CATALOG            load the visible rows (once) and index them
  peers.py run PORT N SQL                    row count, then N timings in seconds
  peers.py stop WORK                         stop Postgres

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
    # The indexes of a PPDB: q3c on positions (clustered), btree on ids.
    con.execute("CREATE INDEX ON diaobject (q3c_ang2ipix(ra, dec))")
    con.execute('CLUSTER diaobject USING "diaobject_q3c_ang2ipix_idx"')
    con.execute('CREATE UNIQUE INDEX ON diaobject ("diaObjectId")')
    con.execute('CREATE INDEX ON diasource ("diaObjectId")')
    con.execute('CLUSTER diasource USING "diasource_diaObjectId_idx"')
    con.execute("CREATE INDEX ON diasource (q3c_ang2ipix(ra, dec))")
    con.execute('CREATE UNIQUE INDEX ON diasource ("diaSourceId")')
    con.execute("VACUUM ANALYZE")


def timed(execute, n):
    """Prints the row count, then the seconds of each of n runs after 3 warm-ups."""
    rows = len(execute())
    for _ in range(3):
        execute()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        execute()
        times.append(time.perf_counter() - t)
    print(rows, *times)


def run(port, n, sql):
    con = connect(port)
    timed(lambda: con.execute(sql).fetchall(), n)


def run_duckdb(n, sql):
    import duckdb

    con = duckdb.connect()
    timed(lambda: con.execute(sql).fetchall(), n)


def stop(work):
    data = os.path.join(work, "pgdata")
    subprocess.run(
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]),
        check=False,
        stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "duckdb":
        run_duckdb(int(sys.argv[2]), sys.argv[3])
    elif cmd == "start":
        start(sys.argv[2], int(sys.argv[3]))
    elif cmd == "load":
        load(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "run":
        run(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif cmd == "stop":
        stop(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
