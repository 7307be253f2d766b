#!/usr/bin/env bash
# Writes the seed corpora the fuzz targets start from:
#   corpus/adql  - every query of the ADQL specification (tests/adql/*.slt);
#   corpus/chunk - the chunk the chunk target fuzzes: its chunk.json, and each
#                  of its Parquet files, in the target's input format.
# Run from anywhere; uses `ppdb sample` (built with cargo unless $PPDB is set).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ppdb="${PPDB:-}"
if [ -z "$ppdb" ]; then
    cargo build -q --manifest-path "$root/Cargo.toml" -p server --bin ppdb
    ppdb="${CARGO_TARGET_DIR:-$root/target}/debug/ppdb"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The same sample as the chunk target's fixture (fuzz_targets/chunk.rs).
"$ppdb" sample --out "$tmp/chunks" --objects 60 --nights 2 --visits-per-night 4 \
    --visits-per-chunk 2 --no-src > /dev/null
python3 - "$root" "$here" "$tmp/chunks" <<'PY'
import glob, os, sys
root, here, chunks = sys.argv[1:]
adql = os.path.join(here, "corpus", "adql")
os.makedirs(adql, exist_ok=True)
n = 0
for path in sorted(glob.glob(os.path.join(root, "tests", "adql", "*.slt"))):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith(("query", "statement")):
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() and lines[i] != "----":
                body.append(lines[i])
                i += 1
            if body:
                n += 1
                with open(os.path.join(adql, f"slt-{n:04}"), "w", encoding="utf-8") as f:
                    f.write("\n".join(body))
        i += 1
dirs = sorted(glob.glob(os.path.join(chunks, "*")))
target = next((d for d in dirs[1:] if os.path.exists(os.path.join(d, "updates.parquet"))), dirs[1])
chunk = os.path.join(here, "corpus", "chunk")
os.makedirs(chunk, exist_ok=True)
with open(os.path.join(chunk, "manifest"), "wb") as f:
    f.write(b"\x00" + open(os.path.join(target, "chunk.json"), "rb").read())
for i, name in enumerate(sorted(p for p in os.listdir(target) if p.endswith(".parquet"))):
    with open(os.path.join(chunk, name), "wb") as f:
        f.write(b"\x01" + bytes([i]) + open(os.path.join(target, name), "rb").read())
print(f"seeds: {n} ADQL queries in {adql}; chunk.json and {i + 1} Parquet files in {chunk}")
PY
