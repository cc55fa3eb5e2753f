#!/usr/bin/env bash
# Web load test: wrk on loopback against GET /api/search over a SQLite library
# of 10,000 segments (web/examples/loadtest_server.rs), side by side with a
# peer doing the same search (numpy dot product over the same vectors) behind
# Python's standard-library threaded HTTP server.
# Prints requests/s, p99 latency and errors for both, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="${KINO_BENCH_DIR:-$(mktemp -d)}/web"
mkdir -p "$dir"
py="${KINO_REF_PYTHON:-.venv-ref/bin/python}"
segments="${KINO_WEB_SEGMENTS:-10000}"
duration="${KINO_WEB_DURATION:-15s}"
conns="${KINO_WEB_CONNECTIONS:-32}"

command -v wrk >/dev/null || { echo "web bench: wrk is not installed (Debian package wrk)" >&2; exit 1; }
# KINO_WEB_SERVER: an already built loadtest_server (default: build it in release).
server="${KINO_WEB_SERVER:-}"
if [ -z "$server" ]; then
  cargo build --release --quiet -p kino-web --example loadtest_server
  server=target/release/examples/loadtest_server
fi

rm -f "$dir/kino.addr" "$dir/load.db"*
"$server" "$dir/load.db" "$segments" "$dir/kino.addr" >/dev/null 2>"$dir/kino.log" &
kino_pid=$!
peer_pid=""
cleanup() {
  kill -INT "$kino_pid" 2>/dev/null || true
  [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do [ -s "$dir/kino.addr" ] && break; sleep 0.2; done
[ -s "$dir/kino.addr" ] || { cat "$dir/kino.log" >&2; echo "web bench: server did not start" >&2; exit 1; }
kino_addr="$(cat "$dir/kino.addr")"

# Queries rotate over a few phrases (URL-encoded spaces).
cat > "$dir/queries.lua" <<'LUA'
local qs = { "red%20bicycle%20wall", "bread%20oven%20kitchen", "moon%20rocket%20star", "harbour%20boat%20storm",
             "piano%20music%20night", "dragon%20castle%20knight", "snow%20mountain%20train", "fox%20forest%20tree" }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/search?k=10&q=" .. qs[(i % #qs) + 1])
end
LUA

# The peer: same vectors (read from the SQLite file), same top-10 exact search.
cat > "$dir/peer.py" <<'PY'
import json, re, sqlite3, sys, zlib
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs
import numpy as np

db, addr_file = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db)
rows = con.execute("SELECT s.id, s.video_id, s.start_ms, s.end_ms, s.text, s.tags, s.fused, v.path FROM segments s JOIN videos v ON v.id = s.video_id").fetchall()
meta = [(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[7]) for r in rows]
mat = np.stack([np.frombuffer(r[6], dtype="<f4") for r in rows])
mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
DIM = mat.shape[1]
STOP = {"a","an","the","is","are","was","of","on","in","to","and","for","with","what","where","who","how","does","do","it","its","at","we","you","i"}
def fnv(w):
    h = 0xcbf29ce484222325
    for b in w.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
def embed(t):
    v = np.zeros(DIM, dtype=np.float32)
    for w in re.split(r"[^0-9A-Za-z]+", t):
        w = w.lower()
        if w and w not in STOP:
            v[fnv(w) % DIM] += 1
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        u = urlparse(self.path)
        p = parse_qs(u.query)
        q = p.get("q", [""])[0]; k = int(p.get("k", ["10"])[0])
        s = mat @ embed(q)
        top = np.argpartition(-s, k)[:k]
        top = top[np.argsort(-s[top])]
        res = [dict(video_id=meta[i][1], path=meta[i][6], start_ms=meta[i][2], end_ms=meta[i][3], score=float(s[i]),
                    text=meta[i][4], tags=meta[i][5], thumbnail=None) for i in top if s[i] > 0]
        body = json.dumps({"results": res}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(addr_file, "w").write("127.0.0.1:%d" % srv.server_address[1])
srv.serve_forever()
PY

run_wrk() { # name addr
  wrk -t2 -c"$conns" -d"$duration" --latency -s "$dir/queries.lua" "http://$2" >"$dir/$1.wrk" 2>&1
  local rps p99 non2xx sock
  rps="$(awk '/^Requests\/sec/ {print $2}' "$dir/$1.wrk")"
  p99="$(awk '$1 == "99%" {print $2}' "$dir/$1.wrk")"
  non2xx="$(awk '/Non-2xx/ {print $NF}' "$dir/$1.wrk")"
  sock="$(awk '/Socket errors/ {print $0}' "$dir/$1.wrk")"
  echo "$1: ${rps} req/s, p99 ${p99}, non-2xx ${non2xx:-0}${sock:+, $sock}"
  eval "${1}_rps=$rps"
  eval "${1}_errors=$(( ${non2xx:-0} ))"
  [ -z "$sock" ] || eval "${1}_errors=1"
}

# Check the answer once, then load.
curl -sf "http://$kino_addr/api/search?q=red%20bicycle&k=3" | grep -q '"results"' || { echo "web bench: kino search failed" >&2; exit 1; }
echo "web: GET /api/search, $segments segments, wrk -t2 -c$conns -d$duration on loopback ($(nproc) cores shared by server and wrk)"
run_wrk kino "$kino_addr"

if "$py" -c 'import numpy' 2>/dev/null; then
  rm -f "$dir/peer.addr"
  # One BLAS thread per request thread: 32 request threads share the 2 cores.
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    "$py" "$dir/peer.py" "$dir/load.db" "$dir/peer.addr" 2>"$dir/peer.log" &
  peer_pid=$!
  for _ in $(seq 1 100); do [ -s "$dir/peer.addr" ] && break; sleep 0.2; done
  peer_addr="$(cat "$dir/peer.addr")"
  run_wrk peer "$peer_addr"
  echo "web: ratio kino/peer (python http.server + numpy) requests/s: $(awk -v a="$kino_rps" -v b="$peer_rps" 'BEGIN { printf "%.1fx", a / b }')"
else
  echo "web: peer skipped ($py has no numpy)"
fi
[ "$kino_errors" -eq 0 ] || { echo "web bench: kino answered with errors" >&2; exit 1; }
