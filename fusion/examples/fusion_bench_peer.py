"""Peer for fusion_bench.rs: the same work written the way a Python user would, with PyTorch and NumPy.

fuse: per segment, two torch.nn.MultiheadAttention blocks (text->visual, visual->text; 384-d, 4 heads) set to
      kino's default weights (identity projections, logit scale 40 per head), residual + LayerNorm, pooled and
      blended like kino-fusion; 4 cue tokens + 1 label token per segment, one segment at a time.
rank: NumPy over N segments: 0.5*fused + 0.3*text + 0.2*visual cosine (unit vectors: matrix-vector products),
      top 10 by argpartition (no merging of neighbours: less work than kino does).
Usage: python fusion_bench_peer.py [SEGMENTS_TO_FUSE] [CANDIDATES] [QUERIES]; prints name=value lines.
"""
import math
import sys
import time

import numpy as np
import torch

n_fuse = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
n_cand = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
n_query = int(sys.argv[3]) if len(sys.argv) > 3 else 20
d, heads = 384, 4
hd = d // heads
rng = np.random.default_rng(7)


def unit(*shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def block():
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        eye = torch.eye(d)
        # torch scales logits by 1/sqrt(hd); kino's default logit scale is 10*heads.
        mha.in_proj_weight.copy_(torch.cat([eye * (10.0 * heads) * math.sqrt(hd), eye, eye]))
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(eye)
        mha.out_proj.bias.zero_()
    ln = torch.nn.LayerNorm(d, eps=1e-5)
    return mha.eval(), ln.eval()


t2v, v2t = block(), block()
inputs = [(torch.from_numpy(unit(1, 4, d)), torch.tensor([1.0, 1.0, 0.5, 0.5]), torch.from_numpy(unit(1, 1, d)))
          for _ in range(min(n_fuse, 1000))]


def fuse(text, w, vis):
    t = t2v[1](text + t2v[0](text, vis, vis, need_weights=False)[0])
    v = v2t[1](vis + v2t[0](vis, text, text, need_weights=False)[0])
    t = torch.nn.functional.normalize(t[0], dim=-1)
    v = torch.nn.functional.normalize(v[0], dim=-1)
    tp = torch.nn.functional.normalize((t * w[:, None]).sum(0), dim=0)
    vp = torch.nn.functional.normalize(v.mean(0), dim=0)
    return torch.nn.functional.normalize(tp + vp, dim=0)


with torch.no_grad():
    fuse(*inputs[0])
    t0 = time.perf_counter()
    check = 0.0
    for i in range(n_fuse):
        check += float(fuse(*inputs[i % len(inputs)])[0])
    secs = time.perf_counter() - t0
print(f"fuse_segments={n_fuse}")
print(f"fuse_seconds={secs:.4f}")
print(f"fuse_per_second={n_fuse / secs:.1f}")

F, T, V = unit(n_cand, d), unit(n_cand, d), unit(n_cand, d)
Q = unit(n_query, d)
t0 = time.perf_counter()
for q in Q:
    s = 0.5 * (F @ q) + 0.3 * (T @ q) + 0.2 * (V @ q)
    top = np.argpartition(-s, 10)[:10]
    top = top[np.argsort(-s[top])]
secs = time.perf_counter() - t0
print(f"rank_candidates={n_cand}")
print(f"rank_queries={n_query}")
print(f"rank_seconds={secs:.4f}")
print(f"rank_queries_per_second={n_query / secs:.2f}")
