//! The Swin forward pass for the CPU on plain f32 buffers.
//!
//! It computes what [`Swin::forward_generic`] (and transformers) computes,
//! step for step, but without candle's per-op tensors: the weights are read
//! in place from the model's CPU tensors, every intermediate lives in a
//! [`Workspace`] that is reused from one batch to the next (no fresh pages to
//! fault in and zero per batch), and the steps between the matrix products
//! run on all threads and are fused where they touch the same rows:
//!
//! 1. window partition (pad, cyclic shift, windows) = a parallel gather of
//!    token rows, each layer-normed as it lands (`layernorm_before`; the
//!    padding rows stay zero, as transformers pads after the norm);
//! 2. `qᵀ = (win·Wq + bq)ᵀ` and `kv = win·Wkv + bkv` (biases pre-filled, the
//!    products accumulate onto them; the first product writes q transposed,
//!    which is how the attention kernel reads it);
//! 3. window attention (`ops::window_attention_t`), into `o`;
//! 4. `att = o·Wo`, then window
//!    reverse + bias + residual in one parallel pass: `x[t] += att[reverse[t]] + bo`;
//! 5. `h = LayerNorm(x)`, `i = act(h·W1 + b1)` (bias and activation in one
//!    pass), `x += b2 + i·W2` (the product accumulates onto `x`);
//! 6. patch merging = a gather of the four neighbours into one row, layer
//!    normed as it lands, then one product.

use candle_core::{bail, CpuStorage, DType, Device, Storage, StorageRef, Tensor};
use kino_kernels::{layer_norm_rows, matmul, ChannelRanges, Int8Linear, Mat, Threads};
use rayon::prelude::*;
use std::ops::{Deref, Range};

use super::{Block, BlockPlan, InputShape, LayerNorm, Merge, MergePlan, Plan, Swin, SwinOutput};
use crate::config::Activation;
use crate::error::Result;
use crate::ops;

/// Rows handed to one rayon task by the gathers and row-wise passes.
const ROWS_PER_TASK: usize = 32;

/// The f32 elements of a contiguous CPU tensor, borrowed (no copy).
struct View<'a> {
    guard: StorageRef<'a>,
    range: Range<usize>,
}

impl Deref for View<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.range.clone()],
            // `view` admits nothing else.
            _ => unreachable!("view of a non-f32 or non-CPU tensor"),
        }
    }
}

fn view(t: &Tensor) -> candle_core::Result<View<'_>> {
    let (guard, layout) = t.storage_and_layout();
    let Some((a, b)) = layout.contiguous_offsets() else {
        bail!("CPU forward: contiguous tensor expected")
    };
    if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
        bail!(
            "CPU forward: f32 CPU tensor expected, got {:?} on {:?}",
            t.dtype(),
            t.device()
        )
    }
    Ok(View { guard, range: a..b })
}

/// A layer norm's weight and bias, borrowed, and its epsilon.
fn norm_views(n: &LayerNorm) -> candle_core::Result<(View<'_>, View<'_>, f32)> {
    Ok((view(&n.w)?, view(&n.b)?, n.eps))
}

fn opt_view(t: &Option<Tensor>) -> candle_core::Result<Option<View<'_>>> {
    t.as_ref().map(view).transpose()
}

/// Buffers of one forward pass, kept between batches.
#[derive(Default)]
pub(super) struct Workspace {
    /// The token rows, `batch * tokens x dim`.
    x: Vec<f32>,
    /// Gathered rows (windows, patches, merged neighbours) and the attention output.
    rows: Vec<f32>,
    /// Fused q, k, v.
    qkv: Vec<f32>,
    /// Attention context, then the normed input of the MLP.
    ctx: Vec<f32>,
    /// The MLP's hidden layer.
    mlp: Vec<f32>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let floats = self.x.len() + self.rows.len() + self.qkv.len() + self.ctx.len() + self.mlp.len();
        write!(f, "Workspace({} MiB)", (floats * 4) >> 20)
    }
}

