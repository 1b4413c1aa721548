//! Attention of one token's query heads against a KV cache.
//!
//! One call serves the query heads that share one KV head (grouped-query attention), so
//! a caller can spread the (token, KV head) pairs of a batch over threads: each pair is
//! computed by the same code in the same order whatever else is in the batch or however
//! the pairs are split, so a token's result never depends on its batch.
//!
//! # Arithmetic
//! The result is bit for bit that of [`crate::reference::attention`] (and `_f16`), on
//! every ISA, and that is llama.cpp's: the order of ggml's non-flash attention on x86,
//! whose f16 and f32 matrix products (tinyBLAS) keep one 16-lane FMA accumulator. The
//! conformance figures against llama.cpp sit at a noise floor where one ulp anywhere
//! moves them (SmolLM2's last-token logits move by NRMSE 0.03-0.05 for a relative
//! change of 1e-6 in the embeddings), so only ggml's own order reproduces its logits.
//! - A score is `q . k` with dimension `d` summed in lane `d % 16`, each lane a chain of
//!   fused multiply-adds from +0, the lanes reduced by ggml's 16-lane tree
//!   ([`crate::reference::reduce16`]), then times `1 / sqrt(HD)`. SIMD lanes run across
//!   positions (each vector lane is one position's 16-lane dot product), which is why
//!   keys are stored transposed in blocks of [`K_BLOCK`] positions.
//! - The softmax takes ggml's vector exp ([`Simd::exp_ggml`], the same operations on
//!   every ISA), sums each run of 16 positions by the tree into an f64 and normalizes by
//!   `1 / sum` in f32.
//! - A weighted sum of values adds position `p` in lane `p % 16`, the same chains and
//!   tree; SIMD lanes run across dims.
//! - With an f16 cache, the query and the normalized weights are rounded to f16 before
//!   they meet the keys and values, as ggml's f16 matrix products round their f32
//!   operand.
//!
//! ggml takes another order for a batch of one token (`ggml_vec_dot_f16`, four 16-lane
//! accumulators taking runs of 16 terms in turn, added `(a0 + a2) + (a1 + a3)` before the
//! tree): [`attention_f16_single`](fn@attention_f16_single) computes it, for a token alone
//! in its sequence's part of a batch (a decoded token), so that llama.cpp's decoding is
//! reproduced bit for bit.

use half::f16;
use woolly_kernels_macros::kernel;

use crate::dim;
use crate::ops::blocks::Elem;
use crate::simd::{MAX_LANES, Simd};

/// Positions per block of the transposed key layout: keys are `(n_blocks, n_kv_head,
/// head_dim, K_BLOCK)`, position `p` in lane `p % K_BLOCK` of block `p / K_BLOCK`. One
/// AVX-512 vector, two AVX2 ones; the same layout on every ISA.
pub const K_BLOCK: usize = MAX_LANES;

/// Positions ahead of the one being summed whose value rows are prefetched.
const VALUE_PREFETCH: usize = 64;

/// Query heads that share one pass over the keys and one over the values: each key and
/// value vector is loaded (and widened from f16) once for all of them.
const HEADS_PER_PASS: usize = 4;

