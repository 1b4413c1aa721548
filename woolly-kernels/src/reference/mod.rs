//! Scalar references for the float kernels: the oracles every variant is tested against.
//!
//! Written for clarity, like llama2.c's `run.c`: one loop per idea, shapes in comments.
//! Sums accumulate in f64 so the oracle's own rounding error is far below the tolerance
//! a kernel is held to. The quantized references live in [`crate::quant`] (block
//! formats) and [`quant_dot`].

use half::f16;

pub mod quant_dot;
pub mod quant_tile;

/// `y = x * w / sqrt(mean(x^2) + eps)`.                 shapes: x, w, y: (n,)
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let n = x.len();
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let scale = 1.0 / (ss / n as f64 + eps as f64).sqrt();
    for i in 0..n {
        y[i] = (x[i] as f64 * scale * w[i] as f64) as f32;
    }
}

/// In-place softmax: `x[i] = exp(x[i] - max) / sum_j exp(x[j] - max)`. shapes: x: (n,)
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    for v in x.iter_mut() {
        *v = (*v as f64 / sum) as f32;
    }
}

/// SwiGLU's elementwise half, in place: `gate = silu(gate) * up`, `silu(g) = g / (1 + e^-g)`.
/// shapes: gate, up: (n,)
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g as f64;
        *g = (x / (1.0 + (-x).exp()) * u as f64) as f32;
    }
}

/// `sum_i a[i] * b[i]`.                                  shapes: a, b: (n,)
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum::<f64>() as f32
}

/// `sum_i a[i] * b[i]` over f16 inputs.                  shapes: a, b: (n,)
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.to_f64() * y.to_f64())
        .sum::<f64>() as f32
}

/// `sum_i a[i] * b[i]` with f16 `a` and f32 `b`.         shapes: a, b: (n,)
pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, &y)| x.to_f64() * y as f64)
        .sum::<f64>() as f32
}

/// The rotation angles' cosines and sines for position `pos`, shared by the reference
/// and every RoPE variant so they rotate by bit-identical angles. Pair `i` (of
/// `n_rot / 2`) turns by `pos * freq_base^(-2i / n_rot) / freq_factors[i]`
/// (`freq_factors` empty = all 1; Llama 3's `rope_freqs` tensor otherwise).
/// shapes: cos, sin: (n_rot / 2,)
pub fn rope_angles(
    pos: usize,
    n_rot: usize,
    freq_base: f32,
    freq_factors: &[f32],
    cos: &mut [f32],
    sin: &mut [f32],
) {
    for i in 0..n_rot / 2 {
        let inv_freq = freq_base.powf(-2.0 * i as f32 / n_rot as f32);
        let factor = freq_factors.get(i).copied().unwrap_or(1.0);
        let theta = pos as f32 * inv_freq / factor;
        cos[i] = theta.cos();
        sin[i] = theta.sin();
    }
}

/// Rotary position embedding of every head of `x`, in place.
///
/// The first `n_rot` dimensions of each head are rotated in pairs, the rest are left as
/// they are. `neox = false` is GGUF's "normal" layout (pairs `(2i, 2i+1)`, LLaMA);
/// `neox = true` pairs `(i, i + n_rot/2)` (GPT-NeoX, Qwen, ...).
/// shapes: x: (n_head, head_dim)
pub fn rope(
    x: &mut [f32],
    head_dim: usize,
    pos: usize,
    n_rot: usize,
    freq_base: f32,
    freq_factors: &[f32],
    neox: bool,
) {
    let half = n_rot / 2;
    let mut cos = vec![0.0; half];
    let mut sin = vec![0.0; half];
    rope_angles(pos, n_rot, freq_base, freq_factors, &mut cos, &mut sin);
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (a, b) = if neox {
                (i, i + half)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos[i] - x1 * sin[i];
            head[b] = x0 * sin[i] + x1 * cos[i];
        }
    }
}

/// Attention of the query heads `q` that share KV head `kv_head` (grouped-query: query
/// head `h` reads KV head `h / (n_head / n_kv_head)`, so a token's heads come in groups):
/// `out[j] = sum_p softmax_p(q[j] . k[p] / sqrt(head_dim)) v[p]`, the softmax weights
/// left in `scores[j]`. Keys are transposed in blocks of `K_BLOCK` positions
/// ([`crate::ops::attention::K_BLOCK`]): key `p`, dimension `d` is
/// `k[((p / K_BLOCK * n_kv_head + kv_head) * head_dim + d) * K_BLOCK + p % K_BLOCK]`.
///
/// Unlike the other references this one fixes the f32 arithmetic rather than computing
/// in f64, because the kernels must match it bit for bit, and it is llama.cpp's: the
/// order of ggml's non-flash attention on x86 (its f16/f32 matrix products by tinyBLAS
/// with one 16-lane FMA accumulator, see `ops/attention.rs`). Scores and weighted sums
/// of values each sum in 16 lanes (a score's lane `d % 16`, a weighted sum's lane
/// `p % 16`, each a chain of `mul_add` from +0 in order) reduced by [`reduce16`]; the
/// softmax takes ggml's vector exp ([`crate::simd::Simd::exp_ggml`]) and sums each 16
/// positions by [`reduce16`] into an f64. A test below holds it to the f64 formula.
/// shapes: q, out: (n_q, head_dim); k: (ceil(n_pos / K_BLOCK), n_kv_head, head_dim,
/// K_BLOCK); v: (n_pos, n_kv_head, head_dim); scores: (n_q, n_pos)
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend(
        q,
        k,
        v,
        n_kv_head,
        kv_head,
        head_dim,
        (false, 1),
        scores,
        out,
    );
}

