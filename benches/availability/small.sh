#!/bin/bash
. "$(dirname "$0")/serve.sh"
start "$1" "$2"
B=http://127.0.0.1:$PORT/tap
for i in $(seq 40); do curl -s -o /dev/null -w "%{time_total}\n" $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=SELECT TOP 5 ra, dec FROM ppdb.DiaObject WHERE nDiaSources > $i"; done | sort -n | awk '{a[NR]=$1} END {print "p50 " a[int(NR/2)] " s over " NR}'
stop
