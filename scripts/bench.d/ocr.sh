#!/usr/bin/env bash
# On-screen text: (1) frames read per second, kino-ocr (ort, Rust pre- and
# post-processing) against rapidocr 3.10 in Python, on the same ONNX Runtime
# 1.32, the same PP-OCRv6 models, the same threads and the same frames
# (eight 960x540 slides drawn with ffmpeg, the size the pipeline reads);
# (2) the cost of OCR in indexing a 10-minute lecture (slides changing every
# two minutes beside a presenter always moving): `kino ingest` with
# KINO_OCR=off and =auto, full-size Swin-T (random weights) as the vision
# model, and the number of frames read.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KINO_BENCH_DIR:?set by scripts/bench}"
: "${KINO_BIN:?set by scripts/bench}"
KINO_HOME="${KINO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kino}"
MODELS_SRC="${KINO_MODELS:-$KINO_HOME/models}"
THREADS="${KINO_BENCH_THREADS:-$(nproc)}"
ROUNDS="${KINO_BENCH_ROUNDS:-3}"
OCR_PYTHON="$(scripts/ocr-venv)"
dir="$KINO_BENCH_DIR/ocr"
mkdir -p "$dir/frames"
SANS=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
CJK=/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc

# --- (1) frames read per second -------------------------------------------
slide() { # name background colour font size line...
  local name="$1" bg="$2" fg="$3" font="$4" size="$5"; shift 5
  local f="color=c=$bg:s=960x540:d=1" y=50 i=0 vf=""
  for line in "$@"; do
    printf '%s' "$line" > "$dir/frames/$name-$i.txt"
    vf="${vf:+$vf,}drawtext=fontfile=$font:textfile=$dir/frames/$name-$i.txt:fontsize=$size:fontcolor=$fg:x=48:y=$y"
    y=$((y + size * 2)); i=$((i + 1))
  done
  [ -f "$dir/frames/$name.png" ] || ffmpeg -loglevel error -y -f lavfi -i "$f" -vf "$vf" -frames:v 1 "$dir/frames/$name.png"
}
slide title white black "$SANS" 44 "Distributed systems" "Lecture 7: consensus"
slide bullets white black "$SANS" 26 "Why consensus is hard" "- messages can be lost or delayed" \
  "- nodes can crash and restart" "- clocks drift apart" "- the network can partition"
slide code 0x1e1e1e 0xd4d4d4 "$SANS" 22 "fn propose(value: Value) -> Result<Ballot>" \
  "    let ballot = self.next_ballot();" "    self.broadcast(Prepare { ballot })?;" "    Ok(ballot)"
slide quote 0x1f3a93 white "$SANS" 34 "Any sufficiently advanced technology" "is indistinguishable from magic"
slide chinese white black "$CJK" 40 "分布式系统的一致性" "领导者选举与日志复制"
slide table white 0x202020 "$SANS" 24 "Protocol    Rounds    Leader" "Paxos       2         optional" \
  "Raft        1         required" "PBFT        3         required"
slide small white black "$SANS" 16 "References: Lamport 1998, Ongaro and Ousterhout 2014, Castro and Liskov 1999" \
  "Slides licensed CC BY 4.0 - questions to the course forum"
