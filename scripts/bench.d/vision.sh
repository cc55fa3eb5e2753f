#!/usr/bin/env bash
# Vision: Swin-T (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, 224x224)
# forward pass, images per second, kino (candle) vs transformers' SwinModel
# (PyTorch, CPU), same random weights, same batch, same run. Then int8: kino's
# int8 Swin (linear layers in int8, calibrated on bundled scenes) against its
# own f32 and against ONNX Runtime running the same model exported to ONNX and
# quantized with onnxruntime.quantization.quantize_dynamic (int8 weights,
# activations quantized per tensor at run time), same batch, same threads.
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

int8_out="$(KINO_BENCH_PRECISION=int8 RAYON_NUM_THREADS="$THREADS" target/release/examples/swin_bench "$MODEL" "$BATCH" "$ITERS")"
int8="$(echo "$int8_out" | sed -n 's/^kino_vision_images_per_s=//p')"
cosine="$(echo "$int8_out" | sed -n 's/^kino_vision_int8_min_cosine=//p')"
ONNX="$KINO_BENCH_DIR/swin-t-random.int8.onnx"
ort="$("$KINO_REF_PYTHON" - "$MODEL" "$ONNX" "$BATCH" "$ITERS" "$THREADS" <<'PY'
import os, sys, time, warnings
import numpy as np
model_dir, onnx_path, batch, iters, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
warnings.filterwarnings("ignore")
if not os.path.exists(onnx_path):
    import contextlib
    quiet = contextlib.redirect_stdout(sys.stderr)
    quiet.__enter__()
    import torch
    from transformers import SwinModel
    from onnxruntime.quantization import quantize_dynamic, QuantType
    m = SwinModel.from_pretrained(model_dir).eval()
    f32 = onnx_path.replace(".int8.onnx", ".f32.onnx")
    torch.onnx.export(m, (torch.randn(1, 3, 224, 224),), f32, input_names=["pixel_values"],
                      output_names=["last_hidden_state", "pooler_output"],
                      dynamic_axes={"pixel_values": {0: "b"}}, opset_version=17, dynamo=False)
    quantize_dynamic(f32, onnx_path, weight_type=QuantType.QInt8)
    quiet.__exit__(None, None, None)
import onnxruntime as ort
so = ort.SessionOptions()
so.intra_op_num_threads = threads
s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
s.run(["pooler_output"], {"pixel_values": x})
t = time.perf_counter()
for _ in range(iters):
    s.run(["pooler_output"], {"pixel_values": x})
print(f"{batch * iters / (time.perf_counter() - t):.2f}")
PY
)"
echo "vision int8: Swin-T 224, batch $BATCH, $ITERS iterations, $THREADS threads"
echo "  kino int8:                 $int8 images/s (pooled cosine to f32 >= $cosine)"
echo "  ONNX Runtime int8 dynamic: $ort images/s"
awk -v i="$int8" -v k="$kino" -v o="$ort" 'BEGIN { printf "  ratio kino int8/kino f32:  %.2fx\n  ratio kino int8/ORT int8:  %.2fx\n", i / k, i / o }'
