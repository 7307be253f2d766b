#!/bin/bash
. "$(dirname "$0")/serve.sh"
start "$1" "$2"
python3 -c "print('QUERY=SELECT diaObjectId FROM ppdb.DiaObject WHERE diaObjectId IN (' + '1 ' * 950000 + ')&LANG=ADQL', end='')" > $D/q.txt
ls -la $D/q.txt | awk '{print $5" bytes"}'
U=http://127.0.0.1:$PORT/tap
echo "idle availability $(curl -s -o /dev/null -w '%{time_total}' $U/availability)"
for k in 2 3 4 5 6 7 8 9; do (curl -s --interface 127.0.0.$k -o /dev/null -w "dense$k %{time_total} %{http_code}\n" --data-binary @$D/q.txt -H 'Content-Type: application/x-www-form-urlencoded' $U/sync > $D/d$k.t) & done
sleep 0.5
for i in 1 2 3 4 5 6; do echo "busy availability $(curl -s -o /dev/null -w '%{time_total}' $U/availability)"; sleep 0.5; done
sleep 6; cat $D/d*.t | sort | head -3
stop
