#!/bin/bash
. "$(dirname "$0")/serve.sh"
start "$1" "$2" --max-concurrent 1 --max-duration 60
B=http://127.0.0.1:$PORT/tap
for i in $(seq 10); do
  J=$(curl -s -o /dev/null -w '%{redirect_url}' $B/async --data-urlencode LANG=ADQL --data-urlencode PHASE=RUN --data-urlencode "QUERY=SELECT COUNT(*) FROM ppdb.DiaSource AS s JOIN ppdb.DiaForcedSource AS f ON DISTANCE(POINT('ICRS', s.ra, s.dec), POINT('ICRS', f.ra, f.dec)) < 0.$i")
  sleep 0.7
  curl -s -o /dev/null -X DELETE "$J"; 
done
for s in 1 2 3 4 5; do
  echo "busy exec threads: $(ps -L -o stat=,comm= -p $SP | awk '$1 ~ /^R/ && $2 ~ /ppdb-exec/' | wc -l), process CPU: $(ps -o %cpu= -p $SP)"
  sleep 1
done
stop
