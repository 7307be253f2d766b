#!/bin/bash
BIN=$1; PORT=$2; N=$3; ROOT="$(cd "$(dirname "$0")/../.." && pwd)"; D=${TMPDIR:-/tmp}/ppdb-availability-$PORT; rm -rf $D; mkdir -p $D
$BIN serve --catalog "$ROOT/data/sample" --listen 127.0.0.1:$PORT --state $D/state --max-duration 90 > $D/serve.log 2>&1 &
SP=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/tap/availability && break; sleep 0.2; done
B=http://127.0.0.1:$PORT/tap
L="SELECT diaObjectId FROM ppdb.DiaObject WHERE diaObjectId = 1000000006"
C="SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55.0, -30.0, 0.05)) = 1"
t() { curl -s -o /dev/null --interface 127.0.0.2 -w "%{time_total}" "$@"; }
echo "idle lookup $(t $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=$L")"
for i in $(seq $N); do curl -s -o /dev/null $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=SELECT COUNT(*) FROM src.PromptSource AS a JOIN src.PromptSource AS b ON DISTANCE(POINT('ICRS',a.ra,a.dec),POINT('ICRS',b.ra,b.dec)) < 0.0$i" & done
sleep 3
for i in 1 2 3 4 5; do echo "busy lookup $(t $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=$L")  cone $(t $B/sync --data-urlencode LANG=ADQL --data-urlencode FORMAT=csv --data-urlencode "QUERY=$C")"; sleep 1; done
kill $SP 2>/dev/null; sleep 0.5; pkill -f "listen 127.0.0.1:$PORT"
