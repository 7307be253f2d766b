#!/bin/bash
BIN=$1; PORT=$2; ROOT="$(cd "$(dirname "$0")/../.." && pwd)"; D=${TMPDIR:-/tmp}/ppdb-availability-$PORT; rm -rf $D; mkdir -p $D
$BIN serve --catalog "$ROOT/data/sample" --listen 127.0.0.1:$PORT --state $D/state > $D/serve.log 2>&1 &
SP=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/tap/availability && break; sleep 0.2; done
B=http://127.0.0.1:$PORT/tap
for i in $(seq 40); do curl -s -o /dev/null -w "%{time_total}\n" $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=SELECT TOP 5 ra, dec FROM ppdb.DiaObject WHERE nDiaSources > $i"; done | sort -n | awk '{a[NR]=$1} END {print "p50 " a[int(NR/2)] " s over " NR}'
kill $SP; wait $SP 2>/dev/null
