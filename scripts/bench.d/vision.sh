#!/usr/bin/env bash
# Vision: Swin-T (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, 224x224)
# forward pass, images per second, kino (candle) vs transformers' SwinModel
# (PyTorch, CPU), same random weights, same batch, same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
BATCH="${KINO_BENCH_VISION_BATCH:-8}"
ITERS="${KINO_BENCH_VISION_ITERS:-12}"
THREADS="$(nproc)"
MODEL="$KINO_BENCH_DIR/swin-t-random"
cargo build --release --quiet -p kino-vision --example swin_bench
if [ ! -f "$MODEL/model.safetensors" ]; then
  "$KINO_REF_PYTHON" - "$MODEL" <<'PY'
import sys, torch
from transformers import SwinConfig, SwinModel
torch.manual_seed(0)
cfg = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
SwinModel(cfg).eval().save_pretrained(sys.argv[1])
PY
fi
ref="$("$KINO_REF_PYTHON" - "$MODEL" "$BATCH" "$ITERS" "$THREADS" <<'PY'
import sys, time, torch
from transformers import SwinModel
model_dir, batch, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = SwinModel.from_pretrained(model_dir).eval()
x = torch.randn(batch, 3, 224, 224)
with torch.inference_mode():
    m(pixel_values=x)
    t = time.perf_counter()
    for _ in range(iters):
        m(pixel_values=x).pooler_output.numpy()
    dt = time.perf_counter() - t
print(f"{batch * iters / dt:.2f}")
PY
)"
kino="$(RAYON_NUM_THREADS="$THREADS" target/release/examples/swin_bench "$MODEL" "$BATCH" "$ITERS" | sed -n 's/^kino_vision_images_per_s=//p')"
echo "vision: Swin-T 224, batch $BATCH, $ITERS iterations, $THREADS threads"
echo "  kino (candle):             $kino images/s"
echo "  transformers (PyTorch):    $ref images/s"
awk -v k="$kino" -v r="$ref" 'BEGIN { printf "  ratio kino/transformers:   %.2fx\n", k / r }'