/// The body shared by the f32 and f16 caches, for the `n_q` query heads of `q` that read
/// KV head `kv_head`. `ROUND`: weights rounded to f16 (f16 cache).
/// shapes: q, out: (n_q, HD); k: (ceil(n_pos / K_BLOCK), n_kv_head, HD, K_BLOCK);
/// vals: (n_pos, n_kv_head, HD); scores: (n_q, n_pos)
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
fn attend<V: Simd, E: Elem, const HD: usize, const ROUND: bool, const VEC: bool>(
    v: V,
    q: &[f32],
    k: &[E],
    vals: &[E],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = dim::<HD>(head_dim);
    assert!(
        hd > 0 && kv_head < n_kv_head,
        "KV head {kv_head} of {n_kv_head}"
    );
    let row = n_kv_head * hd;
    assert!(
        vals.len().is_multiple_of(row),
        "vals is not whole positions"
    );
    let n_pos = vals.len() / row;
    assert!(n_pos > 0, "attention over an empty KV cache");
    let n_blocks = n_pos.div_ceil(K_BLOCK);
    assert_eq!(
        k.len(),
        n_blocks * row * K_BLOCK,
        "k must be whole key blocks"
    );
    assert!(q.len().is_multiple_of(hd) && out.len() == q.len());
    let n_q = q.len() / hd;
    assert_eq!(scores.len(), n_q * n_pos, "scores must be (n_q, n_pos)");
    // Keys of KV head `kv_head` in block `b`: (HD, K_BLOCK).
    let kb = hd * K_BLOCK;
    let key_block = |b: usize| &k[(b * n_kv_head + kv_head) * kb..][..kb];
    let keys = Keys {
        hd,
        n_blocks,
        scale: 1.0 / (hd as f32).sqrt(),
        block: &key_block,
    };
    let values = Values {
        hd,
        n_pos,
        rows: vals,
        stride: row,
        first: kv_head * hd,
    };
    // The scalar ISA has too few registers to share a pass.
    let per_pass = if V::LANES == 1 { 1 } else { HEADS_PER_PASS };
    let mut h0 = 0;
    while h0 < n_q {
        let nh = (n_q - h0).min(per_pass);
        let q = &q[h0 * hd..(h0 + nh) * hd];
        let w = &mut scores[h0 * n_pos..(h0 + nh) * n_pos];
        let out = &mut out[h0 * hd..(h0 + nh) * hd];
        match nh {
            1 => heads::<V, E, 1, 8, ROUND, VEC>(v, q, &keys, &values, w, out),
            2 => heads::<V, E, 2, 8, ROUND, VEC>(v, q, &keys, &values, w, out),
            3 => heads::<V, E, 3, 4, ROUND, VEC>(v, q, &keys, &values, w, out),
            _ => heads::<V, E, 4, 4, ROUND, VEC>(v, q, &keys, &values, w, out),
        }
        h0 += nh;
    }
}

/// The keys of one KV head, in blocks of [`K_BLOCK`] positions.
struct Keys<'a, F> {
    hd: usize,
    n_blocks: usize,
    /// `1 / sqrt(hd)`.
    scale: f32,
    /// Block `b`: (HD, K_BLOCK).
    block: &'a F,
}

/// The values of one KV head: `rows[p * stride + first..][..hd]` for position `p`.
struct Values<'a, E> {
    hd: usize,
    n_pos: usize,
    rows: &'a [E],
    stride: usize,
    first: usize,
}

/// Attention of the `QH` query heads `q (QH, hd)` into `out (QH, hd)`, `w (QH, n_pos)`
/// their scores and then weights: one pass over the keys, then, `NV` vectors of dims at a
/// time, one over the values for all of them. `VEC`: in `ggml_vec_dot_f16`'s order.
#[inline(always)]
fn heads<'k, V, E, const QH: usize, const NV: usize, const ROUND: bool, const VEC: bool>(
    v: V,
    q: &[f32],
    keys: &Keys<'_, impl Fn(usize) -> &'k [E]>,
    values: &Values<'_, E>,
    w: &mut [f32],
    out: &mut [f32],
) where
    V: Simd,
    E: Elem + 'k,
{
    scores::<V, E, QH, VEC>(v, q, keys, values, w);

    // Softmax: each head's sum over runs of 16 positions, each run reduced by the
    // 16-lane tree into an f64 (ggml's soft_max over its 16-lane exp vectors; its rows
    // are padded to whole vectors with weights of zero).
    let n_pos = values.n_pos;
    for w in w.chunks_exact_mut(n_pos) {
        let m = v.max_of(w);
        exp_minus(v, w, m);
        let mut sum = 0f64;
        for c in w.chunks(LANES16) {
            let mut lanes = [0f32; LANES16];
            lanes[..c.len()].copy_from_slice(c);
            sum += f64::from(crate::reference::reduce16(lanes));
        }
        normalize::<V, ROUND>(v, w, (1.0 / sum) as f32);
    }

    // The weighted sums of values, NV vectors of dims of each head at a time.
    let l = V::LANES;
    let hd = values.hd;
    let whole = hd - hd % (NV * l);
    for d0 in (0..whole).step_by(NV * l) {
        value_pass::<V, E, QH, NV, false, VEC>(v, values, w, d0, NV * l, out);
    }
    if whole < hd {
        value_pass::<V, E, QH, NV, true, VEC>(v, values, w, whole, hd - whole, out);
    }
}

