//! Projections: `y = x W^T` for a batch of activation rows against one weight matrix.
//!
//! Every output `y[t][r]` is computed by the same code in the same order whatever the
//! batch size, the thread count or the neighbours in the batch (DECISIONS.md,
//! "Determinism across batching"): threads split the weight rows, never the sum.

use std::cell::RefCell;

use woolly_kernels::dispatch::Kernels;
use woolly_kernels::ops::matvec::MatmulScratch;
use woolly_kernels::quant::{
    Block, BlockQ8_0, BlockQ8_1, BlockQ8K, blocks, dequantize_row, quantize_activations_q8_0,
    quantize_activations_q8_1, quantize_row_q8k,
};
use woolly_kernels::reference::quant_dot as qd;
use woolly_kernels::{GgmlType, Q4kOrder};

use crate::weights::Weight;

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 16;

thread_local! {
    /// One dequantized weight row per thread, reused across calls.
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The format activations are quantized to before a dot product with weights of type
/// `ty`, as ggml pairs them (`vec_dot_type` in `ggml-cpu/ggml-cpu.c`'s type traits).
pub fn activation_type(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::F32 => GgmlType::F32,
        GgmlType::F16 => GgmlType::F16,
        GgmlType::BF16 => GgmlType::BF16,
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => GgmlType::Q8_1,
        GgmlType::Q2K
        | GgmlType::Q3K
        | GgmlType::Q4K
        | GgmlType::Q5K
        | GgmlType::Q6K
        | GgmlType::Q8K => GgmlType::Q8K,
    }
}

/// Activation rows quantized to the format the weights pair with: `(n_tok, n_in)`.
enum Activations {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
    Q8K(Vec<BlockQ8K>),
}

impl Default for Activations {
    fn default() -> Self {
        Activations::F32(Vec::new())
    }
}

/// Resizes `v` to `n` blocks (reusing its memory) and quantizes `x` into it.
fn quantize_into<B: Block>(v: &mut Vec<B>, x: &[f32], n: usize, quantize: fn(&[f32], &mut [B])) {
    v.resize(n, B::ZERO);
    quantize(x, v);
}

impl Activations {
    /// Quantizes `x (n_tok, n_in)` for weights of type `ty`, reusing this buffer.
    fn quantize(&mut self, ty: GgmlType, x: &[f32]) {
        let act = activation_type(ty);
        let n_blocks = x.len() / act.block_len();
        match act {
            GgmlType::Q8_0 => {
                if !matches!(self, Activations::Q8_0(_)) {
                    *self = Activations::Q8_0(Vec::new());
                }
                let Activations::Q8_0(v) = self else {
                    unreachable!()
                };
                quantize_into(v, x, n_blocks, quantize_activations_q8_0);
            }
            GgmlType::Q8_1 => {
                if !matches!(self, Activations::Q8_1(_)) {
                    *self = Activations::Q8_1(Vec::new());
                }
                let Activations::Q8_1(v) = self else {
                    unreachable!()
                };
                quantize_into(v, x, n_blocks, quantize_activations_q8_1);
            }
            GgmlType::Q8K => {
                if !matches!(self, Activations::Q8K(_)) {
                    *self = Activations::Q8K(Vec::new());
                }
                let Activations::Q8K(v) = self else {
                    unreachable!()
                };
                quantize_into(v, x, n_blocks, quantize_row_q8k);
            }
            GgmlType::F16 => {
                if !matches!(self, Activations::F16(_)) {
                    *self = Activations::F16(Vec::new());
                }
                let Activations::F16(v) = self else {
                    unreachable!()
                };
                v.clear();
                v.extend(x.iter().map(|&f| half::f16::from_f32(f)));
            }
            _ => {
                if !matches!(self, Activations::F32(_)) {
                    *self = Activations::F32(Vec::new());
                }
                let Activations::F32(v) = self else {
                    unreachable!()
                };
                v.clear();
                v.extend_from_slice(x);
            }
        }
    }
}

/// Reusable buffers of [`matmul`].
#[derive(Default)]
pub(crate) struct LinearScratch {
    /// (n_out, n_tok) the result, transposed.
    yt: Vec<f32>,
    /// (n_tok, n_in) the activations, quantized.
    act: Activations,
    /// The dispatched kernels' own buffers.
    kernel: MatmulScratch,
}

