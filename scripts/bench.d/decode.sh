#!/usr/bin/env bash
# Decoding: sampled frames per second at 1 fps from a 60 s 1280x720 H.264 clip,
# kino (ffmpeg-next, threaded decode, swscale to RGB) against the ffmpeg CLI doing the
# same work in the same run:
#   raw: kino's decode_bench example writing rgb24 to /dev/null
#        vs `ffmpeg -i X -vf fps=1 -f rawvideo -pix_fmt rgb24 -` to /dev/null
#   png: `kino frames X --fps 1 --out D` vs `ffmpeg -i X -vf fps=1 D/%09d.png`
# Both sides decode with all cores; output size is the native 1280x720.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR="${KINO_BENCH_DECODE_SECONDS:-60}"
RUNS="${KINO_BENCH_DECODE_RUNS:-3}"
CLIP="$KINO_BENCH_DIR/decode-${DUR}s-720p.mp4"
[ -n "${KINO_BENCH_NO_BUILD:-}" ] || cargo build --release --quiet -p kino-ingest --example decode_bench
if [ ! -f "$CLIP" ]; then
  ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i "testsrc2=s=1280x720:r=30:d=$DUR" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 60 -bf 2 "$CLIP"
fi
now() { date +%s.%N; }
best() { sort -g | head -1; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.2f", n / t }'; }

raw_kino=(); raw_ff=(); png_kino=(); png_ff=()
for _ in $(seq "$RUNS"); do
  t0=$(now); frames_k=$(target/release/examples/decode_bench "$CLIP" 1 2>&1 >/dev/null | sed -n 's/^frames=\([0-9]*\).*/\1/p'); t1=$(now)
  raw_kino+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
  t0=$(now); ffmpeg -hide_banner -loglevel error -nostdin -i "$CLIP" -vf fps=1 -f rawvideo -pix_fmt rgb24 - >/dev/null; t1=$(now)
  raw_ff+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
  rm -rf "$KINO_BENCH_DIR/png-k" "$KINO_BENCH_DIR/png-f"; mkdir -p "$KINO_BENCH_DIR/png-f"
  t0=$(now); "$KINO_BIN" -q frames "$CLIP" --fps 1 --out "$KINO_BENCH_DIR/png-k" >/dev/null; t1=$(now)
  png_kino+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
  t0=$(now); ffmpeg -hide_banner -loglevel error -nostdin -i "$CLIP" -vf fps=1 "$KINO_BENCH_DIR/png-f/%09d.png"; t1=$(now)
  png_ff+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
done
frames_pk=$(ls "$KINO_BENCH_DIR/png-k" | wc -l); frames_pf=$(ls "$KINO_BENCH_DIR/png-f" | wc -l)
rk=$(printf '%s\n' "${raw_kino[@]}" | best); rf=$(printf '%s\n' "${raw_ff[@]}" | best)
pk=$(printf '%s\n' "${png_kino[@]}" | best); pf=$(printf '%s\n' "${png_ff[@]}" | best)
echo "decode: ${DUR} s 1280x720 H.264 30 fps, sample 1 fps, best of $RUNS, $(nproc) cores"
echo "  raw rgb24  kino: $frames_k frames in ${rk}s = $(rate "$frames_k" "$rk") frames/s"
echo "  raw rgb24  ffmpeg: $frames_k frames in ${rf}s = $(rate "$frames_k" "$rf") frames/s"
echo "  raw ratio kino/ffmpeg (speed): $(awk -v a="$rk" -v b="$rf" 'BEGIN{printf "%.2f", b/a}')"
echo "  png        kino frames: $frames_pk frames in ${pk}s = $(rate "$frames_pk" "$pk") frames/s"
echo "  png        ffmpeg: $frames_pf frames in ${pf}s = $(rate "$frames_pf" "$pf") frames/s"
echo "  png ratio kino/ffmpeg (speed): $(awk -v a="$pk" -v b="$pf" 'BEGIN{printf "%.2f", b/a}')"