/// Lanes of ggml's f16/f32 matrix products on x86 (tinyBLAS with one 512-bit FMA
/// accumulator): a dot product sums its terms `i` in lane `i % 16`, each lane a chain
/// of fused multiply-adds in order from +0, and the lanes are reduced by
/// [`crate::reference::reduce16`]'s tree.
const LANES16: usize = 16;

/// `a + b`, vector by vector.
#[inline(always)]
fn add_n<V: Simd, const N: usize>(v: V, a: [V::F32; N], b: [V::F32; N]) -> [V::F32; N] {
    let mut r = a;
    for (r, b) in r.iter_mut().zip(b) {
        *r = v.add(*r, b);
    }
    r
}

/// The 16-lane tree of [`crate::reference::reduce16`] over vectors of independent sums:
/// `lanes[i]` holds lane `i`'s. (A plain function: a closure handed the lanes one at a
/// time was not inlined into the AVX2 caller and ran 18 times slower.)
#[inline(always)]
fn tree16<V: Simd, const N: usize>(v: V, lanes: &[[V::F32; N]; LANES16]) -> [V::F32; N] {
    let mut t4 = [[v.zero(); N]; 4];
    for (i, t) in t4.iter_mut().enumerate() {
        let a = add_n(v, lanes[i], lanes[i + 8]);
        let b = add_n(v, lanes[i + 4], lanes[i + 12]);
        *t = add_n(v, a, b);
    }
    add_n(v, add_n(v, t4[0], t4[2]), add_n(v, t4[1], t4[3]))
}

/// The weighted sums of values over dims `d0..d0 + width` (`width` = `NV * LANES`, or
/// fewer in the last pass, `PARTIAL`) for the `QH` heads of weights `w (QH, n_pos)` into
/// `out (QH, hd)`. Position `p` adds to lane `p % 16`: each lane is one chain over its
/// positions (with `VEC`, four: ggml_vec_dot_f16's), held in registers, and the 16 lanes meet in
/// the tree at the end.
#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "a lane indexes the inner array of every head's sums"
)]
fn value_pass<
    V: Simd,
    E: Elem,
    const QH: usize,
    const NV: usize,
    const PARTIAL: bool,
    const VEC: bool,
>(
    v: V,
    values: &Values<'_, E>,
    w: &[f32],
    d0: usize,
    width: usize,
    out: &mut [f32],
) {
    let (l, n_pos, hd) = (V::LANES, values.n_pos, values.hd);
    let n_vecs = if PARTIAL { width.div_ceil(l) } else { NV };
    let at = values.first + d0;
    // lanes[h][i]: head h's sums of lane i.
    let mut lanes = [[[v.zero(); NV]; LANES16]; QH];
    let step = |acc: &mut [[V::F32; NV]; QH], p: usize, ahead: usize| {
        value_step::<V, E, QH, NV, PARTIAL>(v, values, w, (p, ahead), (at, width, n_vecs), acc);
    };
    for lane in 0..LANES16 {
        if VEC {
            // parts[c]: chain c, step `m` of the lane going to chain `m % 4`; then
            // `(a0 + a2) + (a1 + a3)`. The lane's positions are walked in order, the
            // chains indexed at run time (held in memory). Measured slower, for a 512-
            // position context (`attention_f16_single` in `benches/benches/kernels.rs`):
            // each chain walked on its own (stride 64 positions), 1.1x at head_dim 64;
            // chains 0 and 2, then 1 and 3, side by side in registers, 1.2x at 128.
            let mut parts = [[[v.zero(); NV]; QH]; 4];
            for (m, p) in (lane..n_pos).step_by(LANES16).enumerate() {
                step(&mut parts[m % 4], p, VALUE_PREFETCH);
            }
            for h in 0..QH {
                let a02 = add_n(v, parts[0][h], parts[2][h]);
                lanes[h][lane] = add_n(v, a02, add_n(v, parts[1][h], parts[3][h]));
            }
        } else {
            let mut acc = [[v.zero(); NV]; QH];
            for p in (lane..n_pos).step_by(LANES16) {
                step(&mut acc, p, VALUE_PREFETCH);
            }
            for (h, acc) in acc.iter().enumerate() {
                lanes[h][lane] = *acc;
            }
        }
    }
    for (lanes, oh) in lanes.iter().zip(out.chunks_exact_mut(hd)) {
        let sum = tree16::<V, NV>(v, lanes);
        let o = &mut oh[d0..][..width];
        for (j, &a) in sum.iter().enumerate().take(n_vecs) {
            if PARTIAL && (j + 1) * l > width {
                v.store_partial(&mut o[j * l..], a);
            } else {
                v.store(&mut o[j * l..], a);
            }
        }
    }
}