/// One weight row (bytes of type `ty`) against one activation row `t`.
fn row_dot(
    ty: GgmlType,
    w: &[u8],
    act: &Activations,
    (t, n_tok): (usize, usize),
    order: Q4kOrder,
    n_in: usize,
    row: &mut [f32],
) -> f32 {
    fn blk<B: Block>(bytes: &[u8]) -> &[B] {
        blocks::<B>(bytes).expect("weight rows are whole, aligned blocks (checked at load)")
    }
    fn rows<B>(v: &[B], t: usize, per_row: usize) -> &[B] {
        &v[t * per_row..(t + 1) * per_row]
    }
    let nb = n_in / ty.block_len().max(1);
    if crate::ggml_exact::on()
        && let (GgmlType::Q6K, Activations::Q8K(a)) = (ty, act)
        && n_tok < crate::ggml_exact::TILED_MIN
    {
        // ggml's per-lane order for batches too short for its tiled path.
        return crate::ggml_exact::vec_dot_q6k_q8k(blk(w), rows(a, t, nb));
    }
    match (ty, act) {
        (GgmlType::Q4K, Activations::Q8K(a)) => match order {
            Q4kOrder::Gemm => qd::vec_dot_q4k_q8k(blk(w), rows(a, t, nb)),
            Q4kOrder::Gemv => qd::vec_dot_q4k_q8k_gemv(blk(w), rows(a, t, nb)),
        },
        (GgmlType::Q6K, Activations::Q8K(a)) => qd::vec_dot_q6k_q8k(blk(w), rows(a, t, nb)),
        (GgmlType::Q8_0, Activations::Q8_0(a)) => qd::vec_dot_q8_0_q8_0(blk(w), rows(a, t, nb)),
        (GgmlType::Q4_0, Activations::Q8_0(a)) => qd::vec_dot_q4_0_q8_0(blk(w), rows(a, t, nb)),
        (GgmlType::Q5_0, Activations::Q8_0(a)) => qd::vec_dot_q5_0_q8_0(blk(w), rows(a, t, nb)),
        (GgmlType::Q4_1, Activations::Q8_1(a)) => qd::vec_dot_q4_1_q8_1(blk(w), rows(a, t, nb)),
        (GgmlType::Q5_1, Activations::Q8_1(a)) => qd::vec_dot_q5_1_q8_1(blk(w), rows(a, t, nb)),
        (_, Activations::Q8K(a)) => {
            // Other k-quants: dequantize both sides (no integer dot written yet).
            dequantize_row(ty, w, row).expect("checked at load");
            let x: Vec<f32> = rows(a, t, n_in / 256)
                .iter()
                .flat_map(|b| {
                    let d = b.d;
                    b.qs.iter().map(move |&q| d * f32::from(q))
                })
                .collect();
            dot(row, &x)
        }
        (_, Activations::F16(a)) => {
            dequantize_row(ty, w, row).expect("checked at load");
            row.iter()
                .zip(rows(a, t, n_in))
                .map(|(&w, &x)| w * x.to_f32())
                .sum()
        }
        (_, Activations::F32(a)) => {
            dequantize_row(ty, w, row).expect("checked at load");
            dot(row, rows(a, t, n_in))
        }
        _ => unreachable!("activation_type pairs every weight type"),
    }
}

