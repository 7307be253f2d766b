#!/bin/bash
# Latency of /tap/availability and a small cone while two heavy DISTANCE joins run.
. "$(dirname "$0")/serve.sh"
start "$1" "$2" --max-duration 120
U=http://127.0.0.1:$PORT/tap/sync
CONE="SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55.0, -30.0, 0.05)) = 1"
HEAVY="SELECT COUNT(*) FROM ppdb.DiaSource AS s JOIN ppdb.DiaForcedSource AS f ON DISTANCE(POINT('ICRS', s.ra, s.dec), POINT('ICRS', f.ra, f.dec)) < 0.2"
t() { curl -s -o /dev/null -w "%{time_total}" "$@"; }
echo "idle: availability $(t $U/../availability) s, cone $(t --data-urlencode "QUERY=$CONE" -d LANG=ADQL -d FORMAT=csv $U) s"
for k in 1 2; do (curl -s -o $D/heavy$k.out -w "heavy$k %{time_total} s %{http_code}\n" --data-urlencode "QUERY=$HEAVY" -d LANG=ADQL -d FORMAT=csv $U > $D/heavy$k.t) & done
sleep 3
for i in 1 2 3 4 5; do
  echo "busy: availability $(t $U/../availability) s, cone $(t --data-urlencode "QUERY=$CONE" -d LANG=ADQL -d FORMAT=csv -d MAXREC=1000 $U) s"
  sleep 1
done
wait %2 %3 2>/dev/null; sleep 0.5; cat $D/heavy*.t
stop
