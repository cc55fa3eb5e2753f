#!/usr/bin/env bash
# Fusion: segments fused per second (default cross-attention weights, 384-d, 4 cues + 1 label token each) and
# queries ranked per second over 100k stored segments (fused + text + visual, k = 10), kino-fusion's
# fusion_bench example against fusion/examples/fusion_bench_peer.py (PyTorch MultiheadAttention set to the same
# weights; NumPy matrix-vector ranking without merging), in the same run. Alignment (streaming segment
# builder, 3 h at 2 fps) is reported for kino only: no peer does that.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUSE="${KINO_BENCH_FUSION_SEGMENTS:-5000}"
CANDS="${KINO_BENCH_FUSION_CANDIDATES:-100000}"
QUERIES="${KINO_BENCH_FUSION_QUERIES:-20}"
cargo build --release --quiet -p kino-fusion --example fusion_bench
k="$(target/release/examples/fusion_bench "$FUSE" "$CANDS" "$QUERIES" 2>/dev/null)"
p="$("$KINO_REF_PYTHON" fusion/examples/fusion_bench_peer.py "$FUSE" "$CANDS" "$QUERIES" 2>/dev/null)"
get() { printf '%s\n' "$1" | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "fusion: $FUSE segments fused; $QUERIES queries over $CANDS segments; $(nproc) cores"
echo "  fuse  kino: $(get "$k" fuse_per_second) segments/s   pytorch: $(get "$p" fuse_per_second) segments/s   ratio kino/peer (speed): $(ratio "$(get "$k" fuse_per_second)" "$(get "$p" fuse_per_second)")"
echo "  rank  kino: $(get "$k" rank_queries_per_second) queries/s   numpy: $(get "$p" rank_queries_per_second) queries/s   ratio kino/peer (speed): $(ratio "$(get "$k" rank_queries_per_second)" "$(get "$p" rank_queries_per_second)")"
echo "  align kino: $(get "$k" align_frames_per_second) frames/s ($(get "$k" align_frames) frames, $(get "$k" align_segments) segments; no peer)"
