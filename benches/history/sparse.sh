#!/bin/bash
# A sparse wide sky as ingest leaves it: one file per order-4 cell and chunk
# (`--cell-rows 0 --no-maintenance`), merged cells without maintenance
# (`--no-maintenance`), and by default (merged cells, and compaction whenever
# a partition's files pile up); then the default one after `ppdb compact`
# (cells as coarse as its --target-rows allows) and after `ppdb compact
# --target-rows 0` (into partitions): files, ingest rate (maintenance not
# counted) and TAP sync p50 of four queries (7 runs after one warm-up).
set -e
BIN=${1:-target/debug/ppdb}; OBJECTS=${2:-20000}; NIGHTS=${3:-10}
source "$(dirname "${BASH_SOURCE[0]}")/../availability/serve.sh"
W=${TMPDIR:-/tmp}/ppdb-history-sparse; rm -rf "$W"; mkdir -p "$W"
"$BIN" sample --out "$W/chunks" --objects "$OBJECTS" --density 60 --nights "$NIGHTS" --no-src > /dev/null
p50() { # PORT QUERY -> p50 ms
  local ts=()
  for i in $(seq 8); do
    t=$(curl -s -o /dev/null -w "%{time_total}" "http://127.0.0.1:$1/tap/sync" \
      --data-urlencode LANG=ADQL --data-urlencode RESPONSEFORMAT=csv --data-urlencode "QUERY=$2")
    [ "$i" -gt 1 ] && ts+=("$t")
  done
  printf '%s\n' "${ts[@]}" | sort -n | sed -n 4p | awk '{printf "%.1f", $1*1000}'
}
echo "| layout | files | ingest rows/s | aggregate | updated since | 0.5° cone | light curve |"
echo "|---|---:|---:|---:|---:|---:|---:|"
layouts=("cell-rows-0" "no-maintenance" "default" "compacted" "partitions")
for layout in "${layouts[@]}"; do
  cat="$W/cat-$layout"; rate=-
  case $layout in
    cell-rows-0) label="--cell-rows 0 --no-maintenance"; flags=(--cell-rows 0 --no-maintenance) ;;
    no-maintenance) label="--no-maintenance"; flags=(--no-maintenance) ;;
    default) label="default"; flags=() ;;
    compacted) label="default, then compact"; cp -r "$W/cat-default" "$cat"; target=() ;;
    partitions) label="default, then compact --target-rows 0"; cp -r "$W/cat-default" "$cat"; target=(--target-rows 0) ;;
  esac
  if [ -d "$cat" ]; then
    "$BIN" compact --catalog "$cat" "${target[@]}" > /dev/null
    "$BIN" vacuum --catalog "$cat" --grace-seconds 0 > /dev/null
  else
    out=$("$BIN" ingest --catalog "$cat" "${flags[@]}" "$W/chunks" 2>&1)
    rate=$(echo "$out" | grep -o '([0-9]* rows/s)' | tr -dc 0-9)
    "$BIN" vacuum --catalog "$cat" --grace-seconds 0 > /dev/null
  fi
  files=$(find "$cat" -name '*.parquet' -not -path '*/_index/*' | wc -l)
  CATALOG=$cat start "$BIN" 18561
  id=$(curl -s "http://127.0.0.1:18561/tap/sync" --data-urlencode LANG=ADQL --data-urlencode RESPONSEFORMAT=csv \
    --data-urlencode "QUERY=SELECT TOP 1 diaObjectId FROM ppdb.DiaObject ORDER BY nDiaSources DESC" | tail -1)
  agg=$(p50 18561 "SELECT band, COUNT(*) AS n, AVG(psfFlux) AS f FROM ppdb.DiaSource GROUP BY band")
  since=$(p50 18561 "SELECT COUNT(*) FROM ppdb.DiaObject WHERE validityStartMjdTai > 61370")
  cone=$(p50 18561 "SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE 1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55, -30, 0.5))")
  lc=$(p50 18561 "SELECT midpointMjdTai, psfFlux FROM ppdb.DiaSource WHERE diaObjectId = $id")
  stop
  echo "| $label | $files | $rate | $agg | $since | $cone | $lc |"
done