/// One position `p` of [`value_pass`]: `acc[h][j] += w[h][p] * vals[p][j]` over the
/// pass's `n_vecs` vectors of dims (from `at`, `width` of them), prefetching the row
/// `ahead` positions on. (A function, not a closure over the vectors: see [`tree16`].)
#[inline(always)]
fn value_step<V: Simd, E: Elem, const QH: usize, const NV: usize, const PARTIAL: bool>(
    v: V,
    values: &Values<'_, E>,
    w: &[f32],
    (p, ahead): (usize, usize),
    (at, width, n_vecs): (usize, usize, usize),
    acc: &mut [[V::F32; NV]; QH],
) {
    let (l, n_pos) = (V::LANES, values.n_pos);
    let mut wv = [v.zero(); QH];
    for (h, wv) in wv.iter_mut().enumerate() {
        *wv = v.splat(w[h * n_pos + p]);
    }
    let x = &values.rows[p * values.stride + at..][..width];
    // The rows of one KV head are strided, a pattern the hardware prefetchers follow too
    // late when the cache comes from DRAM. (The score pass fetched the first
    // VALUE_PREFETCH rows.)
    values.prefetch(v, p + ahead, at, width);
    for j in 0..n_vecs {
        let xv = if PARTIAL && (j + 1) * l > width {
            E::load_partial(v, &x[j * l..])
        } else {
            E::load(v, &x[j * l..])
        };
        for (a, &wv) in acc.iter_mut().zip(&wv) {
            a[j] = v.fused_mul_add(wv, xv, a[j]);
        }
    }
}

impl<E: Elem> Values<'_, E> {
    /// Prefetches the dims `at..at + width` of position `p`'s row, if there is one.
    #[inline(always)]
    fn prefetch<V: Simd>(&self, v: V, p: usize, at: usize, width: usize) {
        if p < self.n_pos {
            let row = self.rows[p * self.stride + at..][..width]
                .as_ptr()
                .cast::<u8>();
            for line in (0..width * size_of::<E>()).step_by(64) {
                v.prefetch(row.wrapping_add(line));
            }
        }
    }
}