/// The first `n` elements of `v`, growing it (never shrinking) as needed.
/// Their content is whatever the last use left there.
fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.clear();
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Runs `f(row_index, row)` over the rows of `len` values of `buf`, in parallel.
fn par_rows(buf: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    buf.par_chunks_mut(len * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (i, row) in chunk.chunks_exact_mut(len).enumerate() {
                f(c * ROWS_PER_TASK + i, row);
            }
        });
}

/// `dst = x·W (+ dst when accumulate)` for `x` of `rows x inp` and `W` of `inp x out`.
fn product(x: &[f32], w: &[f32], rows: usize, inp: usize, out: usize, dst: &mut [f32], accumulate: bool) {
    matmul(
        rows,
        inp,
        out,
        Mat::rows(&x[..rows * inp], inp),
        Mat::rows(w, out),
        &mut dst[..rows * out],
        out,
        accumulate,
        1.0,
        Threads::All,
    );
}

/// Adds `bias` to every row of `dst` and applies `act`, in parallel.
fn bias_act(dst: &mut [f32], bias: &[f32], act: Activation) {
    if act == Activation::GeluErf {
        return ops::bias_rows_in_place(dst, bias, true);
    }
    par_rows(dst, bias.len(), |_, row| {
        for (v, b) in row.iter_mut().zip(bias) {
            let x = *v + b;
            *v = match act {
                Activation::GeluErf => unreachable!("handled above"),
                // candle's `gelu` (the tanh approximation).
                Activation::GeluTanh => {
                    0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * x * (1.0 + 0.044715 * x * x)).tanh())
                }
                Activation::Relu => x.max(0.0),
                Activation::Silu => x / (1.0 + (-x).exp()),
                Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
            };
        }
    });
}

/// What the linear layers of one forward pass do besides their product:
/// record their inputs (calibration) and compute in int8. Layers are counted
/// in the order the pass meets them (see `Swin::linear_shapes`).
pub(super) struct Linears<'a> {
    /// Each layer's input ranges, recorded (the f32 pass, for calibration).
    observe: Option<&'a mut [ChannelRanges]>,
    /// The int8 layers, used in place of the f32 products.
    int8: Option<&'a [Int8Linear]>,
    next: usize,
}