/// `y (n_tok, n_out) = x (n_tok, n_in) W^T`, with `W (n_out, n_in)` in `data`.
///
/// The activations are first quantized to the format ggml pairs with the weight type
/// (Q8_0, Q8_1, Q8_K or f16), and each product is the format's integer dot, as
/// llama.cpp computes it, so both engines round alike.
///
/// `orders` gives each token's [`Q4kOrder`] (empty: all gemm); only Q4_K weights read it.
#[expect(clippy::too_many_arguments, reason = "a matrix product's shapes")]
pub(crate) fn matmul(
    kernels: &Kernels,
    w: &Weight,
    data: &[u8],
    x: &[f32],
    n_tok: usize,
    y: &mut [f32],
    orders: &[Q4kOrder],
    ls: &mut LinearScratch,
) {
    debug_assert_eq!(x.len(), n_tok * w.n_in);
    debug_assert_eq!(y.len(), n_tok * w.n_out);
    if crate::ggml_exact::on() && crate::ggml_exact::covers(w.ty) {
        reference_matmul(w, data, x, n_tok, y, orders, ls);
        return;
    }
    if let Some(packed) = &w.packed {
        kernels
            .matmul_packed_many_ordered_with(&mut ls.kernel, &[packed], x, n_tok, &mut [y], orders)
            .expect("weight shapes were checked at load");
        return;
    }
    if Kernels::supports(w.ty) {
        kernels
            .matmul_ordered_with(
                &mut ls.kernel,
                w.ty,
                data,
                w.n_out,
                w.n_in,
                x,
                n_tok,
                y,
                orders,
            )
            .expect("weight shapes were checked at load");
        return;
    }
    reference_matmul(w, data, x, n_tok, y, orders, ls);
}

/// `ys[i] = x W_i^T` for projections of the same input (a layer's q, k and v; its gate
/// and up): one parallel pass over all of them when they are packed with a shared
/// activation format, else one [`matmul`] each. Bit-identical either way.
pub(crate) fn matmul_many<const N: usize>(
    kernels: &Kernels,
    ws: [(&Weight, &[u8]); N],
    x: &[f32],
    n_tok: usize,
    ys: &mut [&mut [f32]; N],
    orders: &[Q4kOrder],
    ls: &mut LinearScratch,
) {
    let act = |w: &Weight| w.packed.as_ref().map(|p| p.activation_type());
    if N > 0
        && !(crate::ggml_exact::on() && ws.iter().any(|(w, _)| crate::ggml_exact::covers(w.ty)))
        && ws
            .iter()
            .all(|(w, _)| act(w).is_some() && act(w) == act(ws[0].0))
    {
        let packed = ws.map(|(w, _)| w.packed.as_deref().expect("checked above"));
        kernels
            .matmul_packed_many_ordered_with(&mut ls.kernel, &packed, x, n_tok, ys, orders)
            .expect("weight shapes were checked at load");
        return;
    }
    for ((w, data), y) in ws.into_iter().zip(ys.iter_mut()) {
        matmul(kernels, w, data, x, n_tok, y, orders, ls);
    }
}

/// [`matmul`] for the weight types the kernels do not cover yet, with the scalar
/// reference dots.
fn reference_matmul(
    w: &Weight,
    data: &[u8],
    x: &[f32],
    n_tok: usize,
    y: &mut [f32],
    orders: &[Q4kOrder],
    ls: &mut LinearScratch,
) {
    let (n_in, n_out) = (w.n_in, w.n_out);
    let row_bytes = w.row_bytes();
    ls.act.quantize(w.ty, x);
    let act = &ls.act;
    let yt = &mut ls.yt;
    yt.resize(n_out * n_tok, 0.0);
    woolly_kernels::team::for_each_chunk(yt, ROWS_PER_TASK * n_tok, |task, out| {
        ROW.with_borrow_mut(|row| {
            row.resize(n_in, 0.0);
            for (i, out_row) in out.chunks_exact_mut(n_tok).enumerate() {
                let r = task * ROWS_PER_TASK + i;
                let src = &data[r * row_bytes..(r + 1) * row_bytes];
                for (t, o) in out_row.iter_mut().enumerate() {
                    let order = orders.get(t).copied().unwrap_or_default();
                    *o = row_dot(w.ty, src, act, (t, n_tok), order, n_in, row);
                }
            }
        })
    });
    for t in 0..n_tok {
        for r in 0..n_out {
            y[t * n_out + r] = yt[r * n_tok + t];
        }
    }
}

/// Dot product in a fixed order (eight running sums, then a fixed reduction). Plain
/// multiply-add: `f32::mul_add` is a slow library call on CPUs built without FMA.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += ca[j] * cb[j];
        }
    }
    let mut tail = 0f32;
    for (x, y) in a[chunks..].iter().zip(&b[chunks..]) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