/// Scores of every position for the `QH` heads of `q (QH, hd)` into `w (QH, n_pos)`,
/// key block by key block (each read from memory once for all the heads). It also
/// prefetches the value rows below [`VALUE_PREFETCH`], which the value pass reads before
/// its own prefetches reach that far ahead: in a short context they were each a cache
/// miss.
#[inline(always)]
fn scores<'k, V: Simd, E: Elem + 'k, const QH: usize, const VEC: bool>(
    v: V,
    q: &[f32],
    keys: &Keys<'_, impl Fn(usize) -> &'k [E]>,
    values: &Values<'_, E>,
    w: &mut [f32],
) {
    let (l, hd) = (V::LANES, keys.hd);
    let n_pos = w.len() / QH;
    let per_block = K_BLOCK / l;
    for p in 0..n_pos.min(VALUE_PREFETCH) {
        values.prefetch(v, p, values.first, hd);
    }
    let sv = v.splat(keys.scale);
    for b in 0..keys.n_blocks {
        let kb = (keys.block)(b);
        // The next block, which the hardware prefetchers do not see coming (a KV head's
        // blocks are strided).
        if b + 1 < keys.n_blocks {
            let next = (keys.block)(b + 1);
            for line in (0..size_of_val(next)).step_by(64) {
                v.prefetch(next.as_ptr().cast::<u8>().wrapping_add(line));
            }
        }
        // Two vectors of positions at a time where the block has them (AVX2's block;
        // AVX-512's is one vector, NEON's four).
        let mut j = 0;
        while j < per_block && b * K_BLOCK + j * l < n_pos {
            let two = j + 2 <= per_block;
            let r: [[V::F32; 2]; QH] = if two {
                score_vectors::<V, E, QH, 2, VEC>(v, q, hd, kb, j)
            } else {
                score_vectors::<V, E, QH, 1, VEC>(v, q, hd, kb, j).map(|[r]| [r, r])
            };
            let n = if two { 2 } else { 1 };
            for (r, w) in r.iter().zip(w.chunks_exact_mut(n_pos)) {
                for (i, r) in r.iter().enumerate().take(n) {
                    let p = b * K_BLOCK + (j + i) * l;
                    if p >= n_pos {
                        break;
                    }
                    let r = v.mul(*r, sv);
                    if p + l <= n_pos {
                        v.store(&mut w[p..], r);
                    } else {
                        v.store_partial(&mut w[p..], r);
                    }
                }
            }
            j += n;
        }
    }
}

/// The dot products of each head of `q (QH, hd)` with the keys in vectors `j0..j0 + N`
/// of the key block `kb (hd, K_BLOCK)`: dim `d` adds to lane `d % 16` (a chain of fused
/// multiply-adds from +0 per lane; with `VEC`, four, ggml_vec_dot_f16's), the lanes reduced by
/// the 16-lane tree. Each key vector is loaded (and widened from f16) once for all the
/// heads.
#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "a lane indexes the inner array of every head's sums"
)]
fn score_vectors<V: Simd, E: Elem, const QH: usize, const N: usize, const VEC: bool>(
    v: V,
    q: &[f32],
    hd: usize,
    kb: &[E],
    j0: usize,
) -> [[V::F32; N]; QH] {
    // lanes[h][i]: head h's sums of lane i.
    let mut lanes = [[[v.zero(); N]; LANES16]; QH];
    let step = |acc: &mut [[V::F32; N]; QH], d: usize| score_step(v, q, hd, kb, j0, d, acc);
    for lane in 0..LANES16 {
        if VEC {
            // Chains c and c + 2 (dims lane + 16c and lane + 16c + 32, every 64) side by
            // side, added; then the same for c + 1: `(a0 + a2) + (a1 + a3)`.
            let mut halves = [[[v.zero(); N]; QH]; 2];
            for (c, half) in halves.iter_mut().enumerate() {
                let (mut a, mut b) = ([[v.zero(); N]; QH], [[v.zero(); N]; QH]);
                for d in (lane + LANES16 * c..hd).step_by(4 * LANES16) {
                    step(&mut a, d);
                    if d + 2 * LANES16 < hd {
                        step(&mut b, d + 2 * LANES16);
                    }
                }
                for h in 0..QH {
                    half[h] = add_n(v, a[h], b[h]);
                }
            }
            for h in 0..QH {
                lanes[h][lane] = add_n(v, halves[0][h], halves[1][h]);
            }
        } else {
            let mut acc = [[v.zero(); N]; QH];
            for d in (lane..hd).step_by(LANES16) {
                step(&mut acc, d);
            }
            for (h, acc) in acc.iter().enumerate() {
                lanes[h][lane] = *acc;
            }
        }
    }
    let mut r = [[v.zero(); N]; QH];
    for (r, lanes) in r.iter_mut().zip(&lanes) {
        *r = tree16::<V, N>(v, lanes);
    }
    r
}

