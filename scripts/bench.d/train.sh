#!/usr/bin/env bash
# Training (`kino train`'s learning step) at the size of a one-hour library: 3,600 frames of 768-d pooled Swin-T
# vectors, 384-d text, 30 epochs without early stopping: kino-fusion's train_bench example against
# fusion/examples/train_bench_peer.py (the same loss, batches and optimiser in PyTorch), in the same run.
# The issue's target: a one-hour library trains in at most 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS="${KINO_BENCH_TRAIN_EPOCHS:-30}"
cargo build --release --quiet -p kino-fusion --example train_bench
k="$(target/release/examples/train_bench "$EPOCHS" 2>/dev/null)"
p="$("$KINO_REF_PYTHON" fusion/examples/train_bench_peer.py "$EPOCHS" 2>/dev/null)"
get() { printf '%s\n' "$1" | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "train: $(get "$k" frames) frames, $EPOCHS epochs; $(nproc) cores"
echo "  kino: $(get "$k" train_seconds) s ($(get "$k" steps) steps, held-out recall@1 $(get "$k" heldout_recall_at_1))   pytorch: $(get "$p" train_seconds) s ($(get "$p" steps) steps)   ratio kino/peer (speed): $(ratio "$(get "$p" train_seconds)" "$(get "$k" train_seconds)")   target: <= 600 s"
echo "  kino stage 2 (grid and cross-attention, $(get "$k" stage2_examples) segment–cue examples, $(get "$k" stage2_epochs) epochs): $(get "$k" stage2_seconds) s (no peer: the PyTorch script trains the projection only)"
