#!/usr/bin/env bash
# Search at scale: kino's approximate index (usearch HNSW, int8 vectors)
# against faiss HNSW (IndexHNSWFlat, f32) on the same clustered 384-d
# vectors and held-out queries, same M / efConstruction / efSearch, same
# threads for the build, single queries one at a time for latency; both
# scored against the same exact top 10. KINO_BENCH_SEGMENTS (default
# 100000; the issue's target is 1000000) sets the size.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KINO_REF_PYTHON:?set by scripts/bench}"
: "${KINO_BENCH_DIR:?set by scripts/bench}"
: "${KINO_BIN:?set by scripts/bench}"
N="${KINO_BENCH_SEGMENTS:-100000}"
THREADS="${KINO_BENCH_THREADS:-$(nproc)}"
M="${KINO_BENCH_M:-14}" EFC=128 EFS=128 DIM=384
dir="$KINO_BENCH_DIR/search"
rm -rf "$dir" && mkdir -p "$dir"
kino_json="$("$KINO_BIN" -q bench search --segments "$N" --dim $DIM --threads "$THREADS" \
  --m $M --ef-construction $EFC --ef-search $EFS --export "$dir" --json)"
peer_json="$(OMP_NUM_THREADS="$THREADS" "$KINO_REF_PYTHON" scripts/fixtures/faiss_search.py "$dir" $DIM $M $EFC $EFS "$THREADS")"
rm -f "$dir"/*.f32 "$dir"/*.u64
"$KINO_REF_PYTHON" - "$kino_json" "$peer_json" <<'PY'
import json, sys
k, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"search at scale: {k['segments']:,} clustered vectors x {k['dim']} ({k['clusters']} clusters), "
      f"{k['queries']} held-out queries, M={k['m']} efConstruction={k['ef_construction']} efSearch={k['ef_search']}, "
      f"{k['threads']} build threads, single-query latency")
for name, r in (("kino (usearch, int8)", k), (p["engine"], p)):
    print(f"  {name:34} recall@10 {r['recall_at_10']:.4f}  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
          f"build {r['build_s']:7.1f} s  memory +{r['rss_growth_bytes'] / 2**20:7.0f} MiB")
print(f"  kino re-ranked (shortlist 40 -> exact) recall@10 {k['recall_at_10_reranked']:.4f}; "
      f"index {k['index_bytes'] / 2**20:.0f} MiB in memory, {k['index_file_bytes'] / 2**20:.0f} MiB on disk, "
      f"opened memory-mapped and first search in {k['open_mapped_and_first_search_s']:.3f} s")
print(f"  ratio kino/peer: p99 latency {k['p99_ms'] / p['p99_ms']:.2f}x (lower is better), "
      f"build {p['build_s'] / k['build_s']:.2f}x faster, recall {k['recall_at_10'] - p['recall_at_10']:+.4f}")
PY