/// One dim `d` of [`score_vectors`]: `acc[h][j] += q[h][d] * k[d]` for the key vectors
/// `j0..j0 + N` of dim `d`. (A function, not a closure over the vectors, so that it is
/// inlined into the ISA's body: see [`tree16`].)
#[inline(always)]
fn score_step<V: Simd, E: Elem, const QH: usize, const N: usize>(
    v: V,
    q: &[f32],
    hd: usize,
    kb: &[E],
    j0: usize,
    d: usize,
    acc: &mut [[V::F32; N]; QH],
) {
    let l = V::LANES;
    let kd = &kb[d * K_BLOCK..][..K_BLOCK];
    for j in 0..N {
        let kv = E::load(v, &kd[(j0 + j) * l..]);
        for (h, a) in acc.iter_mut().enumerate() {
            a[j] = v.fused_mul_add(v.splat(q[h * hd + d]), kv, a[j]);
        }
    }
}

/// `x[i] = e^(x[i] - m)` by ggml's vector exp ([`Simd::exp_ggml`], the same operations
/// on every ISA): libm's scalar `expf` took a third of the attention's time in a
/// 512-token prompt. Its loop repeats [`normalize`]'s on purpose: one helper taking the
/// lane operation as a closure made SmolLM2's pp512 about 40% slower (session 11).
#[inline(always)]
fn exp_minus<V: Simd>(v: V, x: &mut [f32], m: f32) {
    let mv = v.splat(m);
    let mut chunks = x.chunks_exact_mut(V::LANES);
    for c in &mut chunks {
        let r = v.exp_ggml(v.sub(v.load(c), mv));
        v.store(c, r);
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let r = v.exp_ggml(v.sub(v.load_partial(tail, m), mv));
        v.store_partial(tail, r);
    }
}

/// `x[i] = x[i] * inv`, then rounded to the nearest f16 when `ROUND`. shapes: x: (n,)
#[inline(always)]
fn normalize<V: Simd, const ROUND: bool>(v: V, x: &mut [f32], inv: f32) {
    let iv = v.splat(inv);
    let f = |r| if ROUND { v.round_f16(r) } else { r };
    let mut chunks = x.chunks_exact_mut(V::LANES);
    for c in &mut chunks {
        let r = f(v.mul(v.load(c), iv));
        v.store(c, r);
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let r = f(v.mul(v.load_partial(tail, 0.0), iv));
        v.store_partial(tail, r);
    }
}

/// Attention of the query heads `q` that share KV head `kv_head`, against an f32 KV
/// cache of `n_pos = vals.len() / (n_kv_head * HD)` positions:
/// `out[j] = sum_p softmax_p(q[j] . k[p] / sqrt(HD)) vals[p]`, keys in the transposed
/// layout of [`K_BLOCK`] (lanes of the last block past `n_pos` are ignored). On return
/// `scores[j]` holds head `j`'s softmax weights (it is the kernel's scratch space).
/// Bit for bit [`crate::reference::attention`]: see the module docs.
/// shapes: q, out: (n_q, HD); k: (ceil(n_pos / K_BLOCK), n_kv_head, HD, K_BLOCK);
/// vals: (n_pos, n_kv_head, HD); scores: (n_q, n_pos)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(HD = spec("head_dim"), dyn),
    reference = crate::reference::attention,
    tolerance = exact(),
    cases = 32,
    test(
        n_kv_head = rng.range(1, 4),
        kv_head = rng.range(0, n_kv_head),
        head_dim = HD,
        q = { let n_q = rng.range(1, 10); rng.f32s(n_q * head_dim) },
        vals = { let n_pos = rng.range(1, 150); rng.f32s(n_pos * n_kv_head * head_dim) },
        k = rng.f32s((vals.len() / (n_kv_head * head_dim)).div_ceil(K_BLOCK) * K_BLOCK * n_kv_head * head_dim),
        scores = rng.f32s(q.len() / head_dim * (vals.len() / (n_kv_head * head_dim))),
        out = rng.f32s(q.len()),
    ),
)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f32<V: Simd, const HD: usize>(
    v: V,
    q: &[f32],
    k: &[f32],
    vals: &[f32],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend::<V, f32, HD, false, false>(v, q, k, vals, n_kv_head, kv_head, head_dim, scores, out);
}

