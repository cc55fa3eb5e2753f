"""The peer of train_bench.rs: the same learning step in PyTorch.

The same synthetic one-hour library (3,600 frames of 768-d pooled vectors, 120 videos of 20 classes, a cue every
3 s with one text per class), the same model (a linear projection of standardised inputs into the 384-d text space),
the same loss (MIL-NCE both ways, positive bag = cues within +-2.5 s, the same video's other cues masked), the same
batches (64 frames, 4 accumulated), AdamW, warm-up and cosine decay, clipping, 30 epochs without evaluation.
The data come from NumPy's generator (not kino's), so only the time is compared.

Usage: python train_bench_peer.py [EPOCHS]; prints name=value lines.
"""
import math
import sys
import time

import numpy as np
import torch

torch.set_num_threads(max(1, torch.get_num_threads()))


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    d, v, classes, videos, frames_per, cues_per = 384, 768, 20, 120, 30, 10
    rng = np.random.default_rng(7)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    text = unit(rng.standard_normal((classes, d))).astype(np.float32)
    visual = unit(rng.standard_normal((classes, v))).astype(np.float32)
    cls = np.arange(videos) % classes
    x = (3.0 * visual[np.repeat(cls, frames_per)] + rng.standard_normal((videos * frames_per, v))).astype(np.float32)
    frame_video = np.repeat(np.arange(videos), frames_per)
    frame_pts = np.tile(np.arange(frames_per) * 1000, videos)
    cue_video = np.repeat(np.arange(videos), cues_per)
    cue_start = np.tile(np.arange(cues_per) * 3000, videos)
    cue_emb = text[cls[cue_video]]
    # Positive bags: cues of the same video overlapping [pts - 2500, pts + 2500).
    lo, hi = frame_pts[:, None] - 2500, frame_pts[:, None] + 2500
    same = frame_video[:, None] == cue_video[None, :]
    bag = same & (cue_start[None, :] < hi) & (cue_start[None, :] + 3000 > lo)

    xs = torch.from_numpy(x)
    mean, std = xs.mean(0), xs.std(0).clamp_min(1e-6)
    xs = (xs - mean) / std
    cues = torch.from_numpy(cue_emb)
    bag_t, same_t = torch.from_numpy(bag), torch.from_numpy(same)
    g = torch.Generator().manual_seed(17)
    w = torch.nn.Parameter(0.02 * torch.randn(d, v, generator=g))
    b = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.AdamW([w, b], lr=2e-3, weight_decay=1e-4)
    batch, accumulate, tau = 64, 4, 0.07
    n = xs.shape[0]
    steps_per_epoch = math.ceil(n / (batch * accumulate))
    total = epochs * steps_per_epoch
    warmup = min(50, total // 10)

    def lr_at(step):
        if step < warmup:
            return 2e-3 * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    start = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=g)
        for s in range(0, n, batch * accumulate):
            opt.zero_grad()
            chunk = order[s : s + batch * accumulate]
            micro = chunk.split(batch)
            for idx in micro:
                cand = bag_t[idx].any(0).nonzero().squeeze(1)
                f = torch.nn.functional.normalize(xs[idx] @ w.T + b, dim=-1)
                logits = f @ cues[cand].T / tau
                pos, sm = bag_t[idx][:, cand], same_t[idx][:, cand]
                allowed = pos | ~sm
                neg_inf = torch.finfo(logits.dtype).min
                l_f = -(torch.logsumexp(logits.masked_fill(~pos, neg_inf), 1) - torch.logsumexp(logits.masked_fill(~allowed, neg_inf), 1))
                lt = logits.T
                l_t = -(torch.logsumexp(lt.masked_fill(~pos.T, neg_inf), 1) - torch.logsumexp(lt.masked_fill(~allowed.T, neg_inf), 1))
                loss = (l_f.mean() + l_t.mean()) / len(micro)
                loss.backward()
            torch.nn.utils.clip_grad_norm_([w, b], 1.0)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.step()
            step += 1
    secs = time.perf_counter() - start
    print(f"frames={n}")
    print(f"steps={step}")
    print(f"train_seconds={secs:.2f}")


if __name__ == "__main__":
    main()
