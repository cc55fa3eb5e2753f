#!/usr/bin/env bash
# Whole-video documents: 3,000-word transcripts embedded per second, kino
# (SentenceEncoder::encode_long: 128-token windows, stride 96, pooled by
# token count) against sentence-transformers encoding the same windows
# (the model's own tokenizer cut into the same spans, `model.encode` on the
# windows' text, batch 32, pooled the same way), same threads, one run.
# Also checks that the pooled vectors agree.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KINO_REF_PYTHON:?set by scripts/bench}"
: "${KINO_BENCH_DIR:?set by scripts/bench}"
KINO_HOME="${KINO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kino}"
MODEL="${KINO_TEST_TEXT_MODEL:-${KINO_MODELS:-$KINO_HOME/models}/sentence-transformers/all-MiniLM-L6-v2}"
THREADS="${KINO_BENCH_THREADS:-$(nproc)}"
BATCH=32
DOCS="${KINO_BENCH_DOCS:-20}"
dir="$KINO_BENCH_DIR/documents"
rm -rf "$dir/docs"
mkdir -p "$dir/docs"

# DOCS transcripts of 3,000 words: sentences of 6 to 24 words from a fixed
# vocabulary and a fixed seed.
"$KINO_REF_PYTHON" - "$dir/docs" "$DOCS" <<'PY'
import random, sys
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261203)
words = ("the a we you they it this that speaker audience lecture printing press paper ink type letter page book "
         "history century city river market guild church school student teacher question answer idea reason "
         "shows explains remembers argues describes builds prints reads writes sells carries changes grows "
         "early late slow fast cheap costly famous small large new old wooden metal careful quick "
         "because however then later first finally often never always again together").split()
for d in range(n):
    count, sentences = 0, []
    while count < 3000:
        k = rng.randint(6, 24)
        s = " ".join(rng.choice(words) for _ in range(k))
        sentences.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"]))
        count += k
    open(f"{out}/doc{d:03}.txt", "w").write(" ".join(sentences))
PY

cargo build --release --quiet -p kino-language --example doc_bench
kino_json="$(RAYON_NUM_THREADS="$THREADS" target/release/examples/doc_bench "$MODEL" "$dir/docs" "$dir/kino_pooled.json" "$BATCH")"

peer_json="$(HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$KINO_REF_PYTHON" - "$MODEL" "$dir/docs" "$BATCH" "$THREADS" "$dir/kino_pooled.json" <<'PY'
import glob, json, sys, time
import numpy as np
import torch
from sentence_transformers import SentenceTransformer
model_dir, docs_dir, batch, threads, kino_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
docs = [open(p).read() for p in sorted(glob.glob(docs_dir + "/*.txt"))]
model = SentenceTransformer(model_dir, device="cpu")
tok = model.tokenizer
WINDOW, STRIDE = 128, 96

def embed(text):
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    offs, n = enc["offset_mapping"], len(enc["input_ids"])
    spans, start = [], 0
    while True:
        end = min(start + WINDOW, n)
        spans.append((start, end))
        if end >= n:
            break
        start += STRIDE
    texts = [text[offs[s][0]:offs[e - 1][1]] for s, e in spans]
    vecs = model.encode(texts, batch_size=batch, convert_to_numpy=True, normalize_embeddings=True)
    w = np.array([e - s for s, e in spans], dtype=np.float64)
    pooled = (vecs.astype(np.float64) * w[:, None]).sum(0) / w.sum()
    return pooled / np.linalg.norm(pooled), len(spans)

embed(docs[0])  # warm-up
t = time.perf_counter()
with torch.inference_mode():
    results = [embed(d) for d in docs]
secs = time.perf_counter() - t
kino = np.array(json.load(open(kino_path)), dtype=np.float64)
cos = [float(np.dot(k / np.linalg.norm(k), p)) for k, (p, _) in zip(kino, results)]
print(json.dumps({"documents": len(docs), "windows": sum(n for _, n in results), "seconds": round(secs, 3),
                  "documents_per_s": round(len(docs) / secs, 2), "batch_size": batch, "threads": threads,
                  "min_cosine_to_kino": round(min(cos), 6)}))
PY
)"

"$KINO_REF_PYTHON" - "$kino_json" "$peer_json" <<'PY'
import json, sys
k, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"whole documents, all-MiniLM-L6-v2, {k['documents']} transcripts of 3,000 words "
      f"({k['windows']} windows of 128 tokens, stride 96), batch {k['batch_size']}, {k['threads']} threads")
print(f"  kino (encode_long)                {k['documents_per_s']:8.2f} documents/s  ({k['seconds']:.2f} s)")
print(f"  sentence-transformers (PyTorch)   {p['documents_per_s']:8.2f} documents/s  ({p['seconds']:.2f} s, {p['windows']} windows)")
print(f"  ratio kino/peer                   {k['documents_per_s'] / p['documents_per_s']:8.2f}x")
print(f"  pooled vectors agree: min cosine {p['min_cosine_to_kino']:.6f}")
PY
