#!/usr/bin/env bash
# Search at scale, end to end: `kino bench index` fills a store with
# KINO_BENCH_SEGMENTS synthetic segments (default 100000; the issue's target
# is 1000000), builds and saves the index and measures a cold start in a
# fresh process; then `kino serve` opens that store and index (real
# sentence encoder for the queries, history stored) and wrk sends 1,000
# distinct queries to GET /api/search over 32 connections on loopback.
# Prints the index figures, requests/s, p99, errors, and the server's
# resident memory (heap and mapped file pages apart).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KINO_BENCH_DIR:?set by scripts/bench}"
: "${KINO_BIN:?set by scripts/bench}"
N="${KINO_BENCH_SEGMENTS:-100000}"
duration="${KINO_WEB_DURATION:-30s}"
conns="${KINO_WEB_CONNECTIONS:-32}"
command -v wrk >/dev/null || { echo "serve_scale: wrk is not installed (Debian package wrk)" >&2; exit 1; }
dir="$KINO_BENCH_DIR/serve_scale"
# KINO_BENCH_REUSE=1 serves the store and index a previous run left in the
# folder (to compare two kino binaries on the same store).
if [ "${KINO_BENCH_REUSE:-0}" = 1 ] && [ -f "$dir/index.json" ]; then
  echo "index: reusing $dir ($(grep -o '"segments":[0-9]*' "$dir/index.json" | tail -1))"
else
  rm -rf "$dir" && mkdir -p "$dir"
  "$KINO_BIN" -q bench index --segments "$N" --dir "$dir" --json >"$dir/index.json"
  echo "index: $(cat "$dir/index.json")"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
models="${KINO_MODELS:-${XDG_DATA_HOME:-$HOME/.local/share}/kino/models}"
KINO_OCR=off KINO_SPEECH=off "$KINO_BIN" --home "$dir" --models "$models" --db "$dir/kino.db" serve --bind "127.0.0.1:$port" \
  >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
started=$(date +%s.%N)
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -q '^kino_index_approximate 1' && break
  kill -0 "$pid" 2>/dev/null || { tail -5 "$dir/serve.log" >&2; echo "serve_scale: kino serve exited" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/api/search?q=warm+up&k=10" >/dev/null
ready=$(date +%s.%N)
echo "serve: approximate search answering $(awk -v a="$started" -v b="$ready" 'BEGIN { printf "%.1f", b - a }') s after start"

# 1,000 distinct queries: 10 x 10 x 10 words.
python3 - "$dir/queries.lua" <<'PY'
import sys
a = "red blue green old quiet busy small huge bright dark".split()
b = "boat train kitchen forest piano castle market river stage garden".split()
c = "at-night in-winter by-the-sea on-fire with-children under-rain at-dawn in-a-city on-tv from-above".split()
qs = [f"{x}+{y}+{z.replace('-', '+')}" for x in a for y in b for z in c]
with open(sys.argv[1], "w") as f:
    f.write("local qs = {" + ",".join(f'"{q}"' for q in qs) + "}\n")
    f.write("local i = 0\nrequest = function()\n  i = i + 1\n"
            "  return wrk.format(\"GET\", \"/api/search?k=10&q=\" .. qs[(i % #qs) + 1])\nend\n")
PY
wrk -t2 -c"$conns" -d"$duration" --latency -s "$dir/queries.lua" "http://127.0.0.1:$port" >"$dir/wrk.txt" 2>&1
rps="$(awk '/^Requests\/sec/ {print $2}' "$dir/wrk.txt")"
p99="$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt")"
sock="$(awk '/Socket errors/ {print $0}' "$dir/wrk.txt")"
anon="$(awk '/^RssAnon/ {print int($2 / 1024)}' /proc/$pid/status)"
file="$(awk '/^RssFile/ {print int($2 / 1024)}' /proc/$pid/status)"
stored="$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^kino_index_segments/ {print $2}')"
echo "serve: $stored segments, wrk -t2 -c$conns -d$duration, 1000 distinct queries: ${rps} req/s, p99 ${p99}, non-2xx ${non2xx:-0}${sock:+, $sock}; resident ${anon} MiB heap + ${file} MiB mapped"