slide empty 0xf0f0f0 black "$SANS" 10 " "
frames=("$dir"/frames/*.png)

cargo build --release --quiet -p kino-ocr --example ocr_bench
kino_json="$(KINO_MODELS="$MODELS_SRC" target/release/examples/ocr_bench --threads "$THREADS" --rounds "$ROUNDS" "${frames[@]}")"
ref_json="$(cd scripts/fixtures && KINO_MODELS="$MODELS_SRC" "$OCR_PYTHON" ocr_bench.py --threads "$THREADS" --rounds "$ROUNDS" "${frames[@]}")"
echo "ocr: ${#frames[@]} frames 960x540, $ROUNDS rounds after a warm-up, $THREADS threads, PP-OCRv6 det/rec small + cls, ONNX Runtime 1.32"
echo "  kino-ocr:  $kino_json"
echo "  rapidocr:  $ref_json"
"$OCR_PYTHON" - "$kino_json" "$ref_json" <<'PY'
import json, sys
k, r = (json.loads(a) for a in sys.argv[1:3])
print(f"  frames/s kino-ocr {k['images_per_s']:.2f}, rapidocr {r['images_per_s']:.2f}: "
      f"ratio {k['images_per_s'] / r['images_per_s']:.2f}x (lines {k['lines']} vs {r['lines']})")
PY

# --- (2) OCR's share of indexing a 10-minute lecture ----------------------
SWIN="$KINO_BENCH_DIR/swin-t-random"
if [ ! -f "$SWIN/model.safetensors" ]; then
  : "${KINO_REF_PYTHON:?set by scripts/bench}"
  "$KINO_REF_PYTHON" - "$SWIN" <<'PY'
import sys, torch
from transformers import SwinConfig, SwinModel
torch.manual_seed(0)
cfg = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
SwinModel(cfg).eval().save_pretrained(sys.argv[1])
PY
fi
models="$dir/models"
mkdir -p "$models/microsoft" "$models/sentence-transformers" "$models/rapidocr" "$models/onnxruntime"
ln -sfn "$SWIN" "$models/microsoft/swin-tiny-patch4-window7-224"
ln -sfn "$MODELS_SRC/sentence-transformers/all-MiniLM-L6-v2" "$models/sentence-transformers/all-MiniLM-L6-v2"
ln -sfn "$MODELS_SRC/rapidocr/PP-OCRv6" "$models/rapidocr/PP-OCRv6"
ln -sfn "$MODELS_SRC/onnxruntime/1.32.0" "$models/onnxruntime/1.32.0"
lecture="$dir/lecture/lecture.mp4"
if [ ! -f "$lecture" ]; then
  mkdir -p "$dir/lecture"
  vf=""
  titles=("Week 5: Thermodynamics" "The first law: energy is conserved" "Entropy always increases" \
    "Heat engines and efficiency" "Summary and reading list")
  for i in 0 1 2 3 4; do
    printf '%s' "${titles[$i]}" > "$dir/lecture/$i.txt"
    vf="${vf:+$vf,}drawtext=fontfile=$SANS:textfile=$dir/lecture/$i.txt:fontsize=40:x=60:y=120:enable='between(t,$((i * 120)),$((i * 120 + 119)).999)'"
  done
  vf="$vf,drawbox=x=870+mod(t*37\\,330):y=260:w=160:h=400:color=0xc05030:t=fill"
  ffmpeg -loglevel error -y -f lavfi -i "color=c=white:s=1280x720:r=25:d=600" -vf "$vf" \
    -c:v libx264 -preset veryfast -crf 26 -pix_fmt yuv420p "$lecture"
  printf '1\n00:00:05,000 --> 00:00:09,000\nGood morning, everyone.\n\n' > "$dir/lecture/lecture.srt"
fi
index() { # ocr setting -> seconds
  rm -rf "$dir/home-$1"
  local t0 t1
  t0=$(date +%s.%N)
  KINO_OCR="$1" KINO_SPEECH=off "$KINO_BIN" -q --home "$dir/home-$1" --models "$models" ingest "$lecture" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
off="$(index off)"
on="$(index auto)"
reads="$(KINO_MODELS="$models" "$KINO_BIN" --models "$models" ocr "$lecture" 2>&1 >/dev/null | grep -o '[0-9]* frames sampled, [0-9]* read' || true)"
echo "ocr cost: 10-minute 1280x720 lecture (5 slides, moving presenter), kino ingest, Swin-T random weights, speech off"
echo "  ocr off: ${off} s, ocr on: ${on} s; $reads"
awk -v a="$off" -v b="$on" 'BEGIN { printf "  OCR share of indexing time: %.1f %%\n", (b - a) / b * 100 }'
