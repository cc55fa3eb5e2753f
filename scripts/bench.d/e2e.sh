#!/usr/bin/env bash
# End-to-end indexing speed: seconds of video indexed per second of wall
# time, `kino ingest` against the pipeline a user would write in Python
# (ffmpeg CLI frames at 1 fps scaled to 224 + transformers SwinModel +
# sentence-transformers for the subtitles), same videos, same sampling, same
# full-size Swin-T (random weights), same machine, same run. Both sides are
# timed as whole processes, model loading included, taking turns
# (KINO_BENCH_E2E_RUNS each, default 3); the ratio is that of the medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${KINO_BENCH_E2E_VIDEOS:-3}"
SECS="${KINO_BENCH_E2E_SECS:-60}"
RUNS="${KINO_BENCH_E2E_RUNS:-3}"
W="$KINO_BENCH_DIR/e2e"
LIB="$W/lib"
MODELS="$W/models"
TEXT="${KINO_MODELS:-${KINO_HOME:-$HOME/.local/share/kino}/models}/sentence-transformers/all-MiniLM-L6-v2"
SWIN="$KINO_BENCH_DIR/swin-t-random"
mkdir -p "$LIB" "$MODELS/sentence-transformers" "$MODELS/microsoft"
[ -f "$TEXT/model.safetensors" ] || { echo "text model missing at $TEXT: run scripts/setup" >&2; exit 1; }
ln -sfn "$TEXT" "$MODELS/sentence-transformers/all-MiniLM-L6-v2"
if [ ! -f "$SWIN/model.safetensors" ]; then
  "$KINO_REF_PYTHON" - "$SWIN" <<'PY'
import sys, torch
from transformers import SwinConfig, SwinModel
torch.manual_seed(0)
cfg = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
SwinModel(cfg).eval().save_pretrained(sys.argv[1])
PY
fi
ln -sfn "$SWIN" "$MODELS/microsoft/swin-tiny-patch4-window7-224"
for i in $(seq 0 $((N - 1))); do
  v="$LIB/clip$i.mp4"
  if [ ! -f "$v" ]; then
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=s=1280x720:r=25:d=$SECS" -vf "hue=h=$((i * 60))" \
      -c:v libx264 -preset veryfast -pix_fmt yuv420p "$v"
    : > "$LIB/clip$i.srt"
    for s in $(seq 0 5 $((SECS - 5))); do
      printf '%d\n00:%02d:%02d,000 --> 00:%02d:%02d,500\nClip %d, line at %d seconds: the quick brown fox jumps over the lazy dog.\n\n' \
        $((s / 5 + 1)) $((s / 60)) $((s % 60)) $(((s + 4) / 60)) $(((s + 4) % 60)) "$i" "$s" >> "$LIB/clip$i.srt"
    done
  fi
done
total=$((N * SECS))

# One run of each side; prints its wall seconds.
run_kino() {
  local t0 t1
  t0=$(date +%s.%N)
  rm -rf "$W/home"
  "$KINO_BIN" -q --home "$W/home" --models "$MODELS" ingest "$LIB" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
run_python() {
  local t0 t1
  t0=$(date +%s.%N)
  "$KINO_REF_PYTHON" - "$LIB" "$SWIN" "$TEXT" >/dev/null <<'PY'
# The reference pipeline a user might write: ffmpeg CLI + transformers + sentence-transformers.
import glob, re, subprocess, sys
import numpy as np, torch
from sentence_transformers import SentenceTransformer
from transformers import SwinModel
lib, swin_dir, text_dir = sys.argv[1:4]
torch.set_num_threads(torch.get_num_threads())
swin = SwinModel.from_pretrained(swin_dir).eval()
st = SentenceTransformer(text_dir, device="cpu")
mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
for video in sorted(glob.glob(f"{lib}/*.mp4")):
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", video, "-vf", "fps=1,scale=224:224",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 224, 224, 3)
    x = (frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
    pooled = []
    with torch.inference_mode():
        for b in range(0, len(x), 8):
            pooled.append(swin(pixel_values=torch.from_numpy(x[b:b + 8])).pooler_output.numpy())
    text = open(video[:-4] + ".srt", encoding="utf-8").read()
    cues = [c.split("\n", 2)[2].strip() for c in text.strip().split("\n\n") if c.count("\n") >= 2]
    emb = st.encode(cues, batch_size=32)
PY
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The two sides take turns, RUNS times each, and the ratio is that of the
# medians: on a shared machine whose speed drifts, one run of each would
# compare different moments.
ks=(); ps=()
for r in $(seq 1 "$RUNS"); do
  ks+=("$(run_kino)")
  ps+=("$(run_python)")
  echo "  run $r: kino ${ks[-1]} s, Python ${ps[-1]} s" >&2
done
kino_s=$(printf '%s\n' "${ks[@]}" | median)
py_s=$(printf '%s\n' "${ps[@]}" | median)

echo "end-to-end: $N videos x ${SECS}s (1280x720 h264, subtitles every 5 s), 1 fps, full-size Swin-T (random weights), median of $RUNS alternating runs"
awk -v t="$total" -v k="$kino_s" -v p="$py_s" 'BEGIN {
  printf "  kino ingest:              %6.1f s wall, %6.1f s of video per s\n", k, t / k
  printf "  Python (ffmpeg+HF+ST):    %6.1f s wall, %6.1f s of video per s\n", p, t / p
  printf "  ratio kino/python:        %.2fx\n", p / k
}'
