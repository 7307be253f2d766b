#!/bin/bash
. "$(dirname "$0")/serve.sh"
start "$1" "$2" --max-duration 60
U=http://127.0.0.1:$PORT/tap/sync
G="SELECT band, COUNT(*) AS n FROM ppdb.DiaSource GROUP BY band"
HEAVY="SELECT COUNT(*) FROM ppdb.DiaSource AS s JOIN ppdb.DiaForcedSource AS f ON DISTANCE(POINT('ICRS', s.ra, s.dec), POINT('ICRS', f.ra, f.dec)) < 0.5"
t() { curl -s -o /dev/null -w "%{time_total}" "$@"; }
echo "idle group-by $(t --data-urlencode "QUERY=$G" -d LANG=ADQL -d FORMAT=csv $U)"
for k in 1 2; do (curl -s --interface 127.0.0.$((k+1)) -o /dev/null --data-urlencode "QUERY=$HEAVY" -d LANG=ADQL -d FORMAT=csv $U) & done
sleep 3
for i in 1 2 3 4 5 6; do echo "busy group-by $(t --data-urlencode "QUERY=$G" -d LANG=ADQL -d FORMAT=csv $U)  availability $(t $U/../availability)"; sleep 1; done
stop