/// [`attention`] with an f16 KV cache, rounding as ggml's f16 matrix products round their
/// f32 operand: `q` is rounded to f16 (in place), and so are the normalized weights
/// before they multiply the values.
/// shapes: q, out: (n_q, head_dim); k: (ceil(n_pos / K_BLOCK), n_kv_head, head_dim,
/// K_BLOCK); v: (n_pos, n_kv_head, head_dim); scores: (n_q, n_pos)
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f16(
    q: &mut [f32],
    k: &[f16],
    v: &[f16],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_f16(q, (k, v), (n_kv_head, kv_head, head_dim), 1, scores, out);
}

/// [`attention_f16`] in ggml's order for a batch of one token (`ggml_vec_dot_f16`): each
/// of a dot product's 16 lanes sums four chains, chain `c` taking the terms `i` with
/// `i / 16 % 4 == c`, added `(a0 + a2) + (a1 + a3)` before [`reduce16`].
/// shapes: as [`attention_f16`]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f16_single(
    q: &mut [f32],
    k: &[f16],
    v: &[f16],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_f16(q, (k, v), (n_kv_head, kv_head, head_dim), 4, scores, out);
}

/// [`attend`] against an f16 cache: `q` rounded to f16 in place, the weights too.
fn attend_f16(
    q: &mut [f32],
    (k, v): (&[f16], &[f16]),
    (n_kv_head, kv_head, head_dim): (usize, usize, usize),
    chains: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    for x in q.iter_mut() {
        *x = f16::from_f32(*x).to_f32();
    }
    let k: Vec<f32> = k.iter().map(|x| x.to_f32()).collect();
    let v: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    attend(
        q,
        &k,
        &v,
        n_kv_head,
        kv_head,
        head_dim,
        (true, chains),
        scores,
        out,
    );
}

/// A dot product's 16 lanes from its `16 * chains` chains (term `i` in chain `i % (16 *
/// chains)`): with four, `ggml_vec_dot_f16`'s `(a0 + a2) + (a1 + a3)` per lane.
fn lanes16(a: &[f32; 64], chains: usize) -> [f32; 16] {
    std::array::from_fn(|l| {
        if chains == 4 {
            (a[l] + a[l + 32]) + (a[l + 16] + a[l + 48])
        } else {
            a[l]
        }
    })
}

/// [`attention`], with the weights rounded to f16 when `round`, each lane of a dot
/// product summing `chains` chains ([`lanes16`]).
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    (round, chains): (bool, usize),
    scores: &mut [f32],
    out: &mut [f32],
) {
    let n_chains = 16 * chains;
    use crate::ops::attention::K_BLOCK;
    let n_pos = v.len() / (n_kv_head * head_dim);
    let n_q = q.len() / head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let key = |p: usize, d: usize| {
        k[((p / K_BLOCK * n_kv_head + kv_head) * head_dim + d) * K_BLOCK + p % K_BLOCK]
    };
    let value = |p: usize, d: usize| v[(p * n_kv_head + kv_head) * head_dim + d];
    for j in 0..n_q {
        let q = &q[j * head_dim..][..head_dim];
        // w: (n_pos,) scores, then weights.
        let w = &mut scores[j * n_pos..][..n_pos];
        for (p, s) in w.iter_mut().enumerate() {
            let mut a = [0f32; 64];
            for d in 0..head_dim {
                a[d % n_chains] = q[d].mul_add(key(p, d), a[d % n_chains]);
            }
            *s = reduce16(lanes16(&a, chains)) * scale;
        }
        let max = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for s in w.iter_mut() {
            // The kernels' vector exp, one lane (the same operations on every ISA).
            *s = crate::simd::Simd::exp_ggml(crate::isa::ScalarToken::new(), *s - max);
        }
        let mut sum = 0f64;
        for c in w.chunks(16) {
            let mut lanes = [0f32; 16];
            lanes[..c.len()].copy_from_slice(c);
            sum += f64::from(reduce16(lanes));
        }
        let inv = (1.0 / sum) as f32;
        for s in w.iter_mut() {
            *s *= inv;
            if round {
                *s = f16::from_f32(*s).to_f32();
            }
        }
        for d in 0..head_dim {
            let mut a = [0f32; 64];
            for (p, &wp) in w.iter().enumerate() {
                a[p % n_chains] = wp.mul_add(value(p, d), a[p % n_chains]);
            }
            out[j * head_dim + d] = reduce16(lanes16(&a, chains));
        }
    }
}

/// The sum of 16 values in the tree of GCC's `_mm512_reduce_add_ps` (ggml's 16-lane
/// reductions): halves added lane-wise twice, `t[i] = (v[i] + v[i + 8]) + (v[i + 4] +
/// v[i + 12])`, then `(t[0] + t[2]) + (t[1] + t[3])`.
#[inline(always)]
pub fn reduce16(v: [f32; 16]) -> f32 {
    let t8: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    let t4: [f32; 4] = std::array::from_fn(|i| t8[i] + t8[i + 4]);
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}
