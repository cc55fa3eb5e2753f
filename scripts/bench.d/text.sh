#!/usr/bin/env bash
# Text encoding: sentences per second, kino (f32, and int8 linear layers) against
# sentence-transformers (PyTorch, CPU, same threads), on the same 1,000
# deterministic sentences of varied length, same batch size (32), same model.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KINO_REF_PYTHON:?set by scripts/bench}"
: "${KINO_BENCH_DIR:?set by scripts/bench}"
KINO_HOME="${KINO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kino}"
MODEL="${KINO_TEST_TEXT_MODEL:-${KINO_MODELS:-$KINO_HOME/models}/sentence-transformers/all-MiniLM-L6-v2}"
THREADS="${KINO_BENCH_THREADS:-$(nproc)}"
BATCH=32
dir="$KINO_BENCH_DIR/text"
mkdir -p "$dir"
sentences="$dir/sentences.txt"

# 1,000 sentences, 3 to 80 words, from a fixed vocabulary and a fixed seed.
"$KINO_REF_PYTHON" - "$sentences" <<'PY'
import random, sys
rng = random.Random(20261129)
words = ("the a man woman child dog cat car train city river mountain night morning rain sun walks runs "
         "talks looks finds opens closes sings plays reads writes old new small big red blue quiet loud "
         "slowly quickly under over near behind inside kitchen street station market harbour forest "
         "camera scene music voice door window letter phone story friend family ship storm").split()
lines = []
for i in range(1000):
    n = rng.choice([3, 5, 8, 12, 16, 20, 25, 30, 40, 60, 80])
    s = " ".join(rng.choice(words) for _ in range(n))
    lines.append(s[0].upper() + s[1:] + rng.choice([".", "?", "!", "..."]))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY

cargo build --release --quiet -p kino-language --example text_bench
# Three JSON lines: f32, int8, then the int8/f32 ratio and cosines.
kino_out="$(RAYON_NUM_THREADS="$THREADS" target/release/examples/text_bench "$MODEL" "$sentences" "$BATCH" --precision both)"

peer_json="$(HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$KINO_REF_PYTHON" - "$MODEL" "$sentences" "$BATCH" "$THREADS" <<'PY'
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
model_dir, path, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
sentences = open(path).read().splitlines()
model = SentenceTransformer(model_dir, device="cpu")
model.encode(sentences[:batch], batch_size=batch)  # warm-up
t = time.perf_counter()
with torch.inference_mode():
    out = model.encode(sentences, batch_size=batch, convert_to_numpy=True)
secs = time.perf_counter() - t
assert out.shape[0] == len(sentences)
print(json.dumps({"sentences": len(sentences), "seconds": round(secs, 3),
                  "sentences_per_s": round(len(sentences) / secs, 1), "batch_size": batch, "threads": threads}))
PY
)"

"$KINO_REF_PYTHON" - "$kino_out" "$peer_json" <<'PY'
import json, sys
k, q, c = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
p = json.loads(sys.argv[2])
print(f"text encoding, all-MiniLM-L6-v2, {k['sentences']} sentences, batch {k['batch_size']}, {k['threads']} threads")
print(f"  kino f32                         {k['sentences_per_s']:8.1f} sentences/s  ({k['seconds']:.2f} s)")
print(f"  kino int8                        {q['sentences_per_s']:8.1f} sentences/s  ({q['seconds']:.2f} s)"
      f"  cosine to f32: min {c['min_cosine']:.5f}, mean {c['mean_cosine']:.5f}")
print(f"  sentence-transformers (PyTorch)  {p['sentences_per_s']:8.1f} sentences/s  ({p['seconds']:.2f} s)")
print(f"  ratio kino f32/peer              {k['sentences_per_s'] / p['sentences_per_s']:8.2f}x")
print(f"  ratio kino int8/kino f32         {q['sentences_per_s'] / k['sentences_per_s']:8.2f}x")
print(f"  ratio kino int8/peer             {q['sentences_per_s'] / p['sentences_per_s']:8.2f}x")
PY