/// [`attention_f32`](fn@attention_f32) (see there) against an f16 KV cache, rounding as
/// ggml does: `q` is rounded to f16 in place first, and the normalized weights (left in
/// `scores`) are rounded to f16 before they multiply the values.
/// Bit for bit [`crate::reference::attention_f16`]: see the module docs.
/// shapes: q, out: (n_q, HD); k: (ceil(n_pos / K_BLOCK), n_kv_head, HD, K_BLOCK);
/// vals: (n_pos, n_kv_head, HD); scores: (n_q, n_pos)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(HD = spec("head_dim"), dyn),
    reference = crate::reference::attention_f16,
    tolerance = exact(),
    cases = 32,
    test(
        n_kv_head = rng.range(1, 4),
        kv_head = rng.range(0, n_kv_head),
        head_dim = HD,
        q = { let n_q = rng.range(1, 10); rng.f32s(n_q * head_dim) },
        vals = { let n_pos = rng.range(1, 150); rng.f16s(n_pos * n_kv_head * head_dim) },
        k = rng.f16s((vals.len() / (n_kv_head * head_dim)).div_ceil(K_BLOCK) * K_BLOCK * n_kv_head * head_dim),
        scores = rng.f32s(q.len() / head_dim * (vals.len() / (n_kv_head * head_dim))),
        out = rng.f32s(q.len()),
    ),
)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f16<V: Simd, const HD: usize>(
    v: V,
    q: &mut [f32],
    k: &[f16],
    vals: &[f16],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    normalize::<V, true>(v, q, 1.0);
    attend::<V, f16, HD, true, false>(v, q, k, vals, n_kv_head, kv_head, head_dim, scores, out);
}

