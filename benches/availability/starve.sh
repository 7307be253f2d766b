#!/bin/bash
. "$(dirname "$0")/serve.sh"
N=$3
start "$1" "$2" --max-duration 90
B=http://127.0.0.1:$PORT/tap
L="SELECT diaObjectId FROM ppdb.DiaObject WHERE diaObjectId = 1000000006"
C="SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55.0, -30.0, 0.05)) = 1"
t() { curl -s -o /dev/null --interface 127.0.0.2 -w "%{time_total}" "$@"; }
echo "idle lookup $(t $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=$L")"
for i in $(seq $N); do curl -s -o /dev/null $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=SELECT COUNT(*) FROM src.PromptSource AS a JOIN src.PromptSource AS b ON DISTANCE(POINT('ICRS',a.ra,a.dec),POINT('ICRS',b.ra,b.dec)) < 0.0$i" & done
sleep 3
for i in 1 2 3 4 5; do echo "busy lookup $(t $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=$L")  cone $(t $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=$C")"; sleep 1; done
stop
