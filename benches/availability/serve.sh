# Sourced by the scripts here: `start BINARY PORT [serve flags...]` starts
# `ppdb serve` on the bundled sample (or $CATALOG) at 127.0.0.1:PORT (state in $D) and
# waits for it; `stop` stops it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
start() {
  BIN=$1; PORT=$2; shift 2
  D=${TMPDIR:-/tmp}/ppdb-availability-$PORT; rm -rf "$D"; mkdir -p "$D"
  "$BIN" serve --catalog "${CATALOG:-$ROOT/data/sample}" --listen 127.0.0.1:$PORT --state "$D/state" "$@" > "$D/serve.log" 2>&1 &
  SP=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/tap/availability && break; sleep 0.2; done
}
stop() { kill $SP 2>/dev/null; wait $SP 2>/dev/null || true; }