/// [`attention_f16`](fn@attention_f16) in the order ggml takes for a batch of one token
/// (`ggml_vec_dot_f16` for the scores and the weighted sums: see the module docs), for a
/// token alone in its sequence's part of a batch. Bit for bit
/// [`crate::reference::attention_f16_single`]. (ggml sums a dot product's terms past its
/// last whole 64 in f64; Woolly's cache rows are padded with zeros instead, which is the
/// same for head sizes that are multiples of 64 and for the weighted sums, whose
/// positions ggml pads to 256 with zero weights.)
/// shapes: q, out: (n_q, HD); k: (ceil(n_pos / K_BLOCK), n_kv_head, HD, K_BLOCK);
/// vals: (n_pos, n_kv_head, HD); scores: (n_q, n_pos)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(HD = spec("head_dim"), dyn),
    reference = crate::reference::attention_f16_single,
    tolerance = exact(),
    cases = 32,
    test(
        n_kv_head = rng.range(1, 4),
        kv_head = rng.range(0, n_kv_head),
        head_dim = HD,
        q = { let n_q = rng.range(1, 10); rng.f32s(n_q * head_dim) },
        vals = { let n_pos = rng.range(1, 150); rng.f16s(n_pos * n_kv_head * head_dim) },
        k = rng.f16s((vals.len() / (n_kv_head * head_dim)).div_ceil(K_BLOCK) * K_BLOCK * n_kv_head * head_dim),
        scores = rng.f32s(q.len() / head_dim * (vals.len() / (n_kv_head * head_dim))),
        out = rng.f32s(q.len()),
    ),
)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f16_single<V: Simd, const HD: usize>(
    v: V,
    q: &mut [f32],
    k: &[f16],
    vals: &[f16],
    n_kv_head: usize,
    kv_head: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    normalize::<V, true>(v, q, 1.0);
    attend::<V, f16, HD, true, true>(v, q, k, vals, n_kv_head, kv_head, head_dim, scores, out);
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::K_BLOCK;
    use crate::reference;
    use crate::testing::TestRng;

    /// Softmax attention in f64 over row-major keys `(n_pos, n_kv_head, hd)`.
    fn attention_f64(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_kv: usize,
        kvh: usize,
        hd: usize,
    ) -> Vec<f32> {
        let n_pos = v.len() / (n_kv * hd);
        let at = |p: usize| (p * n_kv + kvh) * hd;
        let mut out = Vec::new();
        for q in q.chunks_exact(hd) {
            let s: Vec<f64> = (0..n_pos)
                .map(|p| {
                    let dot: f64 = (0..hd).map(|d| q[d] as f64 * k[at(p) + d] as f64).sum();
                    dot / (hd as f64).sqrt()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let o: f64 = (0..n_pos).map(|p| e[p] / sum * v[at(p) + d] as f64).sum();
                out.push(o as f32);
            }
        }
        out
    }

    /// Row-major keys `(n_pos, n_kv, hd)` in the transposed block layout.
    fn blocked(k: &[f32], n_kv: usize, hd: usize) -> Vec<f32> {
        let n_pos = k.len() / (n_kv * hd);
        let mut b = vec![f32::NAN; n_pos.div_ceil(K_BLOCK) * K_BLOCK * n_kv * hd];
        for p in 0..n_pos {
            for c in 0..n_kv * hd {
                b[(p / K_BLOCK * n_kv * hd + c) * K_BLOCK + p % K_BLOCK] = k[p * n_kv * hd + c];
            }
        }
        b
    }

    /// The references, which fix the kernels' f32 arithmetic, are softmax attention:
    /// within f32 rounding, and with an f16 cache within the f16 roundings of the query
    /// and the weights (2^-10 of a value at most). Padding lanes (NaN here) are ignored.
    #[test]
    fn references_are_softmax_attention() {
        let mut rng = TestRng::new(3);
        let mut differ = false;
        for case in 0..40 {
            let (n_kv, hd) = (rng.range(1, 4), [4, 24, 64, 128][case % 4]);
            let kvh = rng.range(0, n_kv);
            let (n_q, n_pos) = (rng.range(1, 4), rng.range(1, 200));
            let q = rng.f32s(n_q * hd);
            let k: Vec<f32> = rng
                .f16s(n_pos * n_kv * hd)
                .iter()
                .map(|x| x.to_f32())
                .collect();
            let v: Vec<f32> = rng.f16s(k.len()).iter().map(|x| x.to_f32()).collect();
            let kb = blocked(&k, n_kv, hd);
            let (mut s, mut out) = (vec![0.0; n_q * n_pos], vec![0.0; n_q * hd]);
            reference::attention(&q, &kb, &v, n_kv, kvh, hd, &mut s, &mut out);
            let want = attention_f64(&q, &k, &v, n_kv, kvh, hd);
            for (g, w) in out.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5, "f32 cache: {g} vs {w}");
            }
            for row in s.chunks_exact(n_pos) {
                let sum: f64 = row.iter().map(|&x| x as f64).sum();
                assert!((sum - 1.0).abs() < 1e-5, "weights sum to {sum}");
            }
            let kb16: Vec<f16> = kb.iter().map(|&x| f16::from_f32(x)).collect();
            let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let mut q16 = q.clone();
            reference::attention_f16(&mut q16, &kb16, &v16, n_kv, kvh, hd, &mut s, &mut out);
            assert!(
                q16.iter().all(|&x| f16::from_f32(x).to_f32() == x),
                "q rounded"
            );
            assert!(
                s.iter().all(|&x| f16::from_f32(x).to_f32() == x),
                "weights rounded"
            );
            for (g, w) in out.iter().zip(&want) {
                assert!((g - w).abs() <= 2e-3, "f16 cache: {g} vs {w}");
            }
            // ggml's one-token order: the same rounding of q and the weights, another
            // summation order.
            let mut q16 = q.clone();
            let mut out1 = vec![0.0; n_q * hd];
            reference::attention_f16_single(
                &mut q16, &kb16, &v16, n_kv, kvh, hd, &mut s, &mut out1,
            );
            for (g, w) in out1.iter().zip(&want) {
                assert!((g - w).abs() <= 2e-3, "f16 cache, one token: {g} vs {w}");
            }
            if hd > 16 || n_pos > 16 {
                differ |= out1 != out;
            }
        }
        assert!(differ, "the one-token order is another order");
    }
}