impl<'a> Linears<'a> {
    /// Plain f32 products.
    pub fn f32() -> Linears<'a> {
        Linears {
            observe: None,
            int8: None,
            next: 0,
        }
    }

    /// f32 products, each layer's input recorded into its ranges.
    pub fn observing(ranges: &'a mut [ChannelRanges]) -> Linears<'a> {
        Linears {
            observe: Some(ranges),
            ..Linears::f32()
        }
    }

    /// The int8 layers' products (f32 where `layers` is `None`).
    pub fn int8(layers: Option<&'a [Int8Linear]>) -> Linears<'a> {
        Linears {
            int8: layers,
            ..Linears::f32()
        }
    }

    /// The next layer: records its input `x` when observing, and gives its
    /// int8 form when there is one.
    fn next(&mut self, x: &[f32]) -> Option<&Int8Linear> {
        let i = self.next;
        self.next += 1;
        if let Some(r) = self.observe.as_deref_mut().and_then(|o| o.get_mut(i)) {
            r.observe(x);
        }
        self.int8.and_then(|l| l.get(i))
    }
}

/// Fills every row of `dst` with `bias`.
fn fill_rows(dst: &mut [f32], bias: &[f32]) {
    par_rows(dst, bias.len(), |_, row| row.copy_from_slice(bias));
}

impl Swin {
    /// [`Swin::forward`] on the CPU (see the module docs).
    pub(super) fn forward_cpu(&self, pixels: &Tensor) -> Result<SwinOutput> {
        self.forward_cpu_with(pixels, &mut Linears::int8(self.int8.as_ref().map(|q| &q.layers[..])))
    }

    /// [`Swin::forward_cpu`] with the linear layers doing what `lin` says.
    pub(super) fn forward_cpu_with(&self, pixels: &Tensor, lin: &mut Linears) -> Result<SwinOutput> {
        let shape = self.check_input(pixels)?;
        let plan = self.plan(shape.gh, shape.gw)?;
        let pixels = pixels.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?;
        let mut ws = self
            .workspaces
            .lock()
            .expect("workspace pool lock")
            .pop()
            .unwrap_or_default();
        let out = self.forward_cpu_in(&mut ws, &view(&pixels)?, &shape, &plan, lin);
        self.workspaces.lock().expect("workspace pool lock").push(ws);
        out
    }

    fn forward_cpu_in(
        &self,
        ws: &mut Workspace,
        px: &[f32],
        shape: &InputShape,
        plan: &Plan,
        lin: &mut Linears,
    ) -> Result<SwinOutput> {
        let &InputShape { b, c, h, w, gh, gw } = shape;
        let (ph, pw) = self.config.patch_size.hw();
        let d = self.config.embed_dim;
        let tokens = gh * gw;
        let k = c * ph * pw;
        // Patch embedding: each patch's pixels (zero beyond the image) as one
        // row, then one product and the norm.
        let patches = grow(&mut ws.rows, b * tokens * k);
        par_rows(patches, k, |r, row| {
            let (img, t) = (r / tokens, r % tokens);
            let (gi, gj) = (t / gw, t % gw);
            for ch in 0..c {
                let plane = &px[(img * c + ch) * h * w..][..h * w];
                for a in 0..ph {
                    let y = gi * ph + a;
                    for bb in 0..pw {
                        let xx = gj * pw + bb;
                        row[(ch * ph + a) * pw + bb] = if y < h && xx < w { plane[y * w + xx] } else { 0.0 };
                    }
                }
            }
        });
        let x = grow(&mut ws.x, b * tokens * d);
        fill_rows(x, &view(&self.patch_b)?);
        product(patches, &view(&self.patch_wt)?, b * tokens, k, d, x, true);
        {
            let (nw, nb, eps) = norm_views(&self.embed_norm)?;
            let pe = opt_view(&self.position_embeddings)?;
            par_rows(x, d, |r, row| {
                layer_norm_rows(row, &nw, &nb, eps);
                if let Some(pe) = &pe {
                    for (v, p) in row.iter_mut().zip(&pe[(r % tokens) * d..][..d]) {
                        *v += p;
                    }
                }
            });
        }
        let mut tokens = tokens;
        let mut dim = d;
        for (stage, sp) in self.stages.iter().zip(&plan.stages) {
            for (blk, bp) in stage.blocks.iter().zip(&sp.blocks) {
                self.block_cpu(ws, blk, bp, b, tokens, dim, lin)?;
            }
            if let (Some(m), Some(mp)) = (&stage.downsample, &sp.merge) {
                merge_cpu(ws, m, mp, b, tokens, dim, lin)?;
                tokens = mp.out.0 * mp.out.1;
                dim *= 2;
            }
        }
        // Final norm, average pooling, classifier.
        let mut last = ws.x[..b * tokens * dim].to_vec();
        {
            let (nw, nb, eps) = norm_views(&self.layernorm)?;
            par_rows(&mut last, dim, |_, row| layer_norm_rows(row, &nw, &nb, eps));
        }
        let mut pooled = vec![0f32; b * dim];
        for (p, img) in pooled.chunks_exact_mut(dim).zip(last.chunks_exact(tokens * dim)) {
            for row in img.chunks_exact(dim) {
                for (s, v) in p.iter_mut().zip(row) {
                    *s += v;
                }
            }
            for s in p.iter_mut() {
                *s /= tokens as f32;
            }
        }
        let logits = match &self.classifier {
            Some(cl) => {
                let bias = view(cl.b.as_ref().expect("the classifier has a bias"))?;
                let labels = bias.len();
                let mut out = vec![0f32; b * labels];
                fill_rows(&mut out, &bias);
                product(&pooled, &view(&cl.wt)?, b, dim, labels, &mut out, true);
                Some(Tensor::from_vec(out, (b, labels), &Device::Cpu)?)
            }
            None => None,
        };
        Ok(SwinOutput {
            last_hidden_state: Tensor::from_vec(last, (b, tokens, dim), &Device::Cpu)?,
            grid: plan.out,
            pooled: Tensor::from_vec(pooled, (b, dim), &Device::Cpu)?,
            logits,
        })
    }

    /// One block on `ws.x` (`b * tokens x dim`), in place.
    #[allow(clippy::too_many_arguments)]
    fn block_cpu(
        &self,
        ws: &mut Workspace,
        blk: &Block,
        bp: &BlockPlan,
        b: usize,
        tokens: usize,
        dim: usize,
        lin: &mut Linears,
    ) -> candle_core::Result<()> {
        let (n, nw, heads) = (bp.window_tokens, bp.windows, blk.heads);
        let per_image = nw * n;
        let rows = b * per_image;
        let x = &mut ws.x[..b * tokens * dim];
        // 1. Partition into windows, layer-normed.
        let win = grow(&mut ws.rows, rows * dim);
        {
            let (lw, lb, eps) = norm_views(&blk.layernorm_before)?;
            let src: &[f32] = x;
            par_rows(win, dim, |r, row| {
                let (img, p) = (r / per_image, r % per_image);
                let t = bp.partition_idx[p] as usize;
                if t == tokens {
                    row.fill(0.0);
                } else {
                    row.copy_from_slice(&src[(img * tokens + t) * dim..][..dim]);
                    layer_norm_rows(row, &lw, &lb, eps);
                }
            });
        }
        // 2. q, transposed (`dim × rows`, as the attention kernel reads it), then k and v.
        let w_qkv = view(&blk.qkv.wt)?;
        let b_qkv = opt_view(&blk.qkv.b)?;
        let buf = grow(&mut ws.qkv, dim * rows + 16 + rows * 2 * dim);
        let (q_t, kv) = buf.split_at_mut(dim * rows + 16);
        if let Some(q8) = lin.next(win) {
            // int8: q, k and v as one product with their biases, then q
            // transposed out of it and k, v copied.
            let qkv = grow(&mut ws.mlp, rows * 3 * dim);
            q8.forward(win, rows, b_qkv.as_deref(), qkv, 3 * dim, false);
            let qkv: &[f32] = qkv;
            par_rows(&mut q_t[..dim * rows], rows, |c, row| {
                for (r, v) in row.iter_mut().enumerate() {
                    *v = qkv[r * 3 * dim + c];
                }
            });
            par_rows(kv, 2 * dim, |r, row| {
                row.copy_from_slice(&qkv[r * 3 * dim + dim..][..2 * dim]);
            });
        } else {
            // f32: the biases pre-filled, the products accumulate onto them.
            if let Some(bias) = &b_qkv {
                par_rows(&mut q_t[..dim * rows], rows, |c, row| row.fill(bias[c]));
                fill_rows(kv, &bias[dim..]);
            }
            let has_bias = b_qkv.is_some();
            let wq_t = Mat {
                data: &w_qkv,
                row_stride: 1,
                col_stride: 3 * dim,
            };
            let win_t = Mat {
                data: win,
                row_stride: 1,
                col_stride: dim,
            };
            matmul(
                dim,
                dim,
                rows,
                wq_t,
                win_t,
                &mut q_t[..dim * rows],
                rows,
                has_bias,
                1.0,
                Threads::All,
            );
            let w_kv = Mat {
                data: &w_qkv[dim..],
                row_stride: 3 * dim,
                col_stride: 1,
            };
            matmul(
                rows,
                dim,
                2 * dim,
                Mat::rows(win, dim),
                w_kv,
                kv,
                2 * dim,
                has_bias,
                1.0,
                Threads::All,
            );
        }
        // 3. Attention, into o (`rows × dim`).
        let o = grow(&mut ws.ctx, rows * dim);
        let attention = ops::AttentionT {
            q_t,
            ldq: rows,
            kv,
            bias_t: &bp.bias_t,
            windows_per_image: nw,
            n,
            heads,
            hd: dim / heads,
        };
        ops::window_attention_t(&attention, o, dim);
        // 4. Output projection, window reverse, bias and residual.
        let att = grow(&mut ws.rows, rows * dim);
        if let Some(q8) = lin.next(o) {
            q8.forward(o, rows, None, att, dim, false);
        } else {
            let wo = view(&blk.output.wt)?;
            matmul(
                rows,
                dim,
                dim,
                Mat::rows(o, dim),
                Mat::rows(&wo, dim),
                att,
                dim,
                false,
                1.0,
                Threads::All,
            );
        }
        {
            let bo = view(blk.output.b.as_ref().expect("the attention output has a bias"))?;
            let att: &[f32] = att;
            par_rows(x, dim, |r, row| {
                let (img, t) = (r / tokens, r % tokens);
                let a = &att[(img * per_image + bp.reverse_idx[t] as usize) * dim..][..dim];
                for ((v, a), bias) in row.iter_mut().zip(a).zip(bo.iter()) {
                    *v += a + bias;
                }
            });
        }
        // 5. MLP.
        let hn = grow(&mut ws.ctx, b * tokens * dim);
        {
            let (lw, lb, eps) = norm_views(&blk.layernorm_after)?;
            let src: &[f32] = x;
            par_rows(hn, dim, |r, row| {
                row.copy_from_slice(&src[r * dim..][..dim]);
                layer_norm_rows(row, &lw, &lb, eps);
            });
        }
        let b1 = view(blk.intermediate.b.as_ref().expect("the MLP has biases"))?;
        let hidden = b1.len();
        let mid = grow(&mut ws.mlp, b * tokens * hidden);
        match lin.next(hn) {
            Some(q8) => q8.forward(hn, b * tokens, None, mid, hidden, false),
            None => product(hn, &view(&blk.intermediate.wt)?, b * tokens, dim, hidden, mid, false),
        }
        bias_act(mid, &b1, self.activation);
        let b2 = view(blk.mlp_out.b.as_ref().expect("the MLP has biases"))?;
        if let Some(q8) = lin.next(mid) {
            q8.forward(mid, b * tokens, Some(&b2[..]), x, dim, true);
            return Ok(());
        }
        par_rows(x, dim, |_, row| {
            for (v, bias) in row.iter_mut().zip(b2.iter()) {
                *v += bias;
            }
        });
        product(mid, &view(&blk.mlp_out.wt)?, b * tokens, hidden, dim, x, true);
        Ok(())
    }
}

/// Patch merging on `ws.x` (`b * tokens x dim` in, `b * tokens/4 x 2 dim` out).
fn merge_cpu(
    ws: &mut Workspace,
    m: &Merge,
    mp: &MergePlan,
    b: usize,
    tokens: usize,
    dim: usize,
    lin: &mut Linears,
) -> candle_core::Result<()> {
    let out_tokens = mp.out.0 * mp.out.1;
    let rows = grow(&mut ws.rows, b * out_tokens * 4 * dim);
    {
        let (lw, lb, eps) = norm_views(&m.norm)?;
        let src = &ws.x[..b * tokens * dim];
        par_rows(rows, 4 * dim, |r, row| {
            let (img, o) = (r / out_tokens, r % out_tokens);
            for (q, part) in row.chunks_exact_mut(dim).enumerate() {
                let t = mp.index_idx[o * 4 + q] as usize;
                if t == tokens {
                    part.fill(0.0);
                } else {
                    part.copy_from_slice(&src[(img * tokens + t) * dim..][..dim]);
                }
            }
            layer_norm_rows(row, &lw, &lb, eps);
        });
    }
    let x = grow(&mut ws.x, b * out_tokens * 2 * dim);
    if let Some(q8) = lin.next(rows) {
        q8.forward(rows, b * out_tokens, None, x, 2 * dim, false);
        return Ok(());
    }
    product(
        rows,
        &view(&m.reduction.wt)?,
        b * out_tokens,
        4 * dim,
        2 * dim,
        x,
        false,
    );
    Ok(())
}
